"""torch DataLoaders over the numpy ``ChipDataset``.

The sampler yields ``(epoch, index)`` pairs: the dataset seeds each chip's augmentation by
(seed, epoch, index), so runs are reproducible and persistent DataLoader workers (which
hold their own copy of the dataset) still see the current epoch. In a distributed run each
process takes every world_size-th chip of the same shuffled order.
"""

from __future__ import annotations

import math
import os
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.dataset import ChipDataset


class EpochDataset(Dataset):
    def __init__(self, chips: ChipDataset):
        self.chips = chips

    def __len__(self) -> int:
        return len(self.chips)

    def __getitem__(self, key: Tuple[int, int]):
        epoch, index = key
        self.chips.epoch = epoch
        return self.chips[index]


class EpochSampler(Sampler):
    """Shuffled (training) or ordered (validation) chip order, sharded over processes."""

    def __init__(self, size: int, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1,
                 pad: bool = True):
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> List[int]:
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(self.size) if self.shuffle
                 else np.arange(self.size)).tolist()
        if self.world_size > 1:
            if self.pad:  # every process gets as many batches (DDP steps in lockstep)
                total = math.ceil(self.size / self.world_size) * self.world_size
                order += order[: total - len(order)]
            order = order[self.rank::self.world_size]
        return order

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        return iter([(self.epoch, i) for i in self._order()])

    def __len__(self) -> int:
        return len(self._order())


def default_workers(cuda: bool) -> int:
    """Loader processes: the GPU must never wait; on the CPU they compete with compute
    threads, and chip reading is cheap next to a training step (benchmarks/train_bench.py)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(8, max(2, cpus // 2)) if cuda else (1 if cpus >= 2 else 0)


def make_loader(chips: ChipDataset, batch_size: int, collate: Callable, shuffle: bool, seed: int,
                workers: int, pin_memory: bool, rank: int = 0, world_size: int = 1,
                drop_last: bool = False) -> Tuple[DataLoader, EpochSampler]:
    sampler = EpochSampler(len(chips), shuffle, seed, rank, world_size, pad=shuffle)
    loader = DataLoader(EpochDataset(chips), batch_size=batch_size, sampler=sampler, collate_fn=collate,
                        num_workers=workers, pin_memory=pin_memory, drop_last=drop_last,
                        persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None)
    return loader, sampler


def to_device(batch, device: torch.device, channels_last: bool = False, key: str = ""):
    """Tensors of a batch (also inside lists and dicts: detection targets) onto the device."""
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        if key == "image" and channels_last and batch.dim() == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, dict):
        return {k: to_device(v, device, channels_last, k) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device, channels_last, key) for v in batch)
    return batch
