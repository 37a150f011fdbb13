"""LEARNING_RATE left empty: a learning-rate range test (fastai's ``lr_find``, which
arcgis.learn runs), kept to a small share of the run.

- **Cost.** At most ``MAX_STEPS`` (100) training steps and at most ``SHARE`` (10 %) of the
  run's planned steps (``finder_steps``); a run too short for ``MIN_STEPS`` (20) such steps
  within that share skips the test and uses ``DEFAULT_LR``. The rate grows exponentially
  from ``START`` (1e-6) to ``END`` (1) over those steps; the test stops early when the
  smoothed loss is no longer finite or exceeds 4 times its best (it has diverged). The
  model's weights are restored after.
- **The rule** (``suggest``, on the per-step losses): the losses are smoothed by a centred
  moving average over a decade of rates (no lag: a trailing average puts the minimum late,
  at too high a rate), and slopes are measured over a decade too (one batch's noise is no
  descent); the pick is the *lower* of the rate of steepest descent of the smoothed loss
  (against log10 of the rate) before its minimum, and the minimum's rate / 10 (fastai's two
  suggestions). A pick below ``MIN_LR`` is raised to it. A curve that never descends (its
  minimum less than 10 % below its start), too few usable steps, or a pick at or above
  ``MAX_LR`` (a rate AdamW does not keep stable on small data: the curve did not show where
  training breaks down) fall back to ``DEFAULT_LR`` (1e-3, AdamW's safe default), and the
  log says so.
- **Reporting**: one log line with the chosen rate and why; the progress bar moves, no
  per-step log lines.

With a frozen backbone (FREEZE, pretrained weights) the test trains what training's first
phase trains: the head."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import checkpoint as ckpt
from .distributed import Dist
from ..events import Events
from .loader import to_device

START, END = 1e-6, 1.0
MAX_STEPS = 100  # steps at most
MIN_STEPS = 20  # fewer cannot resolve the curve: the finder is skipped
SHARE = 0.10  # of the run's planned steps, at most
MIN_LR, MAX_LR = 1e-5, 1e-2  # a pick below is raised to MIN_LR; at or above MAX_LR it is not trusted
DEFAULT_LR = 1e-3  # AdamW's safe default
MIN_DROP = 0.10  # the smoothed loss must fall at least this share below its start
DIVERGED = 4.0  # stop when the smoothed loss exceeds this many times its best
STOP_BETA = 0.8  # the running average the stop test watches (about 5 steps)
SMOOTH_DECADES = 1.0  # the loss is averaged over this span of rates (log10)
SLOPE_DECADES = 1.0  # the descent is measured over this span of rates


@dataclass
class Suggestion:
    lr: float
    reason: str  # why, for the log
    fallback: bool = False  # the curve gave no usable rate: DEFAULT_LR


def finder_steps(planned_steps: int) -> int:
    """Steps the finder may take in a run of ``planned_steps`` optimizer steps; 0 when the
    run is too short to spend MIN_STEPS on it within SHARE."""
    steps = min(MAX_STEPS, int(SHARE * max(int(planned_steps), 0)))
    return steps if steps >= MIN_STEPS else 0


def find_learning_rate(model, net, task, runtime, dist: Dist, events: Events, loader, sampler,
                       iterations: int = MAX_STEPS, weight_decay: float = 0.01,
                       check_cancel: Callable[[], None] = lambda: None,
                       progress: Callable[[float], None] = lambda f: None,
                       ) -> Tuple[float, List[Tuple[float, float]]]:
    """(learning rate, [(rate, loss) per step]); logs one line with the rate and why."""
    saved = ckpt.cpu_state(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=START, weight_decay=weight_decay)
    n = max(2, int(iterations))
    curve: List[Tuple[float, float]] = []
    running: Optional[float] = None
    best = math.inf
    stopped = ""
    net.train()
    step, epoch = 0, 10_000  # an epoch number of its own: augmentation differs from training's
    try:
        while step < n and not stopped:
            sampler.set_epoch(epoch)
            for batch in loader:
                check_cancel()
                lr = START * (END / START) ** (step / (n - 1))
                for g in optimizer.param_groups:
                    g["lr"] = lr
                batch = to_device(batch, runtime.device, runtime.channels_last)
                loss = task.training_loss(net, batch, runtime)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                value = dist.broadcast_float(float(loss.detach()), runtime.device)
                step += 1
                progress(step / n)
                if not math.isfinite(value):
                    stopped = f"the loss was not finite at {lr:.1e}"
                    break
                curve.append((lr, value))
                running = value if running is None else STOP_BETA * running + (1 - STOP_BETA) * value
                best = min(best, running)
                if step > 5 and running > DIVERGED * best:
                    stopped = f"the loss diverged at {lr:.1e}"
                    break
                if step >= n:
                    break
            epoch += 1
    finally:
        model.load_state_dict(saved)
        model.zero_grad(set_to_none=True)
    s = suggest([c[0] for c in curve], [c[1] for c in curve])
    lr = dist.broadcast_float(s.lr, runtime.device)
    events.log(f"learning-rate finder: {len(curve)} steps from {START:.0e}"
               + (f" ({stopped})" if stopped else f" to {curve[-1][0]:.1e}" if curve else "")
               + f"; learning rate {lr:.2e} chosen: {s.reason}")
    return lr, curve


def smooth(values: Sequence[float], half: int) -> np.ndarray:
    """Centred moving average over 2 * half + 1 points (fewer at the ends)."""
    y = np.asarray(values, np.float64)
    n = len(y)
    half = max(int(half), 0)
    c = np.concatenate([[0.0], np.cumsum(y)])
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) + half + 1, 0, n)
    return (c[hi] - c[lo]) / (hi - lo)


def suggest(lrs: Sequence[float], losses: Sequence[float]) -> Suggestion:
    """The learning rate a range test's curve suggests (the rule in the module's docstring)."""
    pts = [(float(r), float(v)) for r, v in zip(lrs, losses) if math.isfinite(v) and r > 0]
    default = f"{DEFAULT_LR:.0e}, AdamW's safe default"
    if len(pts) < 8:
        return Suggestion(DEFAULT_LR, f"too few usable steps ({len(pts)}) to read the curve; {default}", True)
    rates = np.array([p[0] for p in pts])
    x = np.log10(rates)
    per_decade = (len(x) - 1) / max(float(x[-1] - x[0]), 1e-9)
    # smoothed over about half a decade of rates, slopes over about half a decade: a batch's
    # noise is not a descent
    y = smooth([p[1] for p in pts], max(1, int(round(SMOOTH_DECADES / 2 * per_decade))))
    i_min = int(np.argmin(y))
    start = float(y[0])
    drop = (start - float(y[i_min])) / abs(start) if start else 0.0
    if i_min == 0 or drop < MIN_DROP:
        return Suggestion(DEFAULT_LR, f"the loss did not fall (at most {max(drop, 0.0):.0%} below its start); "
                                      f"{default}", True)
    h = max(1, int(round(SLOPE_DECADES / 2 * per_decade)))
    idx = np.arange(i_min + 1)
    lo, hi = np.clip(idx - h, 0, i_min), np.clip(idx + h, 0, i_min)
    slope = (y[hi] - y[lo]) / np.maximum(x[hi] - x[lo], 1e-12)
    i_steep = int(np.argmin(slope))
    steep, valley = float(rates[i_steep]), float(rates[i_min]) / 10.0
    lr = min(steep, valley)
    why = (f"steepest descent at {steep:.1e}, lowest loss at {rates[i_min]:.1e} (/10 = {valley:.1e}); "
           f"the lower taken")
    if lr >= MAX_LR:
        return Suggestion(DEFAULT_LR, f"the curve points at {lr:.1e}, at or above {MAX_LR:.0e}, where AdamW "
                                      f"does not stay stable ({why}); {default}", True)
    if lr < MIN_LR:
        return Suggestion(MIN_LR, f"{why}, raised to {MIN_LR:.0e}")
    return Suggestion(lr, why)
