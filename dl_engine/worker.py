"""The worker side of an engine process (``python -m dl_engine train|infer|autodl|export``): events
as JSON lines on stdout (library prints go to stderr so the stream stays parseable),
SIGTERM/SIGINT as a cancel flag, the exit codes of ``dl_engine.events``, and config files
with flags that override them. The QGIS side's runner is processing_provider/engine_process.py.

A worker the plugin started (``DLT_HOST_PID`` set) dies with its host: when the host is gone it
cancels, as SIGTERM does, and if the run has not ended ``STOP_GRACE`` seconds later it kills its
own child processes (DataLoader workers, the export's pool) and exits. Either way it removes the
files the host wrote for this run only (``DLT_TEMPORARY``) and its own temporary folder, where
everything this process makes with ``tempfile`` lands (an extracted package, for one)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import traceback
from dataclasses import fields
from typing import Callable, Dict, List, Optional, Sequence

from . import events as ev
from .arguments import argument_bool
from .errors import Canceled, InputError
from .host import TEMPORARY_ENV, Host, watch

STOP_GRACE = 3.0  # seconds a run gets to stop by itself after its host died


def _flag_bool(text: str) -> bool:
    """``--freeze true``: the one boolean rule; anything else is argparse's usage error."""
    try:
        return argument_bool(text, "flag")
    except InputError:
        raise ValueError(text) from None


def add_config_flags(parser, cls, ints: Sequence[str] = (), floats: Sequence[str] = (),
                     special: Optional[Dict[str, dict]] = None) -> None:
    """One flag per field of the config dataclass ``cls`` (``--in-folder`` for ``in_folder``),
    typed by its default; ``ints``/``floats`` name the fields whose default is None;
    ``special``: field name -> ``add_argument`` keywords. Every flag defaults to None, so
    only the flags given override ``--config``."""
    for f in fields(cls):
        if f.name == "extra":
            continue
        flag = "--" + f.name.replace("_", "-")
        if special and f.name in special:
            parser.add_argument(flag, **{"default": None, **special[f.name]})
        elif isinstance(f.default, bool):
            parser.add_argument(flag, type=_flag_bool, default=None, metavar="true|false")
        elif isinstance(f.default, int) or f.name in ints:
            parser.add_argument(flag, type=int, default=None)
        elif isinstance(f.default, float) or f.name in floats:
            parser.add_argument(flag, type=float, default=None)
        else:
            parser.add_argument(flag, default=None)


def config_from_args(cls, a, required: Sequence[str]):
    """A config dataclass from ``--config FILE`` overridden by the flags that were given."""
    raw = {}
    if a.config:
        with open(a.config, encoding="utf-8") as f:
            raw = json.load(f)
    for f in fields(cls):
        value = getattr(a, f.name, None)
        if value is not None:
            raw[f.name] = value
    missing = [n for n in required if not raw.get(n)]
    if missing:
        raise SystemExit(f"error: {', '.join('--' + m.replace('_', '-') for m in missing)} (or --config) required")
    return cls.from_json(json.dumps(raw))


def temporary_paths() -> List[str]:
    """The files and folders the host wrote for this run only (``DLT_TEMPORARY``)."""
    return [p for p in os.environ.get(TEMPORARY_ENV, "").split(os.pathsep) if p.strip()]


def remove_paths(paths: Sequence[str]) -> None:
    for path in paths:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.remove(path)
            except OSError:
                pass


class _RunFiles:
    """This run's temporary files: the host's (``DLT_TEMPORARY``) and a folder of its own that
    ``tempfile`` uses in this process; ``remove`` (idempotent) deletes both."""

    def __init__(self) -> None:
        self.paths = temporary_paths()
        self._previous = tempfile.tempdir
        self.folder = tempfile.mkdtemp(prefix=f"dlt-worker-{os.getpid()}-")
        tempfile.tempdir = self.folder
        self._lock = threading.Lock()

    def remove(self) -> None:
        with self._lock:
            if tempfile.tempdir == self.folder:
                tempfile.tempdir = self._previous
            remove_paths([*self.paths, self.folder])


def _silence_output() -> None:
    """The host is gone, and with it the reader of our pipes: write to nowhere from now on
    instead of failing on the closed pipe."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)
    except OSError:
        pass


def _kill_children() -> None:
    """Child processes started through multiprocessing (DataLoader workers, the export's pool)."""
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is None:
        return
    try:
        for child in multiprocessing.active_children():
            child.kill()
    except Exception:  # noqa: BLE001 - leaving anyway
        pass


def _watch_host(stop: dict, files: _RunFiles, done: threading.Event) -> None:
    """Cancel when the host dies; hard exit if the run has not ended ``STOP_GRACE`` later."""
    host = Host.from_environment()
    if host is None:
        return

    def on_death() -> None:
        _silence_output()
        stop["flag"] = True
        if done.wait(STOP_GRACE):
            return
        _kill_children()
        files.remove()
        os._exit(ev.EXIT_CANCELED)

    watch(host, on_death)


def run_job(job: Callable[[object, Callable[[], bool]], None], what: str) -> int:
    """Run ``job(events, cancel)`` as a worker; returns the exit code. Installs the signal
    handlers, the host watch and this run's temporary folder, and swaps stdout: call it only
    from a worker's entry point."""
    out = sys.stdout
    sys.stdout = sys.stderr  # library prints must not break the event stream
    events = ev.Events.json_lines(out)
    stop = {"flag": False}
    files = _RunFiles()
    done = threading.Event()

    def on_signal(signum, frame):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    _watch_host(stop, files, done)
    try:
        job(events, lambda: stop["flag"])
        return ev.EXIT_OK
    except InputError as e:
        events.error(e.parameter, e.message)
        return ev.EXIT_BAD_INPUT
    except Canceled as e:
        events.canceled(str(e) or f"{what} canceled")
        return ev.EXIT_CANCELED
    except Exception as e:  # a crash: the traceback is for the log, the event for the user
        traceback.print_exc()
        events.error("", f"the {what} worker failed: {type(e).__name__}: {e}")
        return ev.EXIT_CRASH
    finally:
        files.remove()
        done.set()
        sys.stdout = out


def leave(code: int) -> int:
    """Started as ``python -m dl_engine``: exit at once (native libraries, torch and GDAL,
    take ~1.5 s to tear down; everything is written and closed by now), so a cancel from
    QGIS ends the process promptly. Called in-process: return the code."""
    main = sys.modules.get("__main__")
    if getattr(getattr(main, "__spec__", None), "name", None) == "dl_engine.__main__":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
