"""Where a run writes: one rule for every tool's output folder or file, and the operating
system's write errors as errors that name the parameter whose destination failed.

- ``writable_folder(parameter, path)``: before a run starts, the folder (or the nearest
  existing folder above it, when it is created by the run) is a folder we may write into.
- ``os_error(parameter, exc, destination, needed)``: an OSError from writing (disk full,
  read-only file system, permission denied, path too long) as ``InputError(parameter, …)``
  that says what failed and, when known, how much space was needed.
- ``named_os_errors(parameter, destination)``: the same for a block of writes.

Standard library only: QGIS's process checks destinations with it before a worker starts.
"""

from __future__ import annotations

import errno
import os
import shutil
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Union

from .errors import InputError

_REASONS = {
    errno.ENOSPC: "the disk is full",
    getattr(errno, "EDQUOT", -1): "the disk quota is exhausted",
    errno.EROFS: "it is on a read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENAMETOOLONG: "a path is too long for the file system",
}
_ADVICE = {
    errno.ENOSPC: "free some space or choose a folder on another disk",
    getattr(errno, "EDQUOT", -1): "free some space or choose a folder on another disk",
    errno.EROFS: "choose a folder on a writable disk",
    errno.EACCES: "choose a folder you may write to",
    errno.EPERM: "choose a folder you may write to",
    errno.ENAMETOOLONG: "choose a folder with a shorter path",
}


def writable_folder(parameter: str, path: str, what: str = "folder") -> str:
    """``path`` as an absolute folder that exists and is writable, or that can be created in
    the nearest existing folder above it; else InputError naming ``parameter``."""
    folder = os.path.abspath(os.path.expanduser(str(path).strip()))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise InputError(parameter, f"{folder} is a file; give a {what} (it is created when missing)")
    parent = folder
    while not os.path.exists(parent):
        up = os.path.dirname(parent)
        if up == parent:
            break
        parent = up
    if not os.path.isdir(parent):
        raise InputError(parameter, f"{parent} is a file, so {folder} cannot be created; give another {what}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(parameter, f"{parent} is not writable ({_why_not_writable(parent)}); choose a {what} "
                                    f"you may write to")
    _check_path_length(parameter, folder)
    return folder


def writable_file(parameter: str, path: str, extension: str = "") -> str:
    """An output file's path: not a folder, in a folder ``writable_folder`` accepts."""
    target = os.path.abspath(os.path.expanduser(str(path).strip()))
    if os.path.isdir(target):
        raise InputError(parameter, f"{target} is a folder; give a file name{f' ending in {extension}' if extension else ''}")
    writable_folder(parameter, os.path.dirname(target))
    return target


def os_error(parameter: str, exc: OSError, destination: str, needed: Optional[int] = None) -> InputError:
    """``exc`` (raised while writing under ``destination``) as an InputError naming ``parameter``."""
    code = exc.errno
    reason = _REASONS.get(code) or (exc.strerror or str(exc))
    advice = _ADVICE.get(code, "check the folder and try again")
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        free = _free(destination)
        if needed:
            reason += f" ({_human(needed)} needed{f', {_human(free)} free' if free is not None else ''})"
        elif free is not None:
            reason += f" ({_human(free)} free)"
    name = f" ({exc.filename})" if getattr(exc, "filename", None) and str(exc.filename) != str(destination) else ""
    return InputError(parameter, f"cannot write to {destination}{name}: {reason}; {advice}")


@contextmanager
def named_os_errors(parameter: str, destination: str,
                    needed: Union[int, Callable[[], Optional[int]], None] = None) -> Iterator[None]:
    """Writes in the block that fail (``as_os_error``) under ``destination`` raise ``os_error``
    instead; ``needed`` (bytes, or a function giving them) is said for a full disk. A failure
    elsewhere (reading an input the user may not read) stays what it was."""
    try:
        yield
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a worker's OSError may come back as another type with its text
        failure = as_os_error(exc)
        if failure is None or not _concerns(exc, failure, destination):
            raise
        if callable(needed):
            try:
                needed = needed()
            except Exception:  # noqa: BLE001 - the size is a courtesy
                needed = None
        raise os_error(parameter, failure, destination, needed) from None


def _concerns(exc: BaseException, failure: OSError, destination: str) -> bool:
    """Whether the failure is the destination's: a full or read-only disk only happens to writes;
    other errors count when they name a path under the destination."""
    if failure.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1), errno.EROFS):
        return True
    root = os.path.abspath(destination)
    names = [str(n) for n in (getattr(exc, "filename", None), getattr(exc, "filename2", None)) if n]
    return any(os.path.abspath(n) == root or os.path.abspath(n).startswith(root.rstrip(os.sep) + os.sep)
               for n in names) or root in str(exc)


def is_write_failure(exc: BaseException) -> bool:
    """An OSError that ``os_error`` names (disk full, read-only, permission, path too long)."""
    return isinstance(exc, OSError) and exc.errno in _REASONS


def as_os_error(exc: BaseException) -> Optional[OSError]:
    """``exc`` when it is a write failure ``os_error`` names; GDAL's own errors (rasterio raises
    them with the system's message and no errno) are recognised by that message."""
    if is_write_failure(exc):
        return exc  # type: ignore[return-value]
    text = str(exc)
    for code in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.ENAMETOOLONG):
        if os.strerror(code) in text:
            return OSError(code, os.strerror(code))
    return None


def _free(path: str) -> Optional[int]:
    while path and not os.path.exists(path):
        up = os.path.dirname(path)
        if up == path:
            break
        path = up
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def _why_not_writable(folder: str) -> str:
    try:
        if os.statvfs(folder).f_flag & getattr(os, "ST_RDONLY", 1):
            return "a read-only file system"
    except (OSError, AttributeError):  # no statvfs on Windows
        pass
    return "permission denied"


def _check_path_length(parameter: str, folder: str) -> None:
    """A path the file system cannot hold (the chips' names add ~40 characters)."""
    try:
        limit = os.pathconf(_existing(folder), "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):  # Windows: 260 unless long paths are enabled
        limit = 260 if os.name == "nt" else 4096
    if len(folder) + 40 > limit:
        raise InputError(parameter, f"{folder} is {len(folder)} characters long; with the files written into it, "
                                    f"paths would exceed the {limit} the file system allows: choose a folder with "
                                    f"a shorter path")
    try:
        name_max = os.pathconf(_existing(folder), "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        name_max = 255
    long = [p for p in folder.split(os.sep) if len(p.encode("utf-8", "surrogateescape")) > name_max]
    if long:
        raise InputError(parameter, f"the folder name {long[0][:40]!r}… is longer than the {name_max} bytes the file "
                                    f"system allows: choose a shorter name")


def _existing(path: str) -> str:
    while path and not os.path.exists(path):
        up = os.path.dirname(path)
        if up == path:
            break
        path = up
    return path


def _human(n: float) -> str:
    from .memory_budget import human

    return human(n)
