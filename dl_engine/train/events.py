"""Events a training or inference run reports: one JSON object per line on the worker's
stdout, read by the QGIS side (processing_provider/worker.py) and by any other caller.

Every event is ``{"event": <type>, ...}``:

- ``progress``: ``percent`` (0-100 over the whole run), ``message`` (optional)
- ``log``: ``level`` ("info", "warning"), ``message``
- ``metric``: one finished epoch: ``epoch``, ``train_loss``, ``valid_loss``, the monitored
  metrics (``accuracy``, ``miou``, ``dice``, …), ``samples_per_s``, ``seconds``
- ``result``: the run's outputs: ``out_model_file``, ``out_folder``, ``metrics`` (dict)
- ``error``: ``parameter`` (a parameter name or ""), ``message``
- ``canceled``: ``message`` (says where the resumable checkpoint is)
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, Callable, Optional, TextIO


class Events:
    """Sends events to a callback (in-process use) or as JSON lines to a stream (worker).

    In a distributed run only rank 0 reports; the others are silent.
    """

    def __init__(self, sink: Optional[Callable[[dict], None]] = None, stream: Optional[TextIO] = None,
                 enabled: bool = True):
        self._sink = sink
        self._stream = stream
        self.enabled = enabled
        self._lock = threading.Lock()

    @classmethod
    def json_lines(cls, stream: TextIO = None, enabled: bool = True) -> "Events":
        return cls(stream=stream or sys.stdout, enabled=enabled)

    def emit(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        record = {"event": event, **fields}
        if self._sink is not None:
            self._sink(record)
        if self._stream is not None:
            with self._lock:
                self._stream.write(json.dumps(record, default=_plain) + "\n")
                self._stream.flush()

    def progress(self, percent: float, message: str = "") -> None:
        self.emit("progress", percent=round(float(percent), 2), message=message)

    def log(self, message: str, level: str = "info") -> None:
        self.emit("log", level=level, message=message)

    def warning(self, message: str) -> None:
        self.log(message, "warning")

    def metric(self, **fields: Any) -> None:
        self.emit("metric", **fields)


def _plain(value: Any):
    """numpy scalars/arrays and paths in events."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
