"""The train/validation split of VALIDATION_PERCENTAGE.

Each sample gets a pseudo-random rank from a hash of the seed and its key (export folder
name + image path), and the lowest ranks are validation. So the split is the same on every
run and machine, whatever order the samples are listed in, and a sample keeps its side when
other samples are added. With a positive percentage and at least 2 samples there is at least
one validation sample and at least one training sample; 0 % gives no validation set (100 %
is refused: nothing would be left to train on).
"""

from __future__ import annotations

import hashlib
import math
from typing import List, Sequence, Tuple, TypeVar

from ..checks import validation_percentage

T = TypeVar("T")
DEFAULT_SEED = 42  # arcgis.learn's default seed


def _rank(seed: int, key: str) -> bytes:
    return hashlib.blake2b(f"{seed}\x00{key}".encode("utf-8"), digest_size=16).digest()


def validation_count(n: int, percentage: float) -> int:
    if n < 2 or percentage <= 0:
        return 0
    return min(n - 1, max(1, int(math.floor(n * percentage / 100.0 + 0.5))))


def split_samples(samples: Sequence[T], percentage: float = 10.0, seed: int = DEFAULT_SEED,
                  key=lambda s: s.key) -> Tuple[List[T], List[T]]:
    """(train, validation) lists, each in the order the samples were given."""
    p = validation_percentage(percentage)  # 0 <= p < 100, the rule of TrainConfig.check
    keys = [key(s) for s in samples]
    if len(set(keys)) != len(keys):
        raise ValueError("split_samples: sample keys must be unique")
    n_valid = validation_count(len(samples), p)
    order = sorted(range(len(samples)), key=lambda i: _rank(seed, keys[i]))
    valid = set(order[:n_valid])
    return ([s for i, s in enumerate(samples) if i not in valid], [s for i, s in enumerate(samples) if i in valid])
