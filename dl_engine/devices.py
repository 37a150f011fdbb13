"""DEVICE: the names a user may give and what each means. Standard library only, so the
QGIS side checks DEVICE before a worker starts and the engine (``dl_engine.runtime``) reads
it with the same rule.

- ``auto``: the first CUDA GPU if torch sees one, else Apple's GPU (mps), else the CPU;
- ``cpu``;
- ``cuda`` (GPU 0, or the local rank's in a distributed run) or ``cuda:N``;
- ``mps``: Apple silicon's GPU.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from .errors import InputError

PARAMETER = "DEVICE"
DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:N", "mps")
ACCEPTED = "auto, cpu, cuda, cuda:N (N = the GPU's number) or mps"
_PATTERN = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")


@dataclass(frozen=True)
class DeviceRequest:
    """A parsed DEVICE: ``kind`` auto/cpu/cuda/mps, ``index`` for cuda:N."""

    kind: str
    index: Optional[int] = None

    @property
    def text(self) -> str:
        return f"{self.kind}:{self.index}" if self.index is not None else self.kind


def parse_device(text: Optional[str], parameter: str = PARAMETER) -> DeviceRequest:
    """The DEVICE a user typed, checked; empty means auto. Raises InputError."""
    cleaned = (text or "auto").strip().lower() or "auto"
    m = _PATTERN.match(cleaned)
    if not m or (m.group(2) is not None and m.group(1) != "cuda"):
        raise InputError(parameter, f"{text!r} is not a device; accepted: {ACCEPTED}")
    return DeviceRequest(m.group(1), int(m.group(2)) if m.group(2) is not None else None)


def check_device(text: Optional[str], parameter: str = PARAMETER) -> str:
    """The normalised DEVICE text ("auto", "cuda:1", …); raises InputError."""
    return parse_device(text, parameter).text
