"""Where chips are cut: threads of this process, or worker processes.

rasterio keeps the GIL while GDAL compresses a chip, so threads cannot use a
second core for writing; large exports therefore run in worker processes.
They are *spawned* with a Python interpreter (never forked: inside QGIS
forking the application is unsafe, and spawning sys.executable would start
QGIS again). Small exports stay in threads: a process costs ~1 s to start.
"""

from __future__ import annotations

import importlib.machinery
import multiprocessing
import os
import sys
import threading
import warnings
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional, Tuple

import rasterio
import shapely
from rasterio.errors import NotGeoreferencedWarning

from .chips import ChipCutter
from ..host import Host, watch
from ..interpreter import installation_python
from .stats import ExportTotals

PROCESS_MIN_CHIPS = 256  # below this many chip positions, threads start faster than processes
PROCESS_GDAL_CACHE_BYTES = 128 * 1024 * 1024  # per worker process


def worker_python() -> Optional[str]:
    """The interpreter to spawn export workers with (see dl_engine.interpreter)."""
    return installation_python()


# ---- one chip cutter per process ---------------------------------------------------------------

_process_cutter: Optional[ChipCutter] = None
_process_stop = None


def _init_process(plan, stop, owner: int) -> None:
    global _process_cutter, _process_stop
    # A pool process ends with the process that owns the pool (killed, or ended by its own host
    # watch): it never outlives it to write into an abandoned staging folder.
    watch(Host(owner), lambda: os._exit(1))
    if plan.mask is not None:
        shapely.prepare(plan.mask)  # preparation does not survive pickling
    # For the life of the pool process, which is ours alone: GDAL's cache, and the warning
    # run_export silences in its own process (raster_info.quiet_georeferencing).
    rasterio.Env(GDAL_CACHEMAX=PROCESS_GDAL_CACHE_BYTES).__enter__()
    warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)
    _process_cutter = ChipCutter(plan)
    _process_stop = stop


def _ping() -> bool:
    return _process_cutter is not None


def _process_task(item_index: int, frames: List) -> Tuple[int, ExportTotals]:
    return len(frames), _process_cutter.run(item_index, frames, _process_stop)


@contextmanager
def _workers_skip_main_module() -> Iterator[None]:
    """Spawned workers re-import the parent's main script unless its spec is named
    "__main__"; our workers need only dl_engine, and a user's script without an
    ``if __name__ == "__main__":`` guard would otherwise run again in each worker."""
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    main.__spec__ = importlib.machinery.ModuleSpec("__main__", None)
    try:
        yield
    finally:
        main.__spec__ = None


# ---- the pool the chip loop uses ---------------------------------------------------------------

def _started(executor: ProcessPoolExecutor, log) -> bool:
    """Whether worker processes start in this environment; if not, threads do the work."""
    try:
        return executor.submit(_ping).result(timeout=120)
    except Exception as exc:  # BrokenProcessPool, a timeout, an import error in the worker
        executor.shutdown(wait=True, cancel_futures=True)
        log(f"Worker processes could not start ({type(exc).__name__}); cutting chips in threads instead")
        return False


@contextmanager
def chip_pool(plan, workers: int, chips: int, log: Callable[[str], None]) -> Iterator[Tuple[Executor, Callable, object]]:
    """(executor, task function, stop event) for cutting ``chips`` chip positions."""
    python = worker_python() if workers > 1 and chips >= PROCESS_MIN_CHIPS else None
    if python:
        ctx = multiprocessing.get_context("spawn")
        ctx.set_executable(python)
        stop = ctx.Event()
        with _workers_skip_main_module():
            executor = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_process,
                                           initargs=(plan, stop, os.getpid()))
            started = _started(executor, log)
            if started:
                log(f"Cutting chips in {workers} worker processes ({python})")
                try:
                    yield executor, _process_task, stop
                finally:
                    stop.set()
                    # Wait for running tasks (they stop at the next chip) so nothing writes after we return.
                    executor.shutdown(wait=True, cancel_futures=True)
                return

    log(f"Cutting chips in {workers} thread(s)")
    stop = threading.Event()
    local = threading.local()
    opened: List[ChipCutter] = []
    lock = threading.Lock()

    def task(item_index: int, frames: List) -> Tuple[int, ExportTotals]:
        cutter = getattr(local, "cutter", None)
        if cutter is None:
            cutter = local.cutter = ChipCutter(plan)
            with lock:
                opened.append(cutter)
        return len(frames), cutter.run(item_index, frames, stop)

    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="export")
    try:
        yield executor, task, stop
    finally:
        stop.set()
        executor.shutdown(wait=True, cancel_futures=True)
        for cutter in opened:
            cutter.close()
