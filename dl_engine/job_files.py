"""Jobs handed from QGIS's process to a worker (the export's and the accuracy tools'): a JSON file
with the job's version, and its geometries in files beside it (a header, the record count, then
per feature an integer value and its WKB). No pickle: the worker only reads JSON, numbers and
bytes. Standard library only: QGIS's process writes them."""

from __future__ import annotations

import json
import os
import struct
from typing import Any, Dict, List, Optional, Sequence, Tuple

JOB_VERSION = 1

_MAGIC = b"DLTWKB1\n"
_COUNT = struct.Struct("<Q")
_RECORD = struct.Struct("<qI")  # value, WKB length


def write_geometries(path: str, wkb: Sequence[bytes], values: Optional[Sequence[int]] = None) -> None:
    """WKB records with their integer values (0 when there are none) into ``path``."""
    with open(path, "wb") as f:
        f.write(_MAGIC)
        f.write(_COUNT.pack(len(wkb)))
        for i, data in enumerate(wkb):
            f.write(_RECORD.pack(int(values[i]) if values is not None else 0, len(data)))
            f.write(data)


def read_geometries(path: str) -> Tuple[List[bytes], List[int]]:
    """(WKB list, values) written by ``write_geometries``; ValueError when damaged."""
    with open(path, "rb") as f:
        if f.read(len(_MAGIC)) != _MAGIC:
            raise ValueError(f"{path} is not a geometry file of this version")
        (count,) = _COUNT.unpack(f.read(_COUNT.size))
        wkb: List[bytes] = []
        values: List[int] = []
        for _ in range(count):
            head = f.read(_RECORD.size)
            if len(head) != _RECORD.size:
                raise ValueError(f"{path} ends after {len(wkb)} of {count} geometries")
            value, size = _RECORD.unpack(head)
            data = f.read(size)
            if len(data) != size:
                raise ValueError(f"{path} ends inside geometry {len(wkb) + 1} of {count}")
            wkb.append(data)
            values.append(value)
    return wkb, values


def write_job_file(folder: str, name: str, job: Dict[str, Any]) -> str:
    """``job`` (with this version) as ``folder``/``name``; returns its path."""
    path = os.path.join(folder, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"version": JOB_VERSION, **job}, f)
    return path


def read_job_file(path: str) -> Dict[str, Any]:
    """A job written by ``write_job_file``; ValueError for another version."""
    with open(path, encoding="utf-8") as f:
        job = json.load(f)
    if job.get("version") != JOB_VERSION:
        raise ValueError(f"{path}: job version {job.get('version')!r}, this engine reads {JOB_VERSION}")
    return job
