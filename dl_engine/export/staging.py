"""The hidden folder an export writes into before it moves into place: ``.<name>.partial-<hex>``
beside OUT_FOLDER (inside it when appending), with a lock file ``<staging>.lock`` beside it that
the running export holds. A killed run cannot remove its staging; the next run into the same
destination finds it unlocked and removes it (the operating system drops a dead process's lock,
so a run still going on is never touched). Standard library only."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from typing import Callable, Dict, List, Optional

LOCK_SUFFIX = ".lock"
_HELD: Dict[str, object] = {}  # staging path -> its open lock file, while this process runs it


def staging_pattern(out_folder: str) -> "re.Pattern":
    """Names of the staging folders (and their lock files) of exports into ``out_folder``."""
    name = os.path.basename(os.path.abspath(out_folder))
    return re.compile(r"^\." + re.escape(name) + r"\.partial-[0-9a-f]{8}(?:" + re.escape(LOCK_SUFFIX) + ")?$")


def is_staging(entry: str) -> bool:
    """Whether a folder entry's name is any export's staging folder or its lock (never output)."""
    return bool(re.match(r"^\..+\.partial-[0-9a-f]{8}(?:" + re.escape(LOCK_SUFFIX) + ")?$", entry))


def _try_lock(handle) -> bool:
    try:
        if os.name == "nt":
            import msvcrt
            handle.seek(0)  # the first byte is the lock, whatever the mode opened the file at
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def claim(parent: str, out_folder: str) -> str:
    """A new staging path in ``parent`` for ``out_folder``, its lock held by this process (the
    folder itself is made by the caller); ``release`` ends it."""
    path = os.path.join(parent, f".{os.path.basename(os.path.abspath(out_folder))}.partial-{uuid.uuid4().hex[:8]}")
    handle = open(path + LOCK_SUFFIX, "w", encoding="utf-8")
    _try_lock(handle)
    handle.write(str(os.getpid()))
    handle.flush()
    _HELD[path] = handle
    return path


def release(path: str) -> None:
    """Drop the lock of a staging folder this process claimed and remove the lock file."""
    handle = _HELD.pop(path, None)
    if handle is not None:
        handle.close()
    try:
        os.remove(path + LOCK_SUFFIX)
    except OSError:
        pass


def _abandoned(path: str) -> bool:
    """True when no running process holds the lock of this staging folder."""
    if path in _HELD:
        return False
    lock = path + LOCK_SUFFIX
    if not os.path.exists(lock):
        return True  # a lock file goes before its folder is made and after it is gone
    try:
        handle = open(lock, "a", encoding="utf-8")
    except OSError:
        return False
    try:
        return _try_lock(handle)
    finally:
        handle.close()  # closing drops our own lock again


def remove_abandoned(folder: str, out_folder: str, log: Optional[Callable[[str], None]] = None) -> List[str]:
    """Remove the staging folders (and lock files) of ``out_folder`` in ``folder`` that runs which
    were killed left behind; returns their paths."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return []
    pattern = staging_pattern(out_folder)
    removed = []
    for entry in sorted(entries):
        if not pattern.match(entry) or entry.endswith(LOCK_SUFFIX):
            continue
        path = os.path.join(folder, entry)
        if not os.path.isdir(path) or not _abandoned(path):
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            release(path)
            removed.append(path)
            if log is not None:
                log(f"removed staging left by an interrupted run: {path}")
    for entry in entries:  # lock files whose folder is gone (killed between the two)
        path = os.path.join(folder, entry)
        if pattern.match(entry) and entry.endswith(LOCK_SUFFIX) and not os.path.exists(path[:-len(LOCK_SUFFIX)]):
            if _abandoned(path[:-len(LOCK_SUFFIX)]):
                try:
                    os.remove(path)
                except OSError:
                    pass
    return removed
