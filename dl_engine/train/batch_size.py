"""The automatic batch size (AutoDL; TrainConfig.auto_batch_size): the largest batch that fits
the device, found by probing.

On a GPU a training step (forward and backward on real chips) is measured at two batch sizes;
the peak memory grows linearly with the batch, so the largest batch that fits 85 % of the
free memory is predicted, then tried, halving on out-of-memory until a step succeeds. On the
CPU memory is rarely the limit and throughput stops growing after a few chips, so the batch
is sized to about eight 256-px chips' worth of pixels. Either way the batch stays within
[2, upper] (BatchNorm needs two chips) and leaves at least MIN_STEPS optimizer steps per
epoch, because a batch as large as the data set would train one step per epoch."""

from __future__ import annotations

import math
from typing import Callable, List

import torch

from .loader import to_device

GPU_MEMORY_SHARE = 0.85
CPU_PIXELS = 8 * 256 * 256
MIN_STEPS = 4


def _floor_pow2(n: float) -> int:
    return 1 << max(0, int(math.floor(math.log2(max(n, 1)))))


def limit_for_data(upper: int, train_chips: int) -> int:
    return max(2, min(int(upper), train_chips // MIN_STEPS))


def choose_batch_size(model: torch.nn.Module, task, runtime, train_ds, chip_size: int, upper: int,
                      log: Callable[[str], None]) -> int:
    limit = limit_for_data(upper, len(train_ds))
    if not runtime.is_cuda:
        batch = max(2, min(limit, _floor_pow2(CPU_PIXELS / max(chip_size, 1) ** 2)))
        log(f"batch size {batch} (automatic: CPU, {chip_size} px chips, {len(train_ds)} training chips)")
        return batch
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}  # BatchNorm statistics move
    try:
        batch = _probe_gpu(model, task, runtime, train_ds, limit, log)
    finally:
        model.load_state_dict(saved)
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
    return batch


def _step(model, task, runtime, train_ds, batch: int) -> int:
    """One forward and backward pass on ``batch`` chips; the peak memory in bytes."""
    items: List[dict] = [train_ds[i % len(train_ds)] for i in range(batch)]
    data = to_device(task.collate(items), runtime.device, runtime.channels_last)
    torch.cuda.synchronize(runtime.device)
    torch.cuda.reset_peak_memory_stats(runtime.device)
    model.train()
    loss = task.training_loss(model, data, runtime)
    loss.backward()
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize(runtime.device)
    return int(torch.cuda.max_memory_allocated(runtime.device))


def _fits(model, task, runtime, train_ds, batch: int):
    try:
        return _step(model, task, runtime, train_ds, batch)
    except torch.cuda.OutOfMemoryError:
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        return None


def _probe_gpu(model, task, runtime, train_ds, limit: int, log) -> int:
    small = min(2, limit)
    peak_small = _fits(model, task, runtime, train_ds, small)
    if peak_small is None:
        log("batch size 2: even two chips exceed the GPU memory; trying anyway")
        return 2
    batch = small
    if limit > small:
        peak_big = _fits(model, task, runtime, train_ds, 2 * small)
        if peak_big is None:
            return small
        per_chip = max((peak_big - peak_small) / small, 1.0)
        free, _ = torch.cuda.mem_get_info(runtime.device)
        in_use = torch.cuda.memory_allocated(runtime.device)
        # AdamW's two moments per trained weight come on top of what the probe measured
        moments = 2 * sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
        room = (free + in_use) * GPU_MEMORY_SHARE - (peak_small - small * per_chip) - moments
        batch = max(2 * small, min(limit, _floor_pow2(room / per_chip)))
        while batch > 2 * small and _fits(model, task, runtime, train_ds, batch) is None:
            batch //= 2
        log(f"batch size {batch} (automatic: {per_chip / 2 ** 20:.0f} MiB per chip, "
            f"{(free + in_use) / 2 ** 30:.1f} GiB GPU memory free, at most {limit})")
    return batch
