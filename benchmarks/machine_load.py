"""How busy the machine is, for benchmarks that run their measurements in child processes:
wait for other jobs to leave the CPUs about idle, and say afterwards how many cores other jobs
used meanwhile (above ~0.3 a figure was slowed down by them)."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from typing import List, Tuple


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy (from /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = v[0] + v[1] + v[2] + sum(v[5:8])  # user nice system irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def wait_idle(limit_s: float) -> None:
    """Wait (up to ``limit_s``) until other jobs leave the CPUs about idle."""
    t_end = time.monotonic() + limit_s
    while time.monotonic() < t_end:
        b0 = busy_cpu_seconds()
        time.sleep(1.0)
        if busy_cpu_seconds() - b0 < 0.3:
            return


def run_measured(cmd: List[str], **kw) -> Tuple[subprocess.CompletedProcess, float, float]:
    """``subprocess.run(cmd, **kw)``; with its wall seconds and the cores other jobs used meanwhile."""
    b0, c0, t0 = busy_cpu_seconds(), children_cpu_seconds(), time.monotonic()
    p = subprocess.run(cmd, **kw)
    wall = time.monotonic() - t0
    others = max(0.0, ((busy_cpu_seconds() - b0) - (children_cpu_seconds() - c0)) / wall)
    return p, wall, others
