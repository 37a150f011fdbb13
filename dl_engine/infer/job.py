"""What every inference tool shares while it runs: the checked inputs, the model on its
device, progress (throttled) and cancel (checked per batch)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, Dict

import numpy as np

from ..errors import Canceled
from ..events import Events
from .arguments import ToolArguments
from .config import InferConfig
from .grid import InferGrid
from .model import LoadedModel
from .predictor import Predictor
from ..raster_info import RasterInfo

# Types torch takes as they are; anything else travels as float32.
TORCH_TYPES = ("uint8", "int8", "int16", "int32", "float32")


@dataclass
class Job:
    config: InferConfig
    model: LoadedModel
    predictor: Predictor
    args: ToolArguments
    raster: RasterInfo
    grid: InferGrid
    events: Events
    cancel: Callable[[], bool]
    workers: int  # reader threads
    depth: int  # batches read ahead
    stats: Dict[str, object] = field(default_factory=dict)

    @property
    def raw_dtype(self) -> np.dtype:
        return np.dtype(self.raster.dtype if self.raster.dtype in TORCH_TYPES else "float32")

    def check_cancel(self) -> None:
        if self.cancel():
            raise Canceled("no output was written")


class Progress:
    """Percent of work done, at most every ``interval`` seconds (a GPU runs hundreds of
    batches a second; the QGIS side needs a few events)."""

    def __init__(self, events: Events, total: int, message: str, start: float = 0.0, end: float = 100.0,
                 interval: float = 0.25):
        self.events, self.total, self.message = events, max(1, int(total)), message
        self.start, self.end, self.interval = start, end, interval
        self.done = 0
        self._last = 0.0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.interval or self.done >= self.total:
            self._last = now
            share = min(1.0, self.done / self.total)
            self.events.progress(self.start + (self.end - self.start) * share,
                                 f"{self.message} {min(self.done, self.total)}/{self.total}")


class Clock:
    """Where a run's time goes: in the model, and waiting for the readers (should be ~0)."""

    def __init__(self):
        self.model_s = 0.0
        self.wait_s = 0.0

    @contextlib.contextmanager
    def model(self):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.model_s += time.perf_counter() - t

    def waiting(self, iterable):
        it = iter(iterable)
        while True:
            t = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                self.wait_s += time.perf_counter() - t
            yield item

    def figures(self) -> Dict[str, float]:
        return {"model_seconds": round(self.model_s, 3), "wait_seconds": round(self.wait_s, 3)}
