"""The one-cycle schedule (fastai's fit_one_cycle, which arcgis.learn uses): the learning
rate warms up from max_lr/25 to max_lr over the first 25 % of steps, then anneals by a
cosine to max_lr/1e5; AdamW's beta1 moves the other way (0.95 → 0.85 → 0.95).

A pure function of the step, so a resumed run needs no scheduler state. Freeze-then-unfreeze
(loop.py) runs two cycles: one over the frozen phase, one over the rest."""

from __future__ import annotations

import math
from typing import Tuple

WARMUP = 0.25
DIV_START = 25.0
DIV_END = 1e5
BETA1 = (0.95, 0.85)


def _cos(start: float, end: float, t: float) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * min(max(t, 0.0), 1.0))) / 2


def one_cycle(step: int, total: int, max_lr: float) -> Tuple[float, float]:
    """(learning rate, beta1) at ``step`` of ``total``."""
    total = max(total, 1)
    warm = max(1, int(round(total * WARMUP)))
    if step < warm:
        t = step / warm
        return _cos(max_lr / DIV_START, max_lr, t), _cos(BETA1[0], BETA1[1], t)
    t = (step - warm) / max(total - warm, 1)
    return _cos(max_lr, max_lr / DIV_END, t), _cos(BETA1[1], BETA1[0], t)


def apply(optimizer, lr: float, beta1: float) -> None:
    """Every group at ``lr`` times its ``lr_scale`` (1 unless set: discriminative rates)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
        group["betas"] = (beta1, group["betas"][1])
