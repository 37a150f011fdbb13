"""The training worker: ``python -m dl_engine train --config cfg.json`` (also under
``torchrun``). Events go to stdout as JSON lines (events.py); everything else that would
print to stdout goes to stderr so the stream stays parseable. SIGTERM/SIGINT stop the run
between batches; the last epoch's checkpoint stays resumable.

Exit codes: 0 done, 2 bad input (an ``error`` event), 130 canceled, 1 crash."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import traceback
from dataclasses import fields
from typing import List, Optional

from .config import TrainConfig


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="Train Deep Learning Model",
                       description="Train a model on export folders; prints JSON-lines events on stdout.")
    p.add_argument("--config", help="JSON file of TrainConfig (flags below override it)")
    for f in fields(TrainConfig):
        if f.name == "extra":
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool",) or isinstance(f.default, bool):
            p.add_argument(flag, type=_bool, default=None, metavar="true|false")
        elif isinstance(f.default, int) or f.name in ("chip_size", "resize_to", "num_workers", "max_steps"):
            p.add_argument(flag, type=int, default=None)
        elif isinstance(f.default, float) or f.name == "learning_rate":
            p.add_argument(flag, type=float, default=None)
        else:
            p.add_argument(flag, default=None)


def _bool(text: str) -> bool:
    return str(text).lower() in ("1", "true", "yes", "y", "t")


def config_from_args(a) -> TrainConfig:
    raw = {}
    if a.config:
        with open(a.config, encoding="utf-8") as f:
            raw = json.load(f)
    for f in fields(TrainConfig):
        value = getattr(a, f.name, None)
        if value is not None:
            raw[f.name] = value
    missing = [n for n in ("in_folder", "out_folder") if not raw.get(n)]
    if missing:
        raise SystemExit(f"error: {', '.join('--' + m.replace('_', '-') for m in missing)} (or --config) required")
    return TrainConfig.from_json(json.dumps(raw))


def run(a) -> int:
    from ..data.errors import DataError
    from .events import Events
    from .loop import TrainingCanceled

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
        from .run import run_training
        run_training(config, events, cancel=lambda: stop["flag"])
        return 0
    except DataError as e:
        events.emit("error", parameter=e.parameter, message=e.message)
        return 2
    except TrainingCanceled as e:
        events.emit("canceled", message=str(e) or "training canceled")
        return 130
    except Exception as e:  # a crash: the traceback is for the log, the event for the user
        traceback.print_exc()
        events.emit("error", parameter="", message=f"the training worker failed: {type(e).__name__}: {e}")
        return 1
    finally:
        sys.stdout = out
