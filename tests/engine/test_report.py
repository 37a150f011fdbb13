"""model_metrics.html as a report a person reads (issue 17 item 5): each setting once with its
arcpy name and what it did (FREEZE ignored says so), no internal dump; whole-number epoch ticks
on the loss graph; a warning when the validation set is too small or too empty to trust."""

import html
import re
from pathlib import Path

import pytest

pytest.importorskip("torch")

from dl_engine.package import report, write_model_package  # noqa: E402
from test_package_helpers import exports, fake_spec, history, make_record, metrics, state_dict  # noqa: E402,F401

# What run.py records: the parameters as given (TrainConfig) and, under "run", what they led to.
GIVEN = {"in_folder": "/data/chips", "out_folder": "/data/model", "model_type": "TESTUNET", "max_epochs": 20,
         "batch_size": 8, "arguments": "", "learning_rate": None, "backbone": "RESNET34", "pretrained_model": None,
         "validation_percentage": 10.0, "stop_training": True, "freeze": True, "augmentation": "DEFAULT",
         "augmentation_parameters": None, "chip_size": None, "resize_to": None, "weight_init_scheme": "RANDOM",
         "monitor": "VALID_LOSS", "tensorboard": False, "device": "auto", "num_workers": None, "precision": "auto",
         "seed": 42, "patience": 5, "max_steps": None, "write_dlpk": True, "auto_batch_size": False}
RUN = {"device": "cpu (2 threads)", "learning_rate": 8.3e-4, "batch_size": 8, "epochs_run": 3,
       "stop_reason": "early_stopping", "freeze_epochs": 0, "train_chips": 180, "valid_chips": 20}


def settings(**run):
    return dict(GIVEN, run=dict(RUN, **run))


def table(text, title="Settings"):
    """The rows of the table after <p><b>title</b></p> as lists of cell texts."""
    part = text.split(f"<p><b>{title}</b></p>", 1)[1].split("</table>", 1)[0]
    return [[html.unescape(c) for c in re.findall(r"<t[dh]>(.*?)</t[dh]>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", part)]


def written(exports, folder, **kw):
    paths = write_model_package(make_record(exports["rgb"], **kw), state_dict(), folder, log=lambda m: None)
    return Path(paths.html).read_text(encoding="utf-8")


def test_each_setting_once_with_its_arcpy_name_and_what_it_did(exports, fake_spec, tmp_path):
    text = written(exports, tmp_path / "m", settings=settings())
    rows = table(text)
    assert rows[0] == ["Setting", "Parameter", "Value", "In this run"]
    parameters = [r[1] for r in rows[1:] if r[1]]
    assert len(parameters) == len(set(parameters))  # each arcpy name once
    for name in ("IN_FOLDER", "MODEL_TYPE", "BACKBONE_MODEL", "MAX_EPOCHS", "BATCH_SIZE", "LEARNING_RATE",
                 "VALIDATION_PERCENTAGE", "STOP_TRAINING", "FREEZE", "CHIP_SIZE", "MONITOR", "DEVICE"):
        assert name in parameters, name
    by_name = {r[1]: r for r in rows[1:] if r[1]}
    assert by_name["FREEZE"][2] == "true" and by_name["FREEZE"][3].startswith("ignored")
    assert by_name["LEARNING_RATE"][2] == "(empty)" and "learning-rate finder" in by_name["LEARNING_RATE"][3]
    assert by_name["MAX_EPOCHS"][3] == "3 ran; stopped early: valid_loss stopped improving"
    assert by_name["VALIDATION_PERCENTAGE"][3] == "20 of 200 chips held out for validation"
    assert by_name["DEVICE"][2] == "auto" and by_name["DEVICE"][3] == "cpu (2 threads)"
    assert by_name["CHIP_SIZE"][3] == "32 px (the export's tile size)"
    assert "kept epoch 3 of 3" in by_name["MONITOR"][3]
    # the engine's own settings in one row, and nothing internal shown
    [engine] = [r for r in rows if r[0] == "Engine settings"]
    assert engine[2] == "precision auto, seed 42, patience 5"
    cells = " ".join(" ".join(r) for r in rows)
    for internal in ("write_dlpk", "max_steps", "out_folder", "epochs_run", "stop_reason", "freeze_epochs"):
        assert internal not in cells, internal
    assert "Warning" not in text  # 20 validation chips, no foreground share given: nothing to warn about


@pytest.mark.heavy
def test_freeze_that_froze_says_for_how_long(exports, fake_spec, tmp_path):
    rows = table(written(exports, tmp_path / "m", settings=settings(freeze_epochs=5)))
    [freeze] = [r for r in rows if r[1] == "FREEZE"]
    assert freeze[3].startswith("backbone frozen for the first 5 epoch(s)")


@pytest.mark.parametrize("valid_chips, foreground, warned", [
    (2, 0.3, ["few_validation_chips"]),
    (19, 0.3, ["few_validation_chips"]),
    (20, 0.004, ["little_foreground"]),
    (40, 0.3, []),
])
def test_a_validation_set_too_small_to_trust_is_flagged(exports, fake_spec, tmp_path, valid_chips, foreground,
                                                        warned):
    text = written(exports, tmp_path / "m", settings=settings(valid_chips=valid_chips),
                   metrics=dict(metrics(), foreground_share=foreground))
    assert re.findall(r'<div class="warning" id="(\w+)">', text) == warned
    if "few_validation_chips" in warned:
        assert f"only {valid_chips} validation chip(s)" in text and "VALIDATION_PERCENTAGE" in text
    if "little_foreground" in warned:
        assert "0.40% of the validation pixels" in text
    if warned:  # above the numbers it questions
        assert text.index('class="warning"') < text.index("Analysis of the model")


def test_loss_graph_epoch_ticks_are_whole_numbers():
    for n in (1, 3, 7, 13):
        figure = report.loss_graph_figure(history(n), best=n - 1)
        axis = figure.axes[0]
        low, high = axis.get_xlim()
        ticks = [t for t in axis.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), (n, ticks)
        assert 1 <= min(ticks) and max(ticks) <= n
