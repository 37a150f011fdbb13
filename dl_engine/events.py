"""The event protocol of every engine run (export, training, AutoDL, inference): one JSON
object per line on a worker's stdout, or records handed to a callback in-process. The QGIS
side (processing_provider/engine_process.py), the workers and the test doubles all read the
names and exit codes below. Standard library only.

Every event is ``{"event": <type>, ...}``:

- ``progress``: ``percent`` (0-100 over the whole run), ``message`` (optional)
- ``log``: ``level`` ("info", "warning"), ``message``
- ``metric``: one finished epoch: ``epoch``, ``train_loss``, ``valid_loss``, the monitored
  metrics (``accuracy``, ``miou``, ``dice``, …), ``samples_per_s``, ``seconds``
- ``result``: the run's outputs: ``out_model_file``, ``out_folder``, ``metrics`` (dict)
- ``error``: ``parameter`` (a parameter name or ""), ``message``
- ``canceled``: ``message`` (says where the resumable checkpoint is)

Progress is always a percent, 0-100 over the whole run.

A worker's exit code says how it ended: ``EXIT_OK`` done, ``EXIT_BAD_INPUT`` an ``error``
event naming the parameter, ``EXIT_CANCELED`` canceled, ``EXIT_CRASH`` a fault (its traceback
on stderr and an ``error`` event).
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any, Callable, Optional, TextIO

PROGRESS = "progress"
LOG = "log"
METRIC = "metric"
RESULT = "result"
ERROR = "error"
CANCELED = "canceled"
EVENT_NAMES = (PROGRESS, LOG, METRIC, RESULT, ERROR, CANCELED)

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_BAD_INPUT = 2
EXIT_CANCELED = 130


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
                self._stream.write(json.dumps(record, default=plain) + "\n")
                self._stream.flush()

    def progress(self, percent: float, message: str = "") -> None:
        self.emit(PROGRESS, percent=round(min(100.0, max(0.0, float(percent))), 2), message=message)

    def log(self, message: str, level: str = "info") -> None:
        self.emit(LOG, level=level, message=message)

    def warning(self, message: str) -> None:
        self.log(message, "warning")

    def metric(self, **fields: Any) -> None:
        self.emit(METRIC, **fields)

    def result(self, **fields: Any) -> None:
        self.emit(RESULT, **fields)

    def error(self, parameter: str, message: str) -> None:
        self.emit(ERROR, parameter=parameter, message=message)

    def canceled(self, message: str) -> None:
        self.emit(CANCELED, message=message)


def plain(value: Any):
    """``json.dumps(default=plain)``: numpy scalars/arrays and paths as JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
