"""Train Deep Learning Model, engine side: a model learns a synthetic export, bad input
is refused by name with nothing written, cancel and resume, the emd/dlpk a user gets."""

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import train_helpers as th  # noqa: E402
from dl_engine.errors import InputError  # noqa: E402
from dl_engine.events import Events
from dl_engine.train import TrainConfig  # noqa: E402
from dl_engine.errors import Canceled  # noqa: E402
from dl_engine.train.run import run_training  # noqa: E402


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return th.learnable_export(tmp_path_factory.mktemp("learn"))


def config(export, out, **kw):
    kw.setdefault("backbone", "RESNET18")
    kw.setdefault("batch_size", 8)
    kw.setdefault("max_epochs", 6)
    kw.setdefault("learning_rate", 3e-3)
    kw.setdefault("validation_percentage", 20)
    kw.setdefault("num_workers", 0)
    return TrainConfig(in_folder=export, out_folder=str(out), **kw)


def collect():
    seen = []
    return seen, Events(sink=seen.append)


@pytest.mark.trains
def test_model_learns_and_package_is_complete(export, tmp_path):
    seen, events = collect()
    out = tmp_path / "roofs"
    result = run_training(config(export, out, stop_training=False), events)
    history = result.history
    assert len(history) == 6
    # the validation IoU of the foreground classes rises well above chance
    assert history[-1]["miou"] > 0.5, history
    assert max(h["miou"] for h in history) > history[0]["miou"] + 0.1
    assert history[-1]["valid_loss"] < history[0]["valid_loss"]
    assert result.metrics["miou"] == pytest.approx(max(h["miou"] for h in history))
    assert set(result.metrics["per_class"]) == {"NoData", "Roof", "Pool"}
    # files named after the folder; the dlpk flat with one emd; weights load safely
    for name in ("roofs.emd", "roofs.pth", "roofs.dlpk", "model_metrics.html", "training_validation_loss.json",
                 "ModelCharacteristics/loss_graph.png", "ModelCharacteristics/show_results.png"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoint").exists()
    with zipfile.ZipFile(out / "roofs.dlpk") as z:
        names = z.namelist()
    assert [n for n in names if n.endswith(".emd")] == ["roofs.emd"]
    assert all("/" not in n or n.startswith("ModelCharacteristics/") for n in names)
    state = torch.load(out / "roofs.pth", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    emd = json.loads((out / "roofs.emd").read_text())
    assert emd["ModelName"] == "UnetClassifier" and emd["ModelType"] == "ImageClassification"
    assert [(c["Value"], c["Name"], c["Color"]) for c in emd["Classes"]] == [(3, "Roof", [200, 30, 30]),
                                                                           (7, "Pool", [30, 30, 220])]
    assert emd["ImageHeight"] == emd["ImageWidth"] == 32
    assert emd["ModelFile"] == "roofs.pth" and emd["ExtractBands"] == [0, 1, 2]
    assert emd["ModelParameters"]["backbone"] == "resnet18"
    # no cached weights and downloads off (tests/conftest.py): random weights, one warning saying how to get them
    assert emd["PretrainedWeights"] == "random"
    assert len([e for e in seen if e.get("level") == "warning" and "no pretrained weights for resnet18" in e["message"]
                and "importpretrainedweights" in e["message"]]) == 1
    # events: progress per batch rising to 100, one metric per epoch, a result
    progress = [e["percent"] for e in seen if e["event"] == "progress"]
    assert progress == sorted(progress) and progress[-1] == 100.0 and len(progress) > 6 * 4
    metrics = [e for e in seen if e["event"] == "metric"]
    assert [m["epoch"] for m in metrics] == list(range(1, 7)) and all(m["samples_per_s"] > 0 for m in metrics)
    assert any(e["event"] == "result" and e["out_model_file"].endswith("roofs.dlpk") for e in seen)
    # it learned: no warning that it did not
    assert result.metrics["learned_nothing"] is False
    assert not any("learned nothing" in e.get("message", "") for e in seen)


@pytest.mark.trains
def test_learning_rate_finder_and_early_stopping(export, tmp_path):
    seen, events = collect()
    # batch 4: 12 steps an epoch, 360 planned; the finder may take 10 % of them
    result = run_training(config(export, tmp_path / "m", learning_rate=None, max_epochs=30, max_steps=None,
                                 batch_size=4, arguments="patience 1", monitor="MIOU"), events)
    logs = [e["message"] for e in seen if e["event"] == "log"]
    finder = [m for m in logs if "learning-rate finder" in m]
    assert len(finder) == 1 and "chosen" in finder[0], logs  # reported once
    steps = int(finder[0].split("learning-rate finder: ")[1].split(" steps")[0])
    assert 5 < steps <= 36, finder
    assert 1e-5 <= result.learning_rate < 1e-2
    assert len(result.history) < 30  # stopped early
    assert any("early stopping" in m for m in logs)
    best = max(h["miou"] for h in result.history)
    assert result.metrics["miou"] == pytest.approx(best)
    emd = json.loads((tmp_path / "m" / "m.emd").read_text())
    assert emd["monitored_miou"] == pytest.approx(best)


@pytest.mark.parametrize("change, parameter, words", [
    (dict(arguments="colour_balancing true"), "ARGUMENTS", "valid arguments"),
    (dict(arguments="mixup maybe"), "ARGUMENTS", "true or false"),
    (dict(arguments="ignore_classes [5]"), "ARGUMENTS", "class values: 3, 7"),
    (dict(chip_size=64), "CHIP_SIZE", "larger than the exported chips"),
    (dict(monitor="AVERAGE_PRECISION"), "MONITOR", "VALID_LOSS"),
    (dict(max_epochs=0), "MAX_EPOCHS", "at least 1"),
    (dict(learning_rate=-1.0), "LEARNING_RATE", "above 0"),
    (dict(backbone="RESNET19"), "BACKBONE_MODEL", "RESNET18"),
    (dict(model_type="NOT_A_MODEL"), "MODEL_TYPE", "UNET"),
    (dict(weight_init_scheme="GREEN_BAND"), "WEIGHT_INIT_SCHEME", "RED_BAND"),
    (dict(pretrained_model="/nowhere/model.dlpk"), "PRETRAINED_MODEL", "model.dlpk"),
])
def test_bad_input_is_named_and_writes_nothing(export, tmp_path, change, parameter, words):
    out = tmp_path / "out"
    with pytest.raises(InputError) as e:
        run_training(config(export, out, **change))
    assert e.value.parameter == parameter
    assert words in e.value.message
    assert not out.exists()


def test_folder_that_is_not_an_export(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError) as e:
        run_training(config(str(tmp_path / "empty"), tmp_path / "out"))
    assert e.value.parameter == "IN_FOLDER"
    assert not (tmp_path / "out").exists()


def test_format_the_model_cannot_train_on(tmp_path):
    import data_helpers as dh
    raster, _ = dh.raster(tmp_path)
    voc = dh.export(raster, tmp_path / "voc", "PASCAL_VOC_rectangles")
    with pytest.raises(InputError) as e:
        run_training(config(voc, tmp_path / "out"))
    assert e.value.parameter == "MODEL_TYPE"
    assert "Classified_Tiles" in e.value.message and "PASCAL_VOC_rectangles" in e.value.message
    assert not (tmp_path / "out").exists()


@pytest.mark.trains
def test_cancel_keeps_a_resumable_checkpoint_and_resume_finishes(export, tmp_path):
    out = tmp_path / "run"
    seen, events = collect()
    state = {"epochs": 0}

    def cancel():  # asked to stop during the third epoch
        state["epochs"] = sum(1 for e in seen if e["event"] == "metric")
        return state["epochs"] >= 2
    with pytest.raises(Canceled) as e:
        run_training(config(export, out, max_epochs=4, stop_training=False), events, cancel)
    assert "resume true" in str(e.value)
    check = out / "checkpoint" / "last.pt"
    assert check.is_file()
    assert not list(out.glob("*.dlpk")) and not list(out.glob("*.emd"))
    saved = torch.load(check, weights_only=True)
    assert saved["epoch"] == 2
    # resumed: epochs 3 and 4 only, and the history has all four
    seen2, events2 = collect()
    result = run_training(config(export, out, max_epochs=4, stop_training=False, arguments="resume true"), events2)
    assert [m["epoch"] for m in seen2 if m["event"] == "metric"] == [3, 4]
    assert [h["epoch"] for h in result.history] == [0, 1, 2, 3]
    assert (out / "run.dlpk").is_file() and not check.exists()


@pytest.mark.trains
def test_resume_refuses_a_checkpoint_of_another_run(export, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Canceled):
        run_training(config(export, out, max_epochs=3), cancel=lambda: os.path.exists(out / "checkpoint"))
    with pytest.raises(InputError) as e:
        run_training(config(export, out, max_epochs=3, batch_size=4, arguments="resume true"))
    assert e.value.parameter == "BATCH_SIZE" and "another run" in e.value.message


@pytest.mark.trains
def test_fine_tune_from_a_package_and_refuse_another_backbone(export, tmp_path):
    first = run_training(config(export, tmp_path / "a", max_epochs=2))
    seen, events = collect()
    second = run_training(config(export, tmp_path / "b", max_epochs=1, pretrained_model=first.out_model_file),
                          events)
    assert any("fine-tuning from" in e.get("message", "") for e in seen)
    assert json.loads(Path(second.emd).read_text())["PretrainedWeights"] == f"model: {first.out_model_file}"
    # starting from the trained weights, the first epoch is already good
    assert second.history[0]["miou"] > first.history[0]["miou"]
    with pytest.raises(InputError) as e:
        run_training(config(export, tmp_path / "c", backbone="RESNET34", pretrained_model=first.emd))
    assert e.value.parameter == "PRETRAINED_MODEL" and "resnet18" in e.value.message
    assert not (tmp_path / "c").exists()


@pytest.mark.trains
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")
def test_cuda_mixed_precision_channels_last(export, tmp_path):
    seen, events = collect()
    result = run_training(config(export, tmp_path / "gpu", device="cuda", num_workers=2, max_epochs=4), events)
    assert any("cuda" in e.get("message", "") and "autocast" in e.get("message", "") for e in seen)
    assert result.metrics["miou"] > 0.4


@pytest.mark.trains
def test_data_error_in_a_loader_worker_keeps_its_parameter(export, tmp_path):
    """A chip that breaks while DataLoader worker processes read it: still a named error."""
    broken = tmp_path / "broken"
    import shutil
    shutil.copytree(export, broken)
    for chip in sorted((broken / "images").glob("*.tif"))[1::3]:  # not the first: read when opening
        chip.write_bytes(b"not a tiff")
    with pytest.raises(InputError) as e:
        run_training(config(str(broken), tmp_path / "out", num_workers=1, max_epochs=1))
    assert e.value.parameter == "IN_FOLDER" and "cannot be read" in e.value.message
