"""Processes as /proc shows them (Linux): whether one still runs and which run below it, for the
tests that kill a host (qgis_process, a worker) and check that nothing of its run survives."""

import os


def state(pid: int) -> str:
    """The process's state letter (R, S, Z, …), or "gone"."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def running(pid: int) -> bool:
    return state(pid) not in ("gone", "Z", "X")


def descendants(pid: int) -> set:
    """Every process below ``pid`` now."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                found.add(child)
                todo.append(child)
    return found
