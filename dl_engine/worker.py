"""The worker side of an engine process (``python -m dl_engine train|infer|autodl``): events
as JSON lines on stdout (library prints go to stderr so the stream stays parseable),
SIGTERM/SIGINT as a cancel flag, the exit codes of ``dl_engine.events``, and config files
with flags that override them. The QGIS side's runner is processing_provider/engine_process.py."""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from dataclasses import fields
from typing import Callable, Dict, Optional, Sequence

from . import events as ev
from .arguments import argument_bool
from .errors import Canceled, InputError


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


def run_job(job: Callable[[object, Callable[[], bool]], None], what: str) -> int:
    """Run ``job(events, cancel)`` as a worker; returns the exit code. Installs the signal
    handlers and swaps stdout: call it only from a worker's entry point."""
    out = sys.stdout
    sys.stdout = sys.stderr  # library prints must not break the event stream
    events = ev.Events.json_lines(out)
    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
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
