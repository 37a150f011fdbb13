"""What OUT_FOLDER may already hold (issue 17 item 4) and resume (item 3): a folder with a
finished model or an interrupted run's checkpoint is refused with the ways on; AutoDL's
OUT_MODEL is never replaced unasked; a cancel says what it kept and how to resume; resume
accepts a larger MAX_EPOCHS and refuses any other change by its parameter name."""

import os

import pytest

torch = pytest.importorskip("torch")

import train_helpers as th  # noqa: E402
from dl_engine.autodl import AutoDLConfig  # noqa: E402
from dl_engine.autodl.run import run_autodl  # noqa: E402
from dl_engine.errors import Canceled, InputError  # noqa: E402
from dl_engine.events import Events  # noqa: E402
from dl_engine.train import TrainConfig  # noqa: E402
from dl_engine.train import resume  # noqa: E402
from dl_engine.train.run import run_training  # noqa: E402


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return th.learnable_export(tmp_path_factory.mktemp("learn"))


def config(export, out, **kw):
    kw.setdefault("backbone", "RESNET18")
    kw.setdefault("batch_size", 8)
    kw.setdefault("max_epochs", 2)
    kw.setdefault("learning_rate", 3e-3)
    kw.setdefault("validation_percentage", 20)
    kw.setdefault("num_workers", 0)
    kw.setdefault("stop_training", False)
    return TrainConfig(in_folder=export, out_folder=str(out), **kw)


# ---- OUT_FOLDER ----------------------------------------------------------------------------------

# OUT_FOLDER is checked before the data is read: these runs need no export.
NO_EXPORT = "/no/export/needed"


def test_a_folder_with_a_finished_model_is_refused(tmp_path):
    out = tmp_path / "trees"
    out.mkdir()
    for name in ("trees.emd", "trees.pth", "trees.dlpk", "model_metrics.html"):
        (out / name).write_text("earlier run")
    for arguments in ("", "resume true"):  # nothing to resume either: no checkpoint
        with pytest.raises(InputError) as e:
            run_training(config(NO_EXPORT, out, arguments=arguments))
        assert e.value.parameter == "OUT_FOLDER"
        message = e.value.message
        assert str(out) in message and "already holds a trained model" in message
        assert "another OUT_FOLDER" in message and f"{out / 'trees.dlpk'} as PRETRAINED_MODEL" in message
    assert sorted(os.listdir(out)) == ["model_metrics.html", "trees.dlpk", "trees.emd", "trees.pth"]


def test_a_folder_with_an_interrupted_run_needs_resume(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoint").mkdir(parents=True)
    (out / "checkpoint" / "last.pt").write_bytes(b"\0" * (3 << 20))
    with pytest.raises(InputError) as e:
        run_training(config(NO_EXPORT, out))
    assert e.value.parameter == "OUT_FOLDER"
    message = e.value.message
    assert str(out) in message and "3.0 MB" in message
    assert "ARGUMENTS 'resume true'" in message and "another OUT_FOLDER" in message


def test_autodl_refuses_an_existing_out_model(tmp_path):
    existing = tmp_path / "best.dlpk"
    existing.write_bytes(b"an earlier run's model")
    for given in (existing, tmp_path / "best"):  # without the extension, .dlpk is added
        with pytest.raises(InputError) as e:
            run_autodl(AutoDLConfig(in_data=str(tmp_path / "chips"), out_model=str(given)))
        assert e.value.parameter == "OUT_MODEL"
        assert str(existing) in e.value.message and "already exists" in e.value.message
        assert "another OUT_MODEL" in e.value.message
    assert existing.read_bytes() == b"an earlier run's model"


# ---- resume: which changes are accepted -----------------------------------------------------------

RUN = dict(model_type="UNET", backbone="resnet18", folders=["/data/chips"], bands=3, classes=["NoData", "Roof"],
           chip_size=64, batch_size=8, max_epochs=4)


def test_resume_accepts_a_larger_max_epochs_and_keeps_the_frozen_phase():
    items = resume.resumable(dict(RUN, freeze_epochs=1), dict(RUN, max_epochs=8, freeze_epochs=2), 3, "/out")
    assert items["max_epochs"] == 8 and items["freeze_epochs"] == 1
    assert resume.resumable(RUN, RUN, 2, "/out") == RUN


@pytest.mark.parametrize("change, parameter, words", [
    (dict(batch_size=4), "BATCH_SIZE", "BATCH_SIZE 8, and this run has 4"),
    (dict(backbone="resnet34"), "BACKBONE_MODEL", "BACKBONE_MODEL resnet18"),
    (dict(model_type="DEEPLAB"), "MODEL_TYPE", "MODEL_TYPE UNET"),
    (dict(chip_size=128), "CHIP_SIZE", "CHIP_SIZE 64"),
    (dict(folders=["/data/other"]), "IN_FOLDER", "/data/chips"),
    (dict(freeze_epochs=1), "FREEZE", "FREEZE off"),
    (dict(max_epochs=3), "MAX_EPOCHS", "the same or a larger MAX_EPOCHS"),
])
def test_resume_refuses_other_changes_by_name(change, parameter, words):
    with pytest.raises(InputError) as e:
        resume.resumable(RUN, dict(RUN, **change), 2, "/out")
    assert e.value.parameter == parameter and words in e.value.message
    assert "/out" in e.value.message


def test_the_cancel_message_says_what_was_kept_and_how_to_resume(tmp_path):
    check = tmp_path / "checkpoint" / "last.pt"
    assert "nothing was kept" in resume.canceled_message(str(check), 0, 4)
    check.parent.mkdir()
    check.write_bytes(b"\0" * (12 << 20))
    message = resume.canceled_message(str(check), 2, 4, "best valid_loss 0.41 at epoch 2")
    assert message.startswith("training canceled after epoch 2 of 4")
    for words in (str(check), "12 MB", "best valid_loss 0.41 at epoch 2", "ARGUMENTS 'resume true'",
                  "a larger MAX_EPOCHS", "another OUT_FOLDER"):
        assert words in message, (words, message)


@pytest.mark.trains
def test_cancel_then_resume_with_more_epochs(export, tmp_path):
    out = tmp_path / "run"
    seen = []
    with pytest.raises(Canceled) as e:  # canceled during the second epoch
        run_training(config(export, out), Events(sink=seen.append),
                     cancel=lambda: any(x["event"] == "metric" for x in seen))
    check = out / "checkpoint" / "last.pt"
    assert check.is_file()
    message = str(e.value)
    assert message.startswith("training canceled after epoch 1 of 2") and str(check) in message
    assert "resume true" in message and "best valid_loss" in message

    with pytest.raises(InputError) as refused:  # another batch size: another run
        run_training(config(export, out, batch_size=4, arguments="resume true"))
    assert refused.value.parameter == "BATCH_SIZE"

    again = []
    result = run_training(config(export, out, max_epochs=3, arguments="resume true"), Events(sink=again.append))
    assert [x["epoch"] for x in again if x["event"] == "metric"] == [2, 3]
    assert all(x["epochs"] == 3 for x in again if x["event"] == "metric")
    assert any("MAX_EPOCHS 2 → 3" in x.get("message", "") for x in again)
    assert [h["epoch"] for h in result.history] == [0, 1, 2]
    assert (out / "run.dlpk").is_file() and not check.exists()
