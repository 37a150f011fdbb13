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

A training's history outlives the dialog that showed it: a worker's events are also written to
files once its run has checked its input (``Events.record_to``, called by the train and AutoDL run
code): every event as a JSON line (``training_events.jsonl`` in OUT_FOLDER; ``<stem>_events.jsonl``
beside AutoDL's OUT_MODEL) and a line a person reads (``training_log.txt``; ``<stem>_log.txt``).
The plugin's jobs dock reads these files for runs it did not see.

A worker's exit code says how it ended: ``EXIT_OK`` done, ``EXIT_BAD_INPUT`` an ``error``
event naming the parameter, ``EXIT_CANCELED`` canceled, ``EXIT_CRASH`` a fault (its traceback
on stderr and an ``error`` event).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from typing import Any, Callable, List, Optional, TextIO, Tuple

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

TRAINING_EVENTS = "training_events.jsonl"
TRAINING_LOG = "training_log.txt"
EARLY_EVENTS = 1000  # events kept from before ``record_to`` (the checks' warnings), written when it is called

class Events:
    """Sends events to a callback (in-process use) or as JSON lines to a stream (worker).

    In a distributed run only rank 0 reports; the others are silent. ``recording``: ``record_to``
    writes the run's files (a worker's events do; in-process callers, an AutoDL trial among them,
    leave their folders as they are).
    """

    def __init__(self, sink: Optional[Callable[[dict], None]] = None, stream: Optional[TextIO] = None,
                 enabled: bool = True, recording: bool = False):
        self._sink = sink
        self._stream = stream
        self.enabled = enabled
        self._lock = threading.Lock()
        self._early: Optional[List[dict]] = [] if recording else None
        self._files: Optional[EventFiles] = None

    @classmethod
    def json_lines(cls, stream: TextIO = None, enabled: bool = True) -> "Events":
        return cls(stream=stream or sys.stdout, enabled=enabled, recording=True)

    def record_to(self, events_path: str, log_path: str, append: bool = False, create: bool = True) -> None:
        """From now on also write every event to ``events_path`` (JSON lines) and ``log_path``
        (text), the events since the start first. ``append``: a resumed run goes on with its
        history; otherwise the files start anew. ``create=False``: kept in memory until their
        folder exists (made by the run itself). Nothing happens unless this object records."""
        if not self.enabled or self._early is None:
            return
        with self._lock:
            self._files = EventFiles(events_path, log_path, append, create)
            for record in self._early:
                self._files.write(record)
            self._early = []

    def discard_records(self) -> None:
        """The run leaves nothing behind (AutoDL without a model): its files removed, no more written."""
        with self._lock:
            if self._files is not None:
                self._files.remove()
            self._files, self._early = None, None

    def emit(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        record = {"event": event, **fields}
        if self._sink is not None:
            self._sink(record)
        if self._stream is not None or self._early is not None:
            with self._lock:
                if self._stream is not None:
                    self._stream.write(json.dumps(record, default=plain) + "\n")
                    self._stream.flush()
                if self._files is not None:
                    self._files.write(record)
                elif self._early is not None and len(self._early) < EARLY_EVENTS:
                    self._early.append(record)

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


def training_files(out_folder: str) -> Tuple[str, str]:
    """A training's (events, log) files in its OUT_FOLDER."""
    return os.path.join(out_folder, TRAINING_EVENTS), os.path.join(out_folder, TRAINING_LOG)


def autodl_files(out_model: str) -> Tuple[str, str]:
    """AutoDL's (events, log) files beside OUT_MODEL, named like its leaderboard (``<stem>_…``)."""
    stem = os.path.splitext(out_model)[0]
    return stem + "_events.jsonl", stem + "_log.txt"


class EventFiles:
    """A run's history on disk. Each write opens, appends and closes, so a reader (the jobs dock)
    sees every line at once and nothing is left open when a worker is killed. Progress is thinned
    to one record per whole percent or new phase (a step's progress would fill the file), and the
    log gets one line per phase (``progress_phase``)."""

    def __init__(self, events_path: str, log_path: str, append: bool = False, create: bool = True):
        self.events_path, self.log_path = events_path, log_path
        self._append = append
        self._pending: Optional[List[dict]] = []  # None once the files are open
        self._shown_percent: Optional[int] = None
        self._shown_phase: Optional[str] = None
        if create:
            try:
                os.makedirs(os.path.dirname(os.path.abspath(events_path)), exist_ok=True)
            except OSError:
                pass

    def _ready(self) -> bool:
        """The files are started once their folder exists (anew unless appending)."""
        if self._pending is None:
            return True
        if not os.path.isdir(os.path.dirname(os.path.abspath(self.events_path))):
            return False
        pending, self._pending = self._pending, None
        if not self._append:
            for path in (self.events_path, self.log_path):
                try:
                    open(path, "w", encoding="utf-8").close()
                except OSError:
                    pass
        for record in pending:
            self._write(record)
        return True

    def remove(self) -> None:
        for path in (self.events_path, self.log_path):
            if self._pending is None and os.path.isfile(path):
                try:
                    os.remove(path)
                except OSError:
                    pass

    def write(self, record: dict) -> None:
        if self._ready():
            self._write(record)
        elif len(self._pending) < EARLY_EVENTS:
            self._pending.append(record)

    def _write(self, record: dict) -> None:
        line = log_line(record)
        if record.get("event") == PROGRESS:
            percent, phase = int(float(record.get("percent") or 0.0)), progress_phase(line) if line else None
            if percent == self._shown_percent and (phase is None or phase == self._shown_phase):
                return
            self._shown_percent = percent
            line = None if phase is None or phase == self._shown_phase else phase
            self._shown_phase = phase or self._shown_phase
        now = time.time()
        try:
            with open(self.events_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({**record, "time": round(now, 3)}, default=plain) + "\n")
            if line:
                with open(self.log_path, "a", encoding="utf-8") as f:
                    f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))}  {line}\n")
        except OSError:  # a full disk or a folder removed: the run goes on, its stdout events still flow
            pass


_COUNTER = re.compile(r"\s*\d+\s*/\s*\d+\s*$")  # "tiles 12/100"


def progress_phase(text: str) -> str:
    """The phase a progress text belongs to, without its per-step detail: "epoch 3: loss 0.41"
    → "epoch 3", "trial_2: epoch 1: loss 0.7" → "trial_2: epoch 1", "tiles 12/100" → "tiles"."""
    text = _COUNTER.sub("", text)
    head, colon, tail = text.rpartition(":")
    if colon and any(c.isdigit() for c in tail):
        text = head
    return text.strip()


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# fields of a metric event that are not shown as "name value"
_METRIC_DETAILS = ("event", "epoch", "epochs", "trial", "monitor", "best", "improved", "per_class", "device",
                   "samples_per_s", "seconds", "lr", "time")


def log_line(record: dict) -> Optional[str]:
    """An event as a line a person reads (training_log.txt); None for a progress without text."""
    kind = record.get("event")
    if kind == PROGRESS:
        message = str(record.get("message") or "")
        return message or None
    if kind == LOG:
        level = str(record.get("level") or "info")
        return f"{'warning: ' if level.startswith('warn') else ''}{record.get('message', '')}"
    if kind == METRIC:
        head = f"epoch {record.get('epoch')}" + (f"/{record['epochs']}" if record.get("epochs") else "")
        if record.get("trial"):
            head = f"{record['trial']}: {head}"
        values = [f"{k} {_number(v)}" for k, v in record.items()
                  if k not in _METRIC_DETAILS and isinstance(v, (int, float)) and not isinstance(v, bool)]
        if record.get("seconds") is not None:
            values.append(f"{float(record['seconds']):.1f} s")
        return f"{head}: {', '.join(values)}"
    if kind == RESULT:
        parts = [f"{name} {record[key]}" for key, name in (("out_model_file", "model"), ("report", "report"),
                                                           ("leaderboard", "leaderboard")) if record.get(key)]
        metrics = record.get("metrics") or {}
        shown = [f"{k} {_number(v)}" for k, v in metrics.items() if isinstance(v, (int, float))
                 and not isinstance(v, bool)]
        return "done: " + "; ".join(parts + ([", ".join(shown)] if shown else []))
    if kind == ERROR:
        parameter = record.get("parameter")
        return f"error: {parameter + ': ' if parameter else ''}{record.get('message', '')}"
    if kind == CANCELED:
        return f"canceled: {record.get('message', '')}"
    return json.dumps(record, default=plain)


def plain(value: Any):
    """``json.dumps(default=plain)``: numpy scalars/arrays and paths as JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
