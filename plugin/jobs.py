"""The runs the "Deep learning jobs" dock shows: trainings, AutoDL searches and inference runs.

Runs started anywhere in this QGIS (a Processing dialog, a script, ``plugin/tasks.py``) go through
``engine_process.run_worker``, which tells its listeners every event of the worker
(``engine_process.add_listener``). ``JobRegistry`` is such a listener: it gets the events on the
runner's thread and hands them to the GUI thread through a queued signal, where each run's
``Job`` follows them. A finished run's history is read back from the files its worker wrote
(``training_events.jsonl`` in OUT_FOLDER, ``<stem>_events.jsonl`` beside AutoDL's OUT_MODEL:
``dl_engine.events``). Cancel asks the runner to stop that run (``engine_process.request_cancel``),
as the Processing dialog's Cancel does.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from qgis.PyQt.QtCore import QObject, Qt, pyqtSignal

from dl_engine import events as ev
from ..processing_provider import engine_process

RUNNING, CANCELING, DONE, FAILED, CANCELED, ENDED = "running", "canceling…", "done", "failed", "canceled", "ended"
FINISHED = (DONE, FAILED, CANCELED, ENDED)
# engine command -> kind of job; other commands (export, import weights) are not followed
KINDS = {"train": "training", "autodl": "AutoDL", "infer": "inference"}
REPORT = "model_metrics.html"
# what MONITOR names -> the metric event's key; the first of these an epoch has is charted
METRIC_KEYS = ("miou", "accuracy", "dice", "f1", "average_precision")


def _finite(value: Any) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def command_of(args: Sequence[str]) -> str:
    """The engine command of a worker's arguments (``-m dl_engine train --config …`` -> "train")."""
    args = list(args)
    if "dl_engine" in args:
        position = args.index("dl_engine") + 1
        if position < len(args):
            return args[position]
    return ""


def read_config(args: Sequence[str]) -> Dict[str, Any]:
    """The run's config file (``--config FILE``) as a dict; {} when it cannot be read."""
    args = list(args)
    if "--config" not in args or args.index("--config") + 1 >= len(args):
        return {}
    try:
        with open(args[args.index("--config") + 1], encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


@dataclass
class Job:
    """One run as the dock shows it; ``apply`` follows its events (dl_engine.events, plus the
    runner's ``started`` and ``finished``)."""

    run_id: str
    kind: str  # a value of KINDS
    title: str
    out_folder: str = ""  # the folder a person opens: OUT_FOLDER, or the folder of OUT_MODEL / the output
    out_model: str = ""  # the model package (AutoDL: OUT_MODEL) or the inference output
    report: str = ""  # model_metrics.html on disk ("" for AutoDL: it is inside OUT_MODEL)
    leaderboard_csv: str = ""  # AutoDL
    events_file: str = ""
    status: str = RUNNING
    percent: float = 0.0
    phase: str = ""
    message: str = ""  # how it ended, or the last warning
    monitor: str = ""
    epochs: List[Dict[str, Any]] = field(default_factory=list)  # metric events (AutoDL: of the latest trial)
    trials: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # AutoDL: trial -> its best epoch so far
    started: float = field(default_factory=time.time)
    cancelable: bool = False  # a run this QGIS is running (not one read from a file)
    pid: Optional[int] = None  # its worker process

    @classmethod
    def from_start(cls, run_id: str, what: str, args: Sequence[str], config: Dict[str, Any]) -> Optional["Job"]:
        kind = KINDS.get(command_of(args))
        if kind is None:
            return None
        job = cls(run_id=run_id, kind=kind, title=what, cancelable=True)
        if kind == KINDS["train"]:
            job.set_out_folder(str(config.get("out_folder") or ""))
            job.title = f"Training — {os.path.basename(os.path.normpath(job.out_folder)) or '?'}"
        elif kind == KINDS["autodl"]:
            job.set_out_model(str(config.get("out_model") or ""))
            job.title = f"AutoDL — {os.path.basename(job.out_model) or '?'}"
        else:
            job.out_model = os.path.abspath(str(config.get("out_path") or "")) if config.get("out_path") else ""
            job.out_folder = os.path.dirname(job.out_model) if job.out_model else ""
            job.title = f"{what} — {os.path.basename(job.out_model) or '?'}"
        return job

    @classmethod
    def from_file(cls, path: str) -> "Job":
        """A run's history from its events file (training_events.jsonl, or AutoDL's <stem>_events.jsonl);
        OSError when it cannot be read."""
        path = os.path.abspath(path)
        name = os.path.basename(path)
        if name == ev.TRAINING_EVENTS:
            job = cls(run_id=f"file:{path}", kind=KINDS["train"], title="")
            job.set_out_folder(os.path.dirname(path))
            job.title = f"Training — {os.path.basename(job.out_folder)}"
        else:
            job = cls(run_id=f"file:{path}", kind=KINDS["autodl"], title="")
            job.set_out_model(path[:-len("_events.jsonl")] + ".dlpk" if name.endswith("_events.jsonl") else path)
            job.title = f"AutoDL — {os.path.basename(job.out_model)}"
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        first = True
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a line cut short by a killed worker
            if isinstance(event, dict):
                if first and _finite(event.get("time")):
                    job.started, first = float(event["time"]), False
                job.apply(event)
        if job.status not in FINISHED:  # the file ends without saying how (QGIS closed, the worker killed)
            job.status = ENDED
        # where the file is now wins over the paths it recorded (the folder may have been moved since)
        if job.kind == KINDS["train"]:
            job.set_out_folder(os.path.dirname(path))
        else:
            job.set_out_model(path[:-len("_events.jsonl")] + ".dlpk" if name.endswith("_events.jsonl") else path)
            job.report = ""
        job.events_file = path
        return job

    def set_out_folder(self, folder: str) -> None:
        self.out_folder = os.path.abspath(folder) if folder else ""
        if self.out_folder:
            self.report = os.path.join(self.out_folder, REPORT)
            self.events_file = ev.training_files(self.out_folder)[0]

    def set_out_model(self, out_model: str) -> None:
        if not out_model:
            return
        self.out_model = os.path.abspath(out_model)
        self.out_folder = os.path.dirname(self.out_model)
        self.leaderboard_csv = os.path.splitext(self.out_model)[0] + "_leaderboard.csv"
        self.events_file = ev.autodl_files(self.out_model)[0]

    # ---- events --------------------------------------------------------------------------------

    def apply(self, event: Dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == ev.PROGRESS:
            percent = _finite(event.get("percent"))
            if percent is not None:
                self.percent = max(0.0, min(100.0, percent))
            if event.get("message"):
                self.phase = ev.progress_phase(str(event["message"])) or str(event["message"])
        elif kind == ev.METRIC:
            self._metric(event)
        elif kind == ev.LOG and str(event.get("level", "")).startswith("warn"):
            self.message = str(event.get("message", ""))
        elif kind == ev.RESULT:
            self._result(event)
        elif kind == ev.ERROR:
            parameter = str(event.get("parameter") or "")
            self.status, self.message = FAILED, (f"{parameter}: " if parameter else "") + str(event.get("message", ""))
        elif kind == ev.CANCELED:
            self.status, self.message = CANCELED, str(event.get("message", ""))
        elif kind == "finished":  # the runner's word is the last
            self.status = {"ok": DONE, "canceled": CANCELED}.get(str(event.get("status")), FAILED)
            if event.get("message"):
                self.message = str(event["message"])
            self.cancelable = False
        if self.status == DONE:
            self.percent = 100.0

    def _metric(self, event: Dict[str, Any]) -> None:
        epoch = _finite(event.get("epoch"))
        if epoch is None:
            return
        if event.get("monitor"):
            self.monitor = str(event["monitor"])
        trial = str(event.get("trial") or "")
        if self.epochs and str(self.epochs[-1].get("trial") or "") != trial:
            self.epochs = []  # a new AutoDL trial: the chart follows it
        # a resumed or restarted run repeats epochs: the latest count
        self.epochs = [e for e in self.epochs if float(e["epoch"]) < epoch] + [dict(event)]
        if trial:
            value = _finite(event.get(self.metric_key() or "valid_loss"))
            kept = self.trials.get(trial)
            lower_is_better = self.metric_key() in (None, "valid_loss")
            if kept is None or (value is not None and (kept["value"] is None or (
                    value < kept["value"] if lower_is_better else value > kept["value"]))):
                self.trials[trial] = {"trial": trial, "value": value, "epoch": int(epoch),
                                      "valid_loss": _finite(event.get("valid_loss"))}
            self.trials[trial]["epochs"] = int(epoch)

    def _result(self, event: Dict[str, Any]) -> None:
        self.status = DONE
        if self.kind == KINDS["train"] and event.get("out_folder"):
            self.set_out_folder(str(event["out_folder"]))
        if event.get("report"):
            self.report = str(event["report"])
        if event.get("out_model_file"):
            if self.kind == KINDS["autodl"]:
                self.set_out_model(str(event["out_model_file"]))
            else:
                self.out_model = str(event["out_model_file"])
        if event.get("leaderboard"):
            self.leaderboard_csv = str(event["leaderboard"])
        self.message = ""

    # ---- what the dock shows -------------------------------------------------------------------

    def metric_key(self) -> Optional[str]:
        """The monitored metric's key in the epochs' events (None: the validation loss is monitored)."""
        monitor = self.monitor.lower()
        if monitor == "valid_loss":
            return None
        if monitor in METRIC_KEYS and any(e.get(monitor) is not None for e in self.epochs):
            return monitor
        return next((k for k in METRIC_KEYS if any(_finite(e.get(k)) is not None for e in self.epochs)), None)

    def series(self) -> Dict[str, List[Tuple[float, float]]]:
        """The chart's lines, name -> (epoch, value): train_loss, valid_loss and the monitored metric."""
        names = ["train_loss", "valid_loss"] + ([self.metric_key()] if self.metric_key() else [])
        lines: Dict[str, List[Tuple[float, float]]] = {}
        for name in names:
            points = [(float(e["epoch"]), _finite(e.get(name))) for e in self.epochs]
            lines[name] = [(x, y) for x, y in points if y is not None]
        return lines

    def leaderboard(self) -> List[Dict[str, Any]]:
        """AutoDL's ranking so far: the worker's leaderboard CSV once written, else the trials' best epochs."""
        if self.leaderboard_csv and os.path.isfile(self.leaderboard_csv):
            try:
                with open(self.leaderboard_csv, newline="", encoding="utf-8") as f:
                    rows = list(csv.DictReader(f))
                return [{"rank": r.get("rank", ""), "value": r.get("value", ""),
                         "trial": r.get("trial") or f"{r.get('network', '')} {r.get('backbone', '')}".strip(),
                         "epochs": r.get("epochs", ""), "status": r.get("status", "")} for r in rows]
            except (OSError, csv.Error, UnicodeDecodeError):
                pass
        lower_is_better = self.metric_key() in (None, "valid_loss")
        known = [t for t in self.trials.values() if t["value"] is not None]
        ranked = sorted(known, key=lambda t: t["value"], reverse=not lower_is_better)
        ranked += [t for t in self.trials.values() if t["value"] is None]
        return [{"rank": i + 1 if t["value"] is not None else "", "trial": t["trial"],
                 "value": "" if t["value"] is None else f"{t['value']:.4f}", "epochs": t.get("epochs", ""),
                 "status": RUNNING if self.status == RUNNING and t is list(self.trials.values())[-1] else "trained"}
                for i, t in enumerate(ranked)]

    def links(self) -> List[Tuple[str, str]]:
        """(label, path) of what exists on disk: the output folder, model_metrics.html, the leaderboard."""
        found = []
        if self.out_folder and os.path.isdir(self.out_folder):
            found.append(("Output folder", self.out_folder))
        if self.report and os.path.isfile(self.report):
            found.append((REPORT, self.report))
        if self.leaderboard_csv and os.path.isfile(self.leaderboard_csv):
            found.append(("Leaderboard", self.leaderboard_csv))
        return found


class JobRegistry(QObject):
    """Every run this QGIS started since the plugin loaded, and the histories opened from disk.

    ``added(run_id)`` and ``changed(run_id)`` are emitted on the GUI thread."""

    added = pyqtSignal(str)
    changed = pyqtSignal(str)
    _received = pyqtSignal(str, str, object)  # from the runner's thread; queued to this object's thread

    def __init__(self, parent: Optional[QObject] = None):
        super().__init__(parent)
        self.jobs: Dict[str, Job] = {}
        self._followed: set = set()  # run ids of the kinds shown (set on the runner's thread)
        self._received.connect(self._apply, Qt.QueuedConnection)
        self._listening = False

    def listen(self) -> None:
        engine_process.add_listener(self._on_event)
        self._listening = True

    def close(self) -> None:
        engine_process.remove_listener(self._on_event)
        self._listening = False

    def _on_event(self, run_id: str, what: str, event: Dict[str, Any]) -> None:
        """The runner's thread: only a queued signal leaves it. The config is read here, while the
        run's temporary config file still exists."""
        if event.get("event") == "started":
            args = event.get("args") or []
            if command_of(args) not in KINDS:
                return
            self._followed.add(run_id)
            event = dict(event, config=read_config(args))
        if run_id in self._followed:
            if event.get("event") == "finished":
                self._followed.discard(run_id)
            self._received.emit(run_id, what, event)

    def _apply(self, run_id: str, what: str, event: Dict[str, Any]) -> None:
        if event.get("event") == "started":
            job = Job.from_start(run_id, what, event.get("args") or [], event.get("config") or {})
            if job is not None:
                job.pid = event.get("pid")
                self.jobs[run_id] = job
                self.added.emit(run_id)
            return
        job = self.jobs.get(run_id)
        if job is None:
            return
        job.apply(event)  # a CANCELING status stays until the run says how it ended
        self.changed.emit(run_id)

    def cancel(self, run_id: str) -> bool:
        """Asks the runner to stop the run (as the dialog's Cancel); False when it is not running here."""
        job = self.jobs.get(run_id)
        if job is None or not job.cancelable or job.status in FINISHED:
            return False
        engine_process.request_cancel(run_id)
        job.status = CANCELING
        self.changed.emit(run_id)
        return True

    def open_history(self, path: str) -> Job:
        """A finished run from disk: an events file, or a folder holding training_events.jsonl or one
        AutoDL ``*_events.jsonl``. OSError (with a message naming what was looked for) when there is none."""
        path = os.path.abspath(path)
        if os.path.isdir(path):
            candidates = [os.path.join(path, ev.TRAINING_EVENTS)] + sorted(
                os.path.join(path, n) for n in os.listdir(path) if n.endswith("_events.jsonl"))
            found = [c for c in candidates if os.path.isfile(c)]
            if not found:
                raise OSError(f"{path} holds no run history ({ev.TRAINING_EVENTS}, or an AutoDL "
                              f"<model>_events.jsonl beside its .dlpk)")
            path = found[0]
        job = Job.from_file(path)
        again = job.run_id in self.jobs  # opened again: the newer reading replaces the row's
        self.jobs[job.run_id] = job
        (self.changed if again else self.added).emit(job.run_id)
        return job
