"""Reading overlaps compute: batches are read and assembled on worker threads (GDAL and
numpy release the GIL) a few batches ahead of the model, and handed over in order.

At most ``depth`` batches wait in memory, so memory does not grow with the raster.
"""

from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Generic, Iterable, Iterator, List, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class ThreadLocalResource(Generic[T]):
    """One ``make()`` per thread (e.g. a raster handle), all closed by ``close()``."""

    def __init__(self, make: Callable[[], T]):
        self._make = make
        self._local = threading.local()
        self._all: List[T] = []
        self._lock = threading.Lock()

    def get(self) -> T:
        value = getattr(self._local, "value", None)
        if value is None:
            value = self._make()
            self._local.value = value
            with self._lock:
                self._all.append(value)
        return value

    def close(self) -> None:
        with self._lock:
            items, self._all = self._all, []
        for item in items:
            item.close()


def prefetch(items: Iterable[T], load: Callable[[T], R], workers: int = 1, depth: int = 3) -> Iterator[R]:
    """``load(item)`` for every item, in order, on ``workers`` threads, at most ``depth``
    results ahead of the consumer. Leaving the loop early (cancel, error) stops the reading."""
    workers = max(1, int(workers))
    depth = max(depth, workers)
    it = iter(items)
    pending: "deque[Future]" = deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="infer-read")
    try:
        for item in it:
            pending.append(pool.submit(load, item))
            if len(pending) >= depth:
                break
        while pending:
            result = pending.popleft().result()
            nxt = next(it, _END)
            if nxt is not _END:
                pending.append(pool.submit(load, nxt))
            yield result
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True)


_END = object()
