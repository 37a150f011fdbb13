"""A run that learned nothing says so: the verdict on validation counts (no training), and a
run whose model can only learn the class priors ends with the warning and the flag; a model
that learns gets neither (test_train_engine.py's first test)."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import train_helpers as th  # noqa: E402
from dl_engine.events import Events  # noqa: E402
from dl_engine.models.registry import registered  # noqa: E402
from dl_engine.models.spec import BuiltModel, ModelSpec  # noqa: E402
from dl_engine.train import TrainConfig  # noqa: E402
from dl_engine.train import verdict as v  # noqa: E402
from dl_engine.train.detection_metrics import IOU_THRESHOLDS  # noqa: E402
from dl_engine.train.run import run_training  # noqa: E402

NAMES = ["NoData", "Roof", "Pool"]


def confusion(rows):
    return np.array(rows, dtype=np.int64)


# ---- pixel models ------------------------------------------------------------------------------

def test_pixels_background_everywhere():
    m = confusion([[900, 0, 0], [60, 0, 0], [40, 0, 0]])
    reason = v.judge_pixels(m, NAMES, True, [], "valid_loss")
    assert "no foreground" in reason and "NoData" in reason


def test_pixels_one_foreground_class_everywhere_is_no_better_than_a_guess():
    m = confusion([[0, 900, 0], [0, 60, 0], [0, 40, 0]])
    reason = v.judge_pixels(m, NAMES, True, [], "miou")
    assert "no better than a guess" in reason and "'Roof' everywhere" in reason


def test_pixels_at_random_is_no_better_than_a_guess():
    truth = np.array([900, 60, 40])
    m = np.round(np.outer(truth, [0.5, 0.3, 0.2])).astype(np.int64)  # predictions independent of the truth
    assert "no better than a guess" in v.judge_pixels(m, NAMES, True, [], "miou")


def test_pixels_a_model_that_learned():
    m = confusion([[880, 15, 5], [20, 40, 0], [10, 0, 30]])
    assert v.judge_pixels(m, NAMES, True, [], "miou") == ""
    assert v.judge_pixels(m, NAMES, True, [], "accuracy") == ""
    # no foreground in the validation chips: no verdict
    assert v.judge_pixels(confusion([[900, 5, 0], [0, 0, 0], [0, 0, 0]]), NAMES, True, [], "miou") is None


# ---- object classifiers --------------------------------------------------------------------------

def test_classifier_same_class_for_every_chip():
    m = confusion([[0, 30], [0, 10]])
    assert "same class (Pool)" in v.judge_classes(m, ["Roof", "Pool"], [], "accuracy")


def test_classifier_no_better_than_the_majority():
    m = confusion([[50, 25, 0], [10, 5, 0], [4, 2, 0]])  # answers independent of the truth
    reason = v.judge_classes(m, ["a", "b", "c"], [], "accuracy")
    assert "no better than a guess" in reason
    assert v.judge_classes(confusion([[28, 2], [3, 7]]), ["Roof", "Pool"], [], "accuracy") == ""
    assert v.judge_classes(confusion([[28, 2], [0, 0]]), ["Roof", "Pool"], [], "accuracy") is None


def test_multi_label():
    # (K, 4): TP, FP, FN, TN; 10 chips
    same = np.array([[6, 4, 0, 0], [0, 0, 3, 7]])  # every chip: class 0 on, class 1 off
    assert "same labels" in v.judge_multi_label(same, ["a", "b"], [])
    good = np.array([[5, 1, 1, 3], [2, 0, 1, 7]])
    assert v.judge_multi_label(good, ["a", "b"], []) == ""


# ---- detectors -------------------------------------------------------------------------------------

def state(scores, tp, objects):
    tp = np.zeros((len(scores), len(IOU_THRESHOLDS)), bool) if tp is None else np.array(tp, bool)
    return {"scores": np.array(scores, float), "labels": np.ones(len(scores), np.int64), "tp": tp,
            "objects": np.array(objects)}


def test_detector_verdicts():
    assert "no box scores 0.5" in v.judge_detections(state([0.2, 0.1], None, [0, 4]))
    assert "no box scores 0.5" in v.judge_detections(state([], None, [0, 4]))
    assert "matches" in v.judge_detections(state([0.9], None, [0, 4]))
    hit = np.zeros((1, len(IOU_THRESHOLDS)), bool)
    hit[0, 0] = True
    assert v.judge_detections(state([0.9], hit, [0, 4])) == ""
    assert v.judge_detections(state([0.9], None, [0, 0])) is None


# ---- a run ---------------------------------------------------------------------------------------------

class Priors(torch.nn.Module):
    """A pixel model that sees nothing: one logit per class everywhere (it can learn only
    the class frequencies, so it predicts the background everywhere)."""

    def __init__(self, num_classes):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(num_classes))

    def forward(self, x):
        return self.bias[None, :, None, None].expand(x.shape[0], -1, x.shape[2], x.shape[3]) + 0 * x[:, :1]


PRIORS = ModelSpec(keyword="PRIORS", model_name="Priors", model_type="ImageClassification", kind="pixel",
                   formats=("Classified_Tiles",), arguments={},
                   build=lambda ctx: BuiltModel(Priors(ctx.num_classes), "none", False),
                   emd_params=lambda a, b: {})


@pytest.mark.trains
def test_a_run_that_learned_nothing_says_so(tmp_path):
    export = th.learnable_export(tmp_path / "data", size=128)
    seen = []
    with registered(PRIORS):
        result = run_training(TrainConfig(in_folder=export, out_folder=str(tmp_path / "m"), model_type="PRIORS",
                                          max_epochs=2, batch_size=8, learning_rate=1e-2, num_workers=0,
                                          validation_percentage=25), Events(sink=seen.append))
    warnings = [e["message"] for e in seen if e.get("level") == "warning" and "learned nothing" in e["message"]]
    assert len(warnings) == 1, warnings
    assert "no foreground" in warnings[0]
    for hint in ("MAX_EPOCHS", "LEARNING_RATE", "labels", "pretrained backbone", "class_balancing"):
        assert hint in warnings[0], hint
    assert result.metrics["learned_nothing"] is True and "no foreground" in result.metrics["learned_nothing_reason"]
    # the result event (what the Processing tool's METRICS output shows) carries the flag
    final = [e for e in seen if e["event"] == "result"][0]
    assert json.loads(json.dumps(final["metrics"]))["learned_nothing"] is True
    assert "learned_nothing" in (tmp_path / "m" / "model_metrics.html").read_text()


@pytest.mark.parametrize("chips, warned", [(5, False), (v.MIN_CHIPS_FOR_GUESS, True)])
def test_a_guess_level_verdict_needs_enough_validation_chips(chips, warned):
    """On a handful of validation chips "no better than a guess" is noise: a log line, no warning,
    no flag; "predicts nothing" is still a warning there (test above)."""
    from types import SimpleNamespace

    from dl_engine.train.loop import FitState
    from dl_engine.train.run import _learned_nothing

    reason = v._no_better("miou", 0.05, 0.088, "classes at random in the model's proportions")
    assert v.is_guess_level(reason) and not v.is_guess_level("it predicts no foreground: …")
    state = FitState(best_epoch=0, best_metrics={"learned_nothing": True, "learned_nothing_reason": reason},
                     history=[{"valid_loss": 1.0}])
    plan = SimpleNamespace(data=SimpleNamespace(valid=list(range(chips))), spec=SimpleNamespace(kind="pixel"))
    seen = []
    _learned_nothing(state, plan, 1e-3, True, Events(sink=seen.append))
    warnings = [e for e in seen if e.get("level") == "warning"]
    assert bool(warnings) is warned
    assert state.best_metrics["learned_nothing"] is warned
    if not warned:
        assert any("too few chips to judge" in e["message"] for e in seen)
