"""Does an allocation fit in memory? One rule for every size a user gives (tile and chip
sizes, ImageHeight/ImageWidth of a model, batch sizes, ARGUMENTS' tile_size), checked before
anything is allocated, so a huge value is an error naming its parameter instead of a
MemoryError traceback or a machine that swaps until the kernel kills the run.

``check_fits(parameter, value, bytes_for)``: ``bytes_for(value)`` is what the value would
allocate (it grows with the value); the budget is ``SHARE`` of the memory available now (and of
the GPU's, when a caller that knows it passes ``device_bytes``). The error says how much the
value needs, how much there is, and the largest value that fits.

Standard library only: QGIS's process runs the configurations' checks with it.
Available memory: ``/proc/meminfo`` (Linux), ``sysctl`` (macOS), ``GlobalMemoryStatusEx``
(Windows); when none answers, ``FALLBACK_BYTES``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Callable, Optional

from .errors import InputError

SHARE = 0.5  # of the available memory one run's buffers may take: the rest is the OS's, QGIS's, GDAL's cache
FALLBACK_BYTES = 4 << 30  # when the platform cannot say
ENV_OVERRIDE = "DLT_MEMORY_BYTES"  # tests and constrained hosts (containers whose limit /proc does not show)


def available_bytes() -> int:
    """Physical memory available to a new allocation now, in bytes."""
    override = os.environ.get(ENV_OVERRIDE, "").strip()
    if override.isdigit():
        return int(override)
    for probe in (_linux, _macos, _windows):
        try:
            found = probe()
        except Exception:  # noqa: BLE001 - a probe that cannot answer on this platform
            found = None
        if found:
            return min(found, _cgroup_limit() or found)
    return FALLBACK_BYTES


def budget_bytes(device_bytes: Optional[int] = None) -> int:
    """What one run may allocate: SHARE of the available memory, and of the GPU's when given."""
    budget = int(available_bytes() * SHARE)
    if device_bytes:
        budget = min(budget, int(device_bytes * SHARE))
    return budget


def check_fits(parameter: str, value: int, bytes_for: Callable[[int], float], what: str = "",
               device_bytes: Optional[int] = None, minimum: int = 1, shown: Optional[str] = None) -> None:
    """Raise InputError(parameter) when ``bytes_for(value)`` exceeds the budget.

    ``what`` says what is allocated ("one 3-band chip per worker"); ``shown`` is how the value
    is named in the message (default: the value); ``minimum`` is the smallest value the
    parameter accepts (no smaller value is proposed)."""
    host = available_bytes()
    pool, where = (device_bytes, "GPU memory") if device_bytes and device_bytes < host else (host, "memory")
    budget = int(pool * SHARE)
    needed = bytes_for(value)
    if needed <= budget:
        return
    largest = _largest_fitting(bytes_for, budget, minimum, value)
    tail = (f"; the largest value that fits is {largest}" if largest is not None
            else f"; even {minimum} does not fit: free memory or use a machine with more")
    label = shown or f"{value}"
    raise InputError(parameter, f"{label} would need {human(needed)}{f' ({what})' if what else ''}, more than "
                                f"the {human(budget)} this run may use (half of the {human(pool)} of {where} "
                                f"available){tail}")


INPUT_COPIES = 2  # a batch is held as loaded and as normalised float32


def batch_bytes(batch: int, side: int, bands: int = 3) -> int:
    """The least a batch of square chips takes as a network's float32 input, held twice (the
    network's activations come on top; the automatic batch size measures those on the device)."""
    return int(batch) * int(side) * int(side) * int(bands) * 4 * INPUT_COPIES


def human(n: float) -> str:
    """Bytes as 1.5 GiB / 37.3 GiB / 3.6 TiB."""
    try:
        n = float(n)
    except OverflowError:  # a size from a hostile file: more than a float holds
        return "more than 10^308 bytes"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def _largest_fitting(bytes_for: Callable[[int], float], budget: float, low: int, high: int) -> Optional[int]:
    """The largest v in [low, high) with bytes_for(v) <= budget (bytes_for grows with v)."""
    if bytes_for(low) > budget:
        return None
    lo, hi = low, max(high, low + 1)  # bytes_for(lo) fits, bytes_for(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if bytes_for(mid) <= budget:
            lo = mid
        else:
            hi = mid
    return lo


# ---- what the platform says ------------------------------------------------------------------------

def _linux() -> Optional[int]:
    if not sys.platform.startswith("linux"):
        return None
    with open("/proc/meminfo", encoding="ascii") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    for key in ("MemAvailable", "MemFree"):
        if key in fields:
            return int(fields[key].split()[0]) * 1024
    return None


def _cgroup_limit() -> Optional[int]:
    """A container's memory limit (cgroup v2, then v1) minus what it uses; None without one."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file, encoding="ascii") as f:
                limit = f.read().strip()
            with open(usage_file, encoding="ascii") as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < (1 << 60):
            return max(int(limit) - usage, 0) or None
    return None


def _macos() -> Optional[int]:
    if sys.platform != "darwin":
        return None
    total = int(subprocess.run(["sysctl", "-n", "hw.memsize"], capture_output=True, text=True,
                               timeout=5).stdout.strip())
    try:  # free + inactive pages are what a new allocation can take without swapping
        out = subprocess.run(["vm_stat"], capture_output=True, text=True, timeout=5).stdout
        page = int(out.split("page size of", 1)[1].split()[0])
        pages = {k.strip(): int(v.strip().rstrip(".")) for k, v in
                 (line.split(":", 1) for line in out.splitlines()[1:] if ":" in line) if v.strip().rstrip(".").isdigit()}
        free = (pages.get("Pages free", 0) + pages.get("Pages inactive", 0) + pages.get("Pages speculative", 0)) * page
        return free if free > 0 else total
    except Exception:  # noqa: BLE001 - vm_stat missing: the total is the best guess left
        return total


def _windows() -> Optional[int]:
    if os.name != "nt":
        return None
    import ctypes

    class MemoryStatus(ctypes.Structure):
        _fields_ = [("dwLength", ctypes.c_ulong), ("dwMemoryLoad", ctypes.c_ulong),
                    ("ullTotalPhys", ctypes.c_ulonglong), ("ullAvailPhys", ctypes.c_ulonglong),
                    ("ullTotalPageFile", ctypes.c_ulonglong), ("ullAvailPageFile", ctypes.c_ulonglong),
                    ("ullTotalVirtual", ctypes.c_ulonglong), ("ullAvailVirtual", ctypes.c_ulonglong),
                    ("ullAvailExtendedVirtual", ctypes.c_ulonglong)]

    status = MemoryStatus()
    status.dwLength = ctypes.sizeof(MemoryStatus)
    if not ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
        return None
    return int(status.ullAvailPhys)
