"""pip's output lines → (percent, message) for a progress bar.

pip says what it does one line at a time: ``Collecting torch==2.13.0``, ``Downloading
torch-….whl (915.3 MB)`` (with ``--progress-bar raw`` then ``Progress <bytes> of <total>``),
``Processing <file>.whl`` (from a folder of wheels), ``Installing collected packages: a, b, …``, ``Successfully installed …``. How many packages
it will collect is unknown in advance (dependencies), so collecting moves towards the end of
its span by halves; installing has no progress of its own and takes the last part.
"""

from __future__ import annotations

import re
from typing import Optional, Tuple

_COLLECTING = re.compile(r"^\s*Collecting\s+(\S+)")
_DOWNLOADING = re.compile(r"^\s*Downloading\s+(\S+?)(?:\s+\(([\d.]+\s*[kMG]?B)\))?\s*$")
_CACHED = re.compile(r"^\s*Using cached\s+(\S+)")
_PROCESSING = re.compile(r"^\s*Processing\s+(\S+\.(?:whl|tar\.gz|zip))")  # from a find-links folder or file index
_RAW = re.compile(r"^\s*Progress\s+(\d+)\s+of\s+(\d+)\s*$")
_INSTALLING = re.compile(r"^\s*Installing collected packages:\s*(.*)$")
_SUCCESS = re.compile(r"^\s*Successfully installed\s+(.*)$")
_SATISFIED = re.compile(r"^\s*Requirement already satisfied:\s*(\S+)")


def short_name(file_or_url: str) -> str:
    """``https://…/torch-2.13.0-cp311-….whl`` → ``torch-2.13.0``."""
    name = file_or_url.rstrip("/").rsplit("/", 1)[-1]
    parts = name.split("-")
    return "-".join(parts[:2]) if name.endswith(".whl") and len(parts) > 2 else name


class PipProgress:
    """Feed pip's lines; ``feed`` returns (percent, message) when there is news, within [start, end]."""

    def __init__(self, start: float, end: float, expected: int = 20):
        self.start, self.end = start, end
        self.expected = max(1, expected)  # packages pip is likely to collect, dependencies included
        self.collected = 0
        self.satisfied = 0
        self.download: Optional[Tuple[str, str]] = None
        self.percent = start
        self.is_raw_progress = False

    def _at(self, fraction: float) -> float:
        self.percent = max(self.percent, self.start + (self.end - self.start) * min(1.0, fraction))
        return self.percent

    def _collecting(self, extra: float = 0.0) -> float:
        # collecting and downloading take 85 % of the span; halves towards it as packages arrive
        done = self.collected - 1 + extra if self.collected else 0
        return self._at(0.85 * (1 - 0.5 ** (max(0.0, done) / (self.expected / 2))))

    def feed(self, line: str) -> Optional[Tuple[float, str]]:
        m = _RAW.match(line)
        if m:
            self.is_raw_progress = True
            done, total = int(m.group(1)), int(m.group(2))
            if not total or not self.download:
                return None
            name, size = self.download
            return self._collecting(done / total), f"Downloading {name} ({size}): {100 * done // total} %"
        m = _COLLECTING.match(line)
        if m:
            self.collected += 1
            self.download = None
            return self._collecting(), f"Collecting {m.group(1)}"
        m = _DOWNLOADING.match(line)
        if m:
            self.download = (short_name(m.group(1)), m.group(2) or "?")
            return self._collecting(), f"Downloading {self.download[0]}" + (f" ({m.group(2)})" if m.group(2) else "")
        m = _PROCESSING.match(line)
        if m:
            self.collected += 1
            self.download = None
            return self._collecting(), f"Collecting {short_name(m.group(1))}"
        m = _CACHED.match(line)
        if m:
            return self._collecting(), f"Using cached {short_name(m.group(1))}"
        m = _SATISFIED.match(line)
        if m:
            self.satisfied += 1
            return None
        m = _INSTALLING.match(line)
        if m:
            names = [n.strip() for n in m.group(1).split(",") if n.strip()]
            listed = ", ".join(names[:6]) + (", …" if len(names) > 6 else "")
            return self._at(0.87), f"Installing {len(names)} packages ({listed})"
        m = _SUCCESS.match(line)
        if m:
            return self._at(1.0), f"Installed {len(m.group(1).split())} packages"
        return None
