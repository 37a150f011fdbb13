"""Did the model learn anything? Judged at every validation from the counts the metrics
come from (``judge``), so the kept epoch's verdict travels with its metrics; ``run.py``
turns a "no" into one warning that says what to try, and the result's metrics carry
``learned_nothing``.

A model learned nothing when, on the validation chips:

- pixel models: it predicts no pixel of any foreground class, or its mIoU (DICE/F1 when
  MONITOR is one of those) is no better than a guess that ignores the image: the best of
  predicting one class everywhere (the majority class scores 0) and predicting classes at
  random in the proportions the model predicts them;
- object classifiers: it gives every chip the same class (multi-label: the same labels),
  or its accuracy (F1 when MONITOR is F1) is no better than such a guess (always answering
  the most common class, or answering at random in the model's proportions);
- detectors: no box scores at least the detection threshold (0.5, Detect Objects'
  default), or none of its boxes matches an object (average precision 0).

Each judge returns the reason when the model learned nothing, "" when it learned something,
and None (no verdict) when the validation chips cannot tell: no foreground, objects or second
class in them."""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import numpy as np

from .metrics import pixel_metrics

MARGIN = 0.01  # a metric this close to the guess is no better than it
# Comparing with a guess needs this many validation chips; on fewer (a small export's split)
# the metric is too noisy to call a model useless, so only "predicts nothing" is judged.
MIN_CHIPS_FOR_GUESS = 10
NO_BETTER = "its validation "  # how a "no better than a guess" reason starts
SCORE_THRESHOLD = 0.5  # Detect Objects' default threshold


def is_guess_level(reason: Optional[str]) -> bool:
    """The reason says "no better than a guess" (not "predicts nothing")."""
    return bool(reason) and reason.startswith(NO_BETTER)


def judge(task, state, monitor_key: str) -> Optional[str]:
    """Why the validated model learned nothing; "" when it learned something; None when the
    validation chips cannot tell."""
    kind = getattr(task, "kind", "")
    if kind == "pixel":
        return judge_pixels(np.asarray(state), list(task.class_map.names), bool(task.class_map.background),
                            list(task.ignore_index), monitor_key)
    if kind == "classification":
        if task.multi_label or (task.multi_label is None and int(np.asarray(state)[-1]) > 0):
            k = task.num_classes
            values = np.asarray(state, np.int64)
            return judge_multi_label(values[k * k: k * k + 4 * k].reshape(k, 4), list(task.names),
                                     list(task.ignore_index))
        k = task.num_classes
        return judge_classes(np.asarray(state, np.int64)[: k * k].reshape(k, k), list(task.names),
                             list(task.ignore_index), monitor_key)
    if kind in ("detection", "instance"):
        return judge_detections(state)
    return None


def _guess(truth: np.ndarray, predicted: np.ndarray, metric: Callable[[np.ndarray], float]):
    """(best score of a guess that ignores the image, the class it answers everywhere or None:
    at random in the model's proportions)."""
    k = len(truth)
    best, which = -np.inf, None
    for c in range(k):  # one class everywhere
        m = np.zeros((k, k))
        m[:, c] = truth
        v = metric(m)
        if v > best:
            best, which = v, c
    if predicted.sum() > 0:  # at random, in the model's proportions
        v = metric(np.outer(truth, predicted / predicted.sum()))
        if v > best:
            best, which = v, None
    return best, which


def _against_guess(m: np.ndarray, truth: np.ndarray, pred: np.ndarray, score: Callable[[np.ndarray], float],
                   key: str, one_class: Callable[[int], str]) -> str:
    """"" when the model's ``score`` beats the best guess that ignores the image by MARGIN, else why not."""
    value = score(m)
    guess, which = _guess(truth, pred, score)
    if value <= guess + MARGIN:
        return _no_better(key, value, guess, "classes at random in the model's proportions" if which is None
                          else one_class(which))
    return ""


def _no_better(key: str, value: float, guess: float, answer: str) -> str:
    return (f"{NO_BETTER}{key} ({value:.3f}) is no better than a guess that ignores the image "
            f"({guess:.3f}: {answer})")


def judge_pixels(matrix: np.ndarray, names: Sequence[str], background: bool, exclude: Sequence[int],
                 monitor_key: str) -> Optional[str]:
    m = np.asarray(matrix, np.float64)
    first = 1 if background and len(names) > 1 else 0
    fg = [i for i in range(first, len(names)) if i not in exclude]
    truth, pred = m.sum(axis=1), m.sum(axis=0)
    if not fg or truth[fg].sum() == 0:
        return None  # no foreground in the validation chips: nothing to tell
    if pred[fg].sum() == 0:
        return f"it predicts no foreground: every validation pixel is classed as {names[0]}"
    key = monitor_key if monitor_key in ("miou", "dice", "f1") else "miou"
    score = lambda x: float(pixel_metrics(x, names, background, exclude)[key])  # noqa: E731
    return _against_guess(m, truth, pred, score, key, lambda c: f"'{names[c]}' everywhere")


def judge_classes(confusion: np.ndarray, names: Sequence[str], exclude: Sequence[int],
                  monitor_key: str) -> Optional[str]:
    m = np.asarray(confusion, np.float64)
    keep = [i for i in range(len(names)) if i not in exclude]
    truth, pred = m.sum(axis=1), m.sum(axis=0)
    if int((truth[keep] > 0).sum()) < 2:
        return None  # one class among the validation chips: nothing to tell
    used = [i for i in keep if pred[i] > 0]
    if len(used) <= 1:
        return f"it gives every validation chip the same class ({names[used[0]] if used else 'none'})"
    key = monitor_key if monitor_key in ("accuracy", "f1") else "accuracy"
    score = lambda x: float(pixel_metrics(x, names, False, exclude)[key])  # noqa: E731
    return _against_guess(m, truth, pred, score, key, lambda c: f"always '{names[c]}'")


def judge_multi_label(counts: np.ndarray, names: Sequence[str], exclude: Sequence[int]) -> Optional[str]:
    """counts: (K, 4) TP, FP, FN, TN per class."""
    c = np.asarray(counts, np.float64)
    keep = [i for i in range(len(names)) if i not in exclude]
    tp, fp, fn, tn = (c[keep, j] for j in range(4))
    chips = tp + fp + fn + tn
    if not len(keep) or chips.max() == 0:
        return None
    positives = tp + fn
    if not ((positives > 0) & (positives < chips)).any():
        return None  # every class is on every chip or on none: nothing to tell
    predicted = tp + fp
    if np.all((predicted == 0) | (predicted == chips)):
        return "it gives every validation chip the same labels"
    right = (tp + tn).sum() / chips.sum()
    guess = np.maximum(positives, chips - positives).sum() / chips.sum()
    if right <= guess + MARGIN:
        return (f"its label accuracy ({right:.3f}) is no better than answering the most common way for every "
                f"class ({guess:.3f})")
    return ""


def judge_detections(state: Dict[str, np.ndarray], threshold: float = SCORE_THRESHOLD) -> Optional[str]:
    objects = np.asarray(state.get("objects", []))
    if objects.sum() == 0:
        return None  # no objects in the validation chips
    scores = np.asarray(state.get("scores", []), np.float64)
    if not (scores >= threshold).any():
        best = f" (the best scores {scores.max():.2f})" if len(scores) else ""
        return f"no box scores {threshold} or more on any validation chip{best}: it finds nothing"
    tp = np.asarray(state.get("tp", np.zeros((0, 1), bool)))
    if not len(tp) or not tp[:, 0].any():
        return "none of its boxes matches an object (average precision 0)"
    return ""
