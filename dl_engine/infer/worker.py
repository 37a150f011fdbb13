"""The inference worker: ``python -m dl_engine infer --config cfg.json`` (flags override the
file). Events go to stdout as JSON lines (train/events.py): ``log``, ``progress``, ``result``
(InferResult.event()), ``error`` (``parameter``, ``message``), ``canceled``; anything else a
library prints goes to stderr. SIGTERM/SIGINT stop the run at the next batch, leaving no output.

Exit codes: 0 done, 2 bad input (an ``error`` event naming the parameter), 130 canceled, 1 crash."""

from __future__ import annotations

import json
import os
import signal
import sys
import traceback
from dataclasses import fields

from .config import TOOLS, InferConfig

_LISTS = ("extent",)


def add_parser(sub) -> None:
    p = sub.add_parser("infer", help="Classify Pixels / Detect Objects / Classify Objects Using Deep Learning",
                       description="Apply a trained model (.emd/.dlpk) to a raster; prints JSON-lines events on "
                                   "stdout.")
    p.add_argument("--config", help="JSON file of InferConfig (flags below override it)")
    for f in fields(InferConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "tool":
            p.add_argument(flag, choices=TOOLS, default=None)
        elif f.name in _LISTS:
            p.add_argument(flag, type=float, nargs=4, default=None, metavar=("XMIN", "YMIN", "XMAX", "YMAX"))
        elif isinstance(f.default, bool):
            p.add_argument(flag, type=_bool, default=None, metavar="true|false")
        elif f.name in ("num_workers",):
            p.add_argument(flag, type=int, default=None)
        elif isinstance(f.default, float) or f.name == "cell_size":
            p.add_argument(flag, type=float, default=None)
        else:
            p.add_argument(flag, default=None)


def _bool(text: str) -> bool:
    return str(text).lower() in ("1", "true", "yes", "y", "t")


def config_from_args(a) -> InferConfig:
    raw = {}
    if a.config:
        with open(a.config, encoding="utf-8") as f:
            raw = json.load(f)
    for f in fields(InferConfig):
        value = getattr(a, f.name, None)
        if value is not None:
            raw[f.name] = value
    missing = [n for n in ("tool", "in_raster", "model", "out_path") if not raw.get(n)]
    if missing:
        raise SystemExit(f"error: {', '.join('--' + m.replace('_', '-') for m in missing)} (or --config) required")
    return InferConfig.from_json(json.dumps(raw))


def run(a) -> int:
    code = _run(a)
    if _is_process_entry():
        # Native libraries take ~1.5 s to tear down (torch, GDAL); everything is written and
        # closed by now, so leave at once: a cancel from QGIS ends the process promptly.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _is_process_entry() -> bool:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return getattr(spec, "name", None) == "dl_engine.__main__"


def _run(a) -> int:
    from ..data.errors import DataError
    from ..train.events import Events
    from .job import InferenceCanceled

    out = sys.stdout
    sys.stdout = sys.stderr  # library prints must not break the event stream
    events = Events.json_lines(out)
    stop = {"flag": False}

    def on_signal(signum, frame):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        config = config_from_args(a)
        from .run import run_inference
        run_inference(config, events, cancel=lambda: stop["flag"])
        return 0
    except DataError as e:
        events.emit("error", parameter=e.parameter, message=e.message)
        return 2
    except InferenceCanceled as e:
        events.emit("canceled", message=str(e) or "inference canceled")
        return 130
    except Exception as e:  # a crash: the traceback is for the log, the event for the user
        traceback.print_exc()
        events.emit("error", parameter="", message=f"the inference worker failed: {type(e).__name__}: {e}")
        return 1
    finally:
        sys.stdout = out
