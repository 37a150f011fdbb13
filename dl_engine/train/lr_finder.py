"""LEARNING_RATE left empty: a learning-rate range test (fastai's ``lr_find``, which
arcgis.learn runs). The rate grows exponentially from 1e-7 to 10 over up to 100 training
steps; the pick is a tenth of the rate at the lowest smoothed loss, where the loss is
still falling steeply and training is stable. The model's weights are restored after."""

from __future__ import annotations

import math
from typing import Callable, List, Tuple

import torch

from . import checkpoint as ckpt
from .distributed import Dist
from ..events import Events
from .loader import to_device

START, END = 1e-7, 10.0
MAX_ITERATIONS = 100
MIN_LR, MAX_LR = 1e-5, 1e-2  # a pick outside this range is noise on small data
DEFAULT_LR = 1e-3


def find_learning_rate(model, net, task, runtime, dist: Dist, events: Events, loader, sampler,
                       iterations: int = MAX_ITERATIONS, weight_decay: float = 0.01,
                       check_cancel: Callable[[], None] = lambda: None,
                       progress: Callable[[float], None] = lambda f: None) -> Tuple[float, List[Tuple[float, float]]]:
    saved = ckpt.cpu_state(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=START, weight_decay=weight_decay)
    n = max(2, iterations)
    curve: List[Tuple[float, float]] = []
    smooth, best = 0.0, math.inf
    net.train()
    step, epoch = 0, 10_000  # an epoch number of its own: augmentation differs from training's
    try:
        while step < n:
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
                smooth = 0.98 * smooth + 0.02 * value
                debiased = smooth / (1 - 0.98 ** step)
                progress(step / n)
                if not math.isfinite(debiased) or (step > 5 and debiased > 4 * best):
                    step = n  # diverged: the rest of the range is useless
                    break
                curve.append((lr, debiased))
                best = min(best, debiased)
                if step >= n:
                    break
            epoch += 1
    finally:
        model.load_state_dict(saved)
        model.zero_grad(set_to_none=True)
    lr = pick(curve)
    lr = dist.broadcast_float(lr, runtime.device)
    events.log(f"learning-rate finder: {len(curve)} steps, lowest loss at "
               f"{min(curve, key=lambda c: c[1])[0]:.2e}; learning rate {lr:.2e} chosen" if curve else
               f"learning-rate finder: no usable steps; learning rate {lr:.2e}")
    return lr, curve


def pick(curve: List[Tuple[float, float]]) -> float:
    if len(curve) < 3:
        return DEFAULT_LR
    lr_at_min = min(curve, key=lambda c: c[1])[0]
    return float(min(max(lr_at_min / 10.0, MIN_LR), MAX_LR))
