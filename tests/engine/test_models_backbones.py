"""Backbones: BACKBONE_MODEL keywords and timm: names, cached pretrained weights (downloads are
off in the tests: DLT_WEIGHTS_OFFLINE, tests/conftest.py; test_pretrained_download.py tests them),
any band count and WEIGHT_INIT_SCHEME for the first convolution."""

import socket
import time

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from dl_engine.errors import InputError  # noqa: E402
from dl_engine.models import backbones as bb  # noqa: E402


@pytest.fixture(autouse=True)
def empty_caches(tmp_path, monkeypatch):
    """Every test starts with empty torch hub and Hugging Face caches of its own."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("DLT_WEIGHTS_DIR", raising=False)
    return tmp_path


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def fake_weights(name="resnet18", seed=0):
    """The state dict of a freshly made timm classifier: what a downloaded file holds."""
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in timm.create_model(name).state_dict().items()}


def put_in_hf_cache(root, repo, state, filename="model.safetensors"):
    from safetensors.torch import save_file

    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = root / "hf" / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snap = folder / "snapshots" / commit
    snap.mkdir(parents=True)
    if filename.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state.items()}, str(snap / filename))
    else:
        torch.save(state, snap / filename)
    return snap / filename


def put_in_torch_hub(root, filename, state):
    folder = root / "torch" / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / filename)
    return folder / filename


def first_conv(encoder):
    return encoder.model.conv1.weight.detach()


# --- names -------------------------------------------------------------------------------

def test_every_keyword_is_a_timm_model():
    models = set(timm.list_models())
    missing = {k: v for k, v in bb.KEYWORDS.items() if v not in models}
    assert not missing
    for keyword in ("RESNET18", "RESNET152", "DENSENET201", "VGG19_BN", "MOBILENET_V2", "DARKNET53",
                    "RESNEXT50", "WIDE_RESNET50", "EFFICIENTNET_B0", "CONVNEXT_TINY"):
        assert keyword in bb.KEYWORDS


@pytest.mark.parametrize("given, resolved", [
    ("RESNET34", ("resnet34", "resnet34")),
    ("resnet34", ("resnet34", "resnet34")),  # as written to the emd: reads back
    ("vgg16_BN", ("vgg16_bn", "vgg16_bn")),
    ("MOBILENET_V2", ("mobilenetv2_100", "mobilenetv2_100")),
    ("mobilenet_v2", ("mobilenetv2_100", "mobilenetv2_100")),  # arcgis.learn's spelling
    ("DARKNET53", ("darknet53", "darknet53")),
    ("RESNEXT50", ("resnext50_32x4d", "resnext50_32x4d")),
    ("timm:ConvNeXt_Atto", ("timm:convnext_atto", "convnext_atto")),
    ("timm:resnet18.tv_in1k", ("timm:resnet18.tv_in1k", "resnet18.tv_in1k")),
])
def test_resolve_backbone(given, resolved):
    assert bb.resolve_backbone(given) == resolved


def test_unknown_keyword_lists_the_accepted_values():
    with pytest.raises(InputError) as err:
        bb.resolve_backbone("RESNET35")
    assert err.value.parameter == "BACKBONE_MODEL"
    assert "RESNET34" in err.value.message and "DENSENET121" in err.value.message
    assert "timm:<name>" in err.value.message


def test_unknown_timm_name_suggests_close_ones():
    with pytest.raises(InputError) as err:
        bb.resolve_backbone("timm:resnet_18")
    assert err.value.parameter == "BACKBONE_MODEL"
    assert "resnet18" in err.value.message


def test_timm_model_without_features_only_is_a_data_error(monkeypatch):
    def create_model(name, **kwargs):  # what timm 1.0.20 said for ConvMixer (1.0.31 builds every model)
        raise RuntimeError(f"features_only not implemented for {name}")

    monkeypatch.setattr(timm, "create_model", create_model)
    with pytest.raises(InputError) as err:
        bb.create_encoder("timm:convmixer_768_32", 3, pretrained=False, log=lambda m: None)
    assert err.value.parameter == "BACKBONE_MODEL" and "features_only" in err.value.message


def test_unknown_weight_init_scheme():
    with pytest.raises(InputError) as err:
        bb.create_encoder("RESNET18", 4, pretrained=False, weight_init_scheme="RED")
    assert err.value.parameter == "WEIGHT_INIT_SCHEME"
    assert "RED_BAND" in err.value.message and "ALL_RANDOM" in err.value.message


# --- building ----------------------------------------------------------------------------

@pytest.mark.parametrize("bands", [1, 3, 4, 8])
def test_any_band_count(bands):
    enc = bb.create_encoder("RESNET18", bands, pretrained=False)
    assert enc.name == "resnet18" and not enc.pretrained_loaded
    assert enc.channels == [64, 64, 128, 256, 512] and enc.reductions == [2, 4, 8, 16, 32]
    feats = enc.model(torch.randn(2, bands, 64, 64))
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 32, 32), (64, 16, 16), (128, 8, 8), (256, 4, 4),
                                                   (512, 2, 2)]


def test_timm_backbone_by_name():
    enc = bb.create_encoder("timm:convnext_atto", 5, pretrained=False)
    assert enc.name == "timm:convnext_atto" and enc.timm_name == "convnext_atto"
    assert enc.reductions == [4, 8, 16, 32]
    assert enc.model(torch.randn(1, 5, 64, 64))[-1].shape[1] == enc.channels[-1]


@pytest.mark.heavy  # VGG11
def test_output_stride_dilates_where_the_backbone_can():
    logs = []
    assert bb.create_encoder("RESNET18", 3, pretrained=False, output_stride=16).output_stride == 16
    vgg = bb.create_encoder("VGG11", 3, pretrained=False, output_stride=16, log=logs.append)
    assert vgg.output_stride == 32
    assert any("no dilated variant" in m for m in logs)


# --- pretrained weights: the local cache only ---------------------------------------------

def test_empty_cache_never_touches_the_network(no_network):
    logs = []
    start = time.monotonic()
    enc = bb.create_encoder("RESNET34", 3, pretrained=True, log=logs.append)
    assert time.monotonic() - start < 10
    assert not enc.pretrained_loaded and enc.pretrained_source == "random"
    assert [m for m in logs if m.startswith("no pretrained weights for resnet34 (downloads are off: "
                                            "DLT_WEIGHTS_OFFLINE=1): training starts from random weights")]


@pytest.mark.heavy
def test_loads_weights_from_the_hugging_face_cache(empty_caches, no_network):
    state = fake_weights()
    path = put_in_hf_cache(empty_caches, "timm/resnet18.a1_in1k", state)
    assert bb.find_cached_weights("resnet18") == [str(path)]
    logs = []
    enc = bb.create_encoder("RESNET18", 3, pretrained=True, log=logs.append)
    assert enc.pretrained_loaded and enc.pretrained_source == "timm/resnet18.a1_in1k (Hugging Face hub)"
    assert any(str(path) in m for m in logs)
    got = enc.model.state_dict()
    for key in ("conv1.weight", "bn1.running_mean", "layer2.0.downsample.0.weight", "layer4.1.conv2.weight"):
        assert torch.equal(got[key], state[key]), key


def test_loads_a_pickled_file_of_another_tag(empty_caches):
    state = fake_weights(seed=1)
    put_in_hf_cache(empty_caches, "timm/resnet18.tv_in1k", state, filename="pytorch_model.bin")
    enc = bb.create_encoder("RESNET18", 3, pretrained=True, log=lambda m: None)
    assert enc.pretrained_loaded and torch.equal(first_conv(enc), state["conv1.weight"])


def test_loads_torch_hub_checkpoints(empty_caches):
    state = fake_weights(seed=2)
    url = timm.models.get_pretrained_cfg("resnet18").url  # timm's own release file
    import os

    put_in_torch_hub(empty_caches, os.path.basename(url), state)
    enc = bb.create_encoder("RESNET18", 3, pretrained=True, log=lambda m: None)
    assert enc.pretrained_loaded and torch.equal(first_conv(enc), state["conv1.weight"])


def test_loads_torchvision_checkpoints_as_arcgis_caches_them(empty_caches):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(3)
    state = torchvision.models.resnet18().state_dict()
    put_in_torch_hub(empty_caches, "resnet18-5c106cde.pth", state)  # fastai v1 era file name
    enc = bb.create_encoder("RESNET18", 3, pretrained=True, log=lambda m: None)
    assert enc.pretrained_loaded and torch.equal(first_conv(enc), state["conv1.weight"])


def test_weights_of_another_network_are_skipped(empty_caches):
    put_in_hf_cache(empty_caches, "timm/resnet18.a1_in1k", fake_weights("mobilenetv2_050"))
    logs = []
    enc = bb.create_encoder("RESNET18", 3, pretrained=True, log=logs.append)
    assert not enc.pretrained_loaded
    assert any("do not fit" in m for m in logs)
    assert any(m.startswith("no pretrained weights for resnet18") for m in logs)


def test_tagged_timm_name_looks_for_that_tag_only(empty_caches):
    put_in_hf_cache(empty_caches, "timm/resnet18.a1_in1k", fake_weights())
    assert bb.find_cached_weights("resnet18.tv_in1k") == []
    assert len(bb.find_cached_weights("resnet18.a1_in1k")) == 1


# --- WEIGHT_INIT_SCHEME -------------------------------------------------------------------

@pytest.fixture
def cached_resnet18(empty_caches):
    state = fake_weights(seed=4)
    put_in_hf_cache(empty_caches, "timm/resnet18.a1_in1k", state)
    return state


def build(bands, scheme, **kw):
    return bb.create_encoder("RESNET18", bands, pretrained=True, weight_init_scheme=scheme, log=lambda m: None, **kw)


def test_random_scheme_keeps_rgb_kernels(cached_resnet18):
    rgb = cached_resnet18["conv1.weight"]
    enc = build(4, "RANDOM")
    w = first_conv(enc)
    assert enc.pretrained_loaded and w.shape[1] == 4
    assert torch.equal(w[:, :3], rgb)
    assert not any(torch.equal(w[:, 3], rgb[:, i]) for i in range(3))
    assert torch.equal(enc.model.state_dict()["layer3.1.conv1.weight"], cached_resnet18["layer3.1.conv1.weight"])


def test_red_band_scheme_copies_the_red_kernel(cached_resnet18):
    rgb = cached_resnet18["conv1.weight"]
    w = first_conv(build(8, "RED_BAND"))
    assert torch.equal(w[:, :3], rgb)
    for band in range(3, 8):
        assert torch.equal(w[:, band], rgb[:, 0])


def test_all_random_scheme_replaces_the_first_conv_only(cached_resnet18):
    rgb = cached_resnet18["conv1.weight"]
    enc = build(4, "ALL_RANDOM")
    assert enc.pretrained_loaded
    assert not torch.equal(first_conv(enc)[:, :3], rgb)
    assert torch.equal(enc.model.state_dict()["layer1.0.conv1.weight"], cached_resnet18["layer1.0.conv1.weight"])


@pytest.mark.heavy
def test_fewer_bands_take_the_first_kernels(cached_resnet18):
    rgb = cached_resnet18["conv1.weight"]
    assert torch.equal(first_conv(build(1, "RANDOM")), rgb[:, :1])
    assert torch.equal(first_conv(build(2, "RED_BAND")), rgb[:, :2])


def test_rgb_bands_place_the_kernels(cached_resnet18):
    rgb = cached_resnet18["conv1.weight"]
    w = first_conv(build(4, "RED_BAND", rgb_bands=[3, 2, 1]))  # e.g. NIR, B, G, R ordering
    assert torch.equal(w[:, 3], rgb[:, 0]) and torch.equal(w[:, 2], rgb[:, 1]) and torch.equal(w[:, 1], rgb[:, 2])
    assert torch.equal(w[:, 0], rgb[:, 0])


def test_first_conv_weight_on_tensors():
    pre, rand = torch.randn(8, 3, 3, 3), torch.randn(8, 5, 3, 3)
    out = bb.first_conv_weight(pre, rand, "RANDOM")
    assert torch.equal(out[:, :3], pre) and torch.equal(out[:, 3:], rand[:, 3:])
    assert torch.equal(bb.first_conv_weight(pre, rand, "ALL_RANDOM"), rand)
    with pytest.raises(ValueError):
        bb.first_conv_weight(pre, rand, "RANDOM", rgb_bands=[0, 0, 1])
