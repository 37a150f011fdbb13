"""Runs an engine command (``python -m dl_engine train|…``) in a worker process.

Why a process (ARCHITECTURE.md, "Long work"): a crash or CUDA error cannot take QGIS down,
DataLoader workers never re-launch the QGIS binary, and the same command runs under torchrun.

The worker prints one JSON event per line on stdout (``dl_engine/events.py``: names, fields, exit codes); stderr
is free text. ``run_worker`` forwards events to a feedback object (``feed_event``), stops the worker when the
feedback is canceled (SIGTERM, then kill after ``stop_timeout``) and returns the ``result``
event's fields. Only plain Python and ``QgsProcessingException`` are used here, so the same
runner serves Processing algorithms and ``plugin/tasks.py``.

Which Python (``resolve_worker_python``): ``DLT_PYTHON``, the plugin setting ``deep_learning_tools/python``,
the plugin-managed environment (``dl_engine.environment``) once installed, QGIS's own Python when it finds the
engine's packages (a developer's .venv); otherwise one message says what is missing and how to set it up.
Only QGIS's own interpreter gets QGIS's ``sys.path``; any other, a venv of the same base Python included, gets
the plugin folder alone on PYTHONPATH.

The feedback may be any object with ``isCanceled()``, ``setProgress(percent)`` and
``pushInfo(text)``; ``pushWarning``, ``pushConsoleInfo``, ``pushDebugInfo`` and
``setProgressText`` are used when present.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from qgis.core import QgsProcessingException

from dl_engine import events as ev  # standard library only
from dl_engine.errors import Canceled
from dl_engine.host import HOST_PID_ENV, TEMPORARY_ENV  # standard library only

PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON_ENV_VAR = "DLT_PYTHON"
PYTHON_SETTING = "deep_learning_tools/python"  # QgsSettings key (a plugin setting, later a dialog)
# The pretrained weights folder (dl_engine.models.weights.WEIGHTS_DIR_ENV): the QgsSettings key, shown in
# Settings ▸ Options ▸ Processing ▸ Providers ▸ Deep learning tools, and the variable the worker reads.
WEIGHTS_DIR_ENV_VAR = "DLT_WEIGHTS_DIR"
WEIGHTS_DIR_SETTING = "deep_learning_tools/weights_dir"

STDERR_TAIL_LINES = 40


# ---- which Python, with which path -------------------------------------------------------------

def _installation_python() -> Optional[str]:
    """The interpreter of the running installation, never the QGIS binary
    (dl_engine.interpreter: standard library only, no rasterio or torch)."""
    from dl_engine.interpreter import installation_python
    return installation_python()


def _setting(key: str) -> Optional[str]:
    """A plugin setting (QgsSettings), stripped; None when empty or outside a running QGIS."""
    try:
        from qgis.core import QgsApplication, QgsSettings

        if QgsApplication.instance() is not None:
            return (QgsSettings().value(key, "", type=str) or "").strip() or None
    except Exception:  # no settings backend
        pass
    return None


def weights_dir() -> Optional[str]:
    """The pretrained weights folder the worker gets as ``DLT_WEIGHTS_DIR``: the environment variable when
    QGIS was started with it (it wins, as ``DLT_PYTHON`` wins over its setting, and is passed on as it is),
    else the plugin setting ``deep_learning_tools/weights_dir`` (``~`` expanded, made absolute), else None:
    the hubs' own caches (``dl_engine/models/weights.py``)."""
    if os.environ.get(WEIGHTS_DIR_ENV_VAR, "").strip():
        return os.environ[WEIGHTS_DIR_ENV_VAR].strip()
    value = _setting(WEIGHTS_DIR_SETTING)
    return os.path.abspath(os.path.expanduser(value)) if value else None


# The packages the engine's commands import; QGIS's own Python runs the engine only when it finds them all
# (the developer path: a .venv on QGIS's sys.path).
ENGINE_MODULES = ("torch", "torchvision", "timm", "rasterio", "shapely")
INSTALL_ALGORITHM = "deeplearningtools:installdeeplearningframeworks"
SETUP_HINT = (
    "run Install Deep Learning Frameworks (Processing Toolbox ▸ Deep learning tools ▸ Setup, or "
    f"`qgis_process run {INSTALL_ALGORITHM}`), or Plugins ▸ Deep learning tools ▸ Deep learning environment…"
)


MANAGED_SOURCE = "the plugin's deep-learning environment"
OWN_SOURCE = "QGIS's own Python"


@dataclass(frozen=True)
class WorkerPython:
    """The interpreter that runs the engine and why it was chosen (``source``: human words)."""

    python: str
    source: str


def _executable(value: str, source: str) -> WorkerPython:
    python = os.path.abspath(os.path.expanduser(value))
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise QgsProcessingException(
            f"{source}: {value!r} is not an executable Python; point it at the Python that has the engine's "
            f"packages (e.g. /path/to/venv/bin/python), or clear it and {SETUP_HINT}"
        )
    return WorkerPython(python, source)


def _managed_python() -> Optional[str]:
    """The plugin-managed environment's interpreter when its stamp says it is ready (no subprocess)."""
    try:
        from dl_engine.environment import manager  # standard library only
        return manager.ready_python()
    except (ImportError, OSError, ValueError):
        return None


def missing_engine_modules() -> List[str]:
    """The engine packages QGIS's own Python cannot find; looked up, never imported (torch takes seconds)."""
    missing = []
    for name in ENGINE_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken half-imported package
            found = False
        if not found:
            missing.append(name)
    return missing


def _listing(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _environment_state() -> str:
    """The managed environment in a few words, for the setup message."""
    try:
        from dl_engine.environment import location
        folder = location.env_dir()
        installed = os.path.exists(location.env_python(folder))
    except (ImportError, OSError, ValueError):
        return "the plugin's deep-learning environment is not installed"
    if installed:
        return (f"the plugin's deep-learning environment ({folder}) is not ready (its installation did not finish, "
                f"a package is broken or the plugin's pinned packages changed)")
    return f"the plugin's deep-learning environment ({folder}) is not installed"


def setup_message(what: str, missing: Sequence[str], own: Optional[str]) -> str:
    """One message listing everything missing at once, and how to set it up."""
    if own is None:
        qgis_side = f"no Python interpreter was found next to QGIS's Python ({sys.prefix})"
    else:
        qgis_side = f"QGIS's Python ({own}) lacks {_listing(missing)}"
    return (
        f"{what} needs the deep-learning engine, which is not set up: {_environment_state()}, and {qgis_side}. "
        f"To set it up, {SETUP_HINT}; or set the environment variable {PYTHON_ENV_VAR} or the plugin setting "
        f"{PYTHON_SETTING} to a Python that has {_listing(ENGINE_MODULES)}."
    )


def resolve_worker_python(what: str = "This tool") -> WorkerPython:
    """The Python that runs the engine, never the QGIS binary, in this order: ``DLT_PYTHON``, the plugin
    setting ``deep_learning_tools/python``, the managed environment when it is ready, QGIS's own Python
    when it finds every engine package. Otherwise one QgsProcessingException says what is missing."""
    value = os.environ.get(PYTHON_ENV_VAR, "").strip()
    if value:
        return _executable(value, PYTHON_ENV_VAR)
    value = _setting(PYTHON_SETTING)
    if value:
        return _executable(value, f"The plugin setting {PYTHON_SETTING}")
    managed = _managed_python()
    if managed:
        return WorkerPython(managed, MANAGED_SOURCE)
    own = _installation_python()
    missing = missing_engine_modules()
    if own is not None and not missing:
        return WorkerPython(own, OWN_SOURCE)
    raise QgsProcessingException(setup_message(what, missing, own))


def worker_python(what: str = "This tool") -> str:
    """The Python to run the engine with (``resolve_worker_python``)."""
    return resolve_worker_python(what).python


def python_prefix(python: str) -> str:
    """The ``sys.prefix`` an interpreter will have, read from the disk (nothing is run): a venv's folder
    (``pyvenv.cfg`` beside the executable or one folder up, as CPython looks for it), else its installation."""
    folder = os.path.dirname(os.path.abspath(python))  # not resolved: a venv's python links to its base
    for candidate in (folder, os.path.dirname(folder)):
        if os.path.isfile(os.path.join(candidate, "pyvenv.cfg")):
            return candidate
    folder = os.path.dirname(os.path.realpath(python))
    return os.path.dirname(folder) if os.path.basename(folder).lower() in ("bin", "scripts") else folder


def _same_file(a: str, b: str) -> bool:
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def is_installation_python(python: str) -> bool:
    """Whether ``python`` is the running installation's own interpreter, so that our ``sys.path`` suits it.
    A venv made from the same base interpreter runs the same binary but has another prefix: it is not
    (given our sys.path, Debian's dist-packages would shadow the venv's own packages)."""
    own = _installation_python()
    return (own is not None and _same_file(python, own)
            and _same_file(python_prefix(python), sys.prefix))


def worker_env(configured: bool = False) -> Dict[str, str]:
    """Environment for the worker: the plugin folder first on PYTHONPATH, unbuffered output, and
    ``DLT_WEIGHTS_DIR`` from the plugin setting when the environment does not set it (``weights_dir``).

    ``configured=False``: the worker runs the installation's own Python; the parent's existing ``sys.path``
    entries follow, so the venv or user site-packages where torch lives (visible to QGIS through its own
    PYTHONPATH) are seen. ``configured=True``: another interpreter (``DLT_PYTHON``, the setting, the managed
    environment; maybe another Python version, maybe a venv of QGIS's own): only the plugin folder, never
    our sys.path, QGIS's PYTHONPATH or PYTHONHOME, so its own site-packages come first.
    """
    env = dict(os.environ)
    entries: List[str] = [PLUGIN_DIR]
    if configured:
        env.pop("PYTHONHOME", None)  # OSGeo4W sets it for QGIS's Python; another interpreter has its own
    else:
        entries += [p for p in sys.path if p and os.path.exists(p)]
    seen, path = set(), []
    for entry in entries:
        key = os.path.normcase(os.path.abspath(entry))
        if key not in seen:
            seen.add(key)
            path.append(entry)
    env["PYTHONPATH"] = os.pathsep.join(path)
    folder = weights_dir()
    if folder:
        env[WEIGHTS_DIR_ENV_VAR] = folder
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


# ---- feedback helpers ---------------------------------------------------------------------------

def _push(feedback, method: str, text: str) -> None:
    if feedback is None:
        return
    target = getattr(feedback, method, None) or getattr(feedback, "pushInfo", None)
    if target is not None:
        target(text)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


METRIC_ORDER = ("train_loss", "valid_loss")
METRIC_SKIP = {"event", "epoch", "epochs", "max_epochs", "samples_per_s", "seconds", "device", "lr", "best", "monitor"}


def format_metric(event: Dict[str, Any]) -> str:
    """One readable line per epoch:
    ``Epoch 3/20: train_loss 0.41, valid_loss 0.38, accuracy 0.91 | 35.2 samples/s on cuda:0, 4.1 s``."""
    epoch = event.get("epoch")
    total = event.get("epochs", event.get("max_epochs"))
    head = "Epoch" if epoch is None else f"Epoch {epoch}" + (f"/{total}" if total else "")
    if event.get("trial"):  # AutoDL: which trial the epoch belongs to
        head = f"{event['trial']}: {head}"
    values = [f"{k} {_number(event[k])}" for k in METRIC_ORDER if event.get(k) is not None]
    values += [
        f"{k} {_number(v)}" for k, v in event.items()
        if k not in METRIC_SKIP and k not in METRIC_ORDER and isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    if event.get("lr") is not None:
        values.append(f"lr {_number(event['lr'])}")
    if isinstance(event.get("best"), (int, float)) and not isinstance(event.get("best"), bool):
        values.append(f"best {str(event.get('monitor') or '').lower() or 'so far'} {_number(event['best'])}")
    speed = []
    if event.get("samples_per_s") is not None:
        speed.append(f"{float(event['samples_per_s']):.1f} samples/s")
    if event.get("device"):
        speed.append(f"on {event['device']}")
    line = f"{head}: {', '.join(values)}" if values else head
    if speed:
        line += " | " + " ".join(speed)
    if event.get("seconds") is not None:
        line += f", {float(event['seconds']):.1f} s"
    return line


def feed_event(feedback, event: Dict[str, Any]) -> None:
    """Show one engine event (``dl_engine.events``) on a feedback object: progress (a percent)
    and its text, log lines, epoch metrics; other events go to the debug log. The ``result``,
    ``error`` and ``canceled`` events say how a run ended: its caller reads those (a worker's
    in ``run_worker``; an in-process run returns or raises). Used for worker processes and for
    the export, which runs in QGIS's process."""
    if feedback is None:
        return
    kind = event.get("event")
    if kind == ev.PROGRESS:
        try:
            feedback.setProgress(max(0.0, min(100.0, float(event.get("percent", 0.0)))))
        except (TypeError, ValueError):
            pass
        if event.get("message") and hasattr(feedback, "setProgressText"):
            _progress_text(feedback, str(event["message"]))
    elif kind == ev.LOG:
        level = str(event.get("level", "info")).lower()
        _push(feedback, "pushWarning" if level.startswith("warn") else "pushInfo", str(event.get("message", "")))
    elif kind == ev.METRIC:
        _push(feedback, "pushInfo", format_metric(event))
    elif kind not in (ev.RESULT, ev.ERROR, ev.CANCELED):
        _push(feedback, "pushDebugInfo", json.dumps(event, default=ev.plain))


progress_phase = ev.progress_phase  # the phase of a progress text (one rule, shared with the run's log file)


def _progress_text(feedback, text: str) -> None:
    """Once per phase: QGIS's dialog appends every progress text to its log, so a text per
    step (the learning-rate finder's, a loss per batch) would fill it."""
    phase = progress_phase(text)
    if phase and getattr(feedback, "_dlt_progress_phase", None) == phase:
        return
    try:
        feedback._dlt_progress_phase = phase
    except AttributeError:  # a feedback without attributes of its own: every text shown
        pass
    feedback.setProgressText(phase or text)


_MISSING_MODULE = re.compile(r"No module named '([^']+)'")


_PROBE = ("import importlib.util as u, sys\n"
          "print(' '.join(m for m in sys.argv[1:] if u.find_spec(m) is None))")


def missing_in(python: str, env: Optional[Dict[str, str]] = None) -> List[str]:
    """The engine packages ``python`` (with the worker's environment) cannot find; [] when it cannot say."""
    try:
        done = subprocess.run([python, "-c", _PROBE, *ENGINE_MODULES], env=env, capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return []
    return done.stdout.split() if done.returncode == 0 else []


def missing_module_message(python: str, lines: Sequence[str], what: str,
                           env: Optional[Dict[str, str]] = None) -> Optional[str]:
    """The fix for the most common failure: the worker's Python lacks torch (or another package). With
    ``env`` (the worker's), every engine package it lacks is named at once, not only the first it tripped on."""
    # Our own package missing a module is a broken install, not a missing dependency.
    missing = [m.split(".")[0] for m in _MISSING_MODULE.findall("\n".join(lines)) if not m.startswith("dl_engine")]
    if not missing:
        return None
    module = missing[-1]
    others = [m for m in (missing_in(python, env) if env is not None else []) if m != module]
    also = f" (it also lacks {_listing(others)})" if others else ""
    managed = _managed_python()
    repair = (" The plugin's deep-learning environment is broken: run Install Deep Learning Frameworks with "
              "REINSTALL to repair it." if managed and _same_file(managed, python) else "")
    return (
        f"{what} cannot start: the Python it runs with ({python}) cannot import '{module}'{also}.{repair} "
        f"To set up the engine, {SETUP_HINT}; or set the environment variable {PYTHON_ENV_VAR} to a Python "
        f"that has {_listing(ENGINE_MODULES)}."
    )


def crash_message(python: str, code: int, stderr_tail: Sequence[str], what: str,
                  env: Optional[Dict[str, str]] = None) -> str:
    """What the user reads when the worker died: the end of its stderr, not a whole traceback."""
    hint = missing_module_message(python, stderr_tail, what, env)
    if hint:
        return hint
    lines = [line for line in stderr_tail if line.strip()]
    # After a traceback, its last lines (the exception) say what happened; frames go to the log only.
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        last = max(i for i, line in enumerate(lines) if line.startswith("Traceback"))
        after = [line for line in lines[last + 1:] if not line.startswith("  ")]
        lines = after[-3:] or lines[-3:]
    else:
        lines = lines[-10:]
    reason = f"exit code {code}" if code >= 0 else f"signal {-code}"
    detail = "\n".join(lines) if lines else "(no error output)"
    return f"{what} stopped unexpectedly ({reason}):\n{detail}"


# ---- the runner ---------------------------------------------------------------------------------

# Who follows runs besides their feedback (the plugin's jobs dock, plugin/jobs.py): each listener gets
# (run_id, what, event) from the runner's thread: {"event": "started", "args": [...]} first, every event of
# the worker, then {"event": "finished", "status": "ok"|"canceled"|"failed", "message": …}. A listener
# asks a run to stop with ``request_cancel(run_id)``, which the runner checks with the feedback's cancel.
_LISTENERS: List[Any] = []
_CANCEL_REQUESTS: set = set()
_RUN_IDS = iter(range(1, 1 << 62))


def add_listener(listener) -> None:
    if listener not in _LISTENERS:
        _LISTENERS.append(listener)


def remove_listener(listener) -> None:
    if listener in _LISTENERS:
        _LISTENERS.remove(listener)


def request_cancel(run_id: str) -> None:
    _CANCEL_REQUESTS.add(run_id)


def _tell(run_id: str, what: str, event: Dict[str, Any]) -> None:
    for listener in list(_LISTENERS):
        try:
            listener(run_id, what, event)
        except Exception:  # noqa: BLE001 - a follower's fault never stops a run
            pass


def _reader(stream, tag: str, sink: "queue.Queue") -> None:
    """Lines of one pipe into the queue, then None; the reader owns (and closes) the pipe,
    because children of the worker may keep it open after the worker is gone."""
    try:
        for line in iter(stream.readline, ""):
            sink.put((tag, line.rstrip("\r\n")))
    except (OSError, ValueError):
        pass
    finally:
        sink.put((tag, None))
        try:
            stream.close()
        except OSError:
            pass


def _stop(process: subprocess.Popen, stop_timeout: float) -> None:
    """SIGTERM (the worker stops at once, its checkpoint stays resumable), then kill."""
    if process.poll() is not None:
        return
    try:
        process.terminate()
        process.wait(timeout=stop_timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    except OSError:
        pass


def run_worker(
    command_args: Sequence[str],
    feedback=None,
    *,
    python: Optional[str] = None,
    env: Optional[Dict[str, str]] = None,
    cwd: Optional[str] = None,
    what: str = "Training",
    poll_interval: float = 0.1,
    stop_timeout: float = 1.5,
    temporary: Sequence[str] = (),
) -> Dict[str, Any]:
    """Run ``<python> <command_args…>`` and return the fields of its ``result`` event.

    The worker watches this process (``DLT_HOST_PID``) and stops when it dies. ``temporary``:
    files or folders written for this run only; the worker removes them when it ends, also when
    this process died first, and so does this function.

    Raises ``QgsProcessingException`` ("PARAMETER: message") for an ``error`` event,
    ``dl_engine.errors.Canceled`` when canceled (an algorithm re-raises it as
    ``QgsProcessingException``: QGIS shows a traceback for any other exception class) and ``QgsProcessingException`` with the end of stderr
    when the worker crashes.
    """
    python = python or worker_python(what)
    if env is None:
        # Our sys.path (stdlib included) suits only the installation's own interpreter (same binary, same prefix).
        env = worker_env(configured=not is_installation_python(python))
    env = dict(env, **{HOST_PID_ENV: str(os.getpid())})
    temporary = [os.path.abspath(p) for p in temporary]
    if temporary:
        env[TEMPORARY_ENV] = os.pathsep.join(temporary)
    command = [python, *command_args]
    popen_extra: Dict[str, Any] = {}
    if os.name == "nt":
        popen_extra["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)
    try:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=cwd or None, text=True, encoding="utf-8", errors="replace", bufsize=1,
            **popen_extra,
        )
    except OSError as error:
        raise QgsProcessingException(f"{what} cannot start {python}: {error}") from error
    run_id = f"{os.getpid()}-{next(_RUN_IDS)}"
    _tell(run_id, what, {"event": "started", "args": list(command_args), "pid": process.pid})

    lines: "queue.Queue" = queue.Queue()
    readers = [
        threading.Thread(target=_reader, args=(process.stdout, "out", lines), daemon=True),
        threading.Thread(target=_reader, args=(process.stderr, "err", lines), daemon=True),
    ]
    for thread in readers:
        thread.start()

    stderr_tail: deque = deque(maxlen=STDERR_TAIL_LINES)
    result: Optional[Dict[str, Any]] = None
    error: Optional[Dict[str, Any]] = None
    canceled_message = ""
    canceled_by_us = False
    open_streams = 2
    exited_at: Optional[float] = None

    def handle(tag: str, line: Optional[str]) -> None:
        nonlocal result, error, canceled_message
        if line is None:  # end of a stream
            return
        if tag == "err":
            stderr_tail.append(line)
            if line.strip():
                is_warning = "warning" in line.lower()
                _push(feedback, "pushWarning" if is_warning else "pushConsoleInfo", line)
            return
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict) or "event" not in event:
            if line.strip():
                _push(feedback, "pushConsoleInfo", line)  # a library printing to stdout
            return
        _tell(run_id, what, event)
        kind = event.get("event")
        if kind == ev.RESULT:
            result = {k: v for k, v in event.items() if k != "event"}
        elif kind == ev.ERROR:
            error = event
        elif kind == ev.CANCELED:
            canceled_message = str(event.get("message", ""))
        else:
            feed_event(feedback, event)

    try:
        while True:
            if not canceled_by_us and (run_id in _CANCEL_REQUESTS
                                       or (feedback is not None and feedback.isCanceled())):
                canceled_by_us = True
                deadline = time.monotonic() + stop_timeout
                try:
                    process.terminate()
                except OSError:
                    pass
                # Keep reading while it stops, to catch its "canceled" event (checkpoint path).
                while process.poll() is None and time.monotonic() < deadline:
                    try:
                        handle(*lines.get(timeout=0.05))
                    except queue.Empty:
                        pass
                if process.poll() is None:  # ignored SIGTERM or still busy: kill
                    process.kill()
                    process.wait()
                _drain(lines, handle)
                break
            try:
                tag, line = lines.get(timeout=poll_interval)
            except queue.Empty:
                tag, line = None, None
            if tag is not None:
                if line is None:
                    open_streams -= 1
                else:
                    handle(tag, line)
            if process.poll() is not None:
                if open_streams <= 0:
                    break
                # Children (DataLoader workers) may hold the pipes open after the worker exits.
                exited_at = exited_at or time.monotonic()
                if time.monotonic() - exited_at > 1.0:
                    _drain(lines, handle)
                    break
    except BaseException as fault:  # a feedback callback's exception: followers see the run end too
        _tell(run_id, what, {"event": "finished", "status": "failed", "message": str(fault)})
        raise
    finally:
        if process.poll() is None:  # an exception in a feedback callback: never leave it running
            _stop(process, stop_timeout)
        _remove(temporary)
        _CANCEL_REQUESTS.discard(run_id)

    code = process.returncode
    try:
        outcome = _outcome(python, code, canceled_by_us, canceled_message, result, error, stderr_tail, what, env)
    except Canceled as canceled:
        _tell(run_id, what, {"event": "finished", "status": "canceled", "message": str(canceled)})
        raise
    except QgsProcessingException as failed:
        _tell(run_id, what, {"event": "finished", "status": "failed", "message": str(failed)})
        raise
    _tell(run_id, what, {"event": "finished", "status": "ok", "message": ""})
    return outcome


def _outcome(python, code, canceled_by_us, canceled_message, result, error, stderr_tail, what, env):
    """The run's result fields, or the exception that says how it ended."""
    if canceled_by_us or code == ev.EXIT_CANCELED or (canceled_message and result is None):
        message = f"{what} canceled"
        if canceled_message.lower().startswith(message.lower()):  # the worker's own words say it all
            message = message + canceled_message[len(message):]
        elif canceled_message:
            message += f": {canceled_message}"
        raise Canceled(message)
    if error is not None:
        parameter = str(error.get("parameter") or "").strip()
        message = str(error.get("message") or "failed").strip()
        if parameter:
            raise QgsProcessingException(f"{parameter}: {message}")
        hint = missing_module_message(python, [message, *stderr_tail], what, env)
        raise QgsProcessingException(hint or message)
    if code == ev.EXIT_OK and result is not None:
        return result
    if code == ev.EXIT_OK:
        raise QgsProcessingException(f"{what} finished without reporting its outputs")
    raise QgsProcessingException(crash_message(python, code, list(stderr_tail), what, env))


def _remove(paths: Sequence[str]) -> None:
    for path in paths:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            try:
                os.remove(path)
            except OSError:
                pass


def _drain(lines: "queue.Queue", handle) -> None:
    while True:
        try:
            handle(*lines.get_nowait())
        except queue.Empty:
            return
