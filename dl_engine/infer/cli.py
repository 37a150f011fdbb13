"""The inference worker: ``python -m dl_engine infer --config cfg.json`` (flags override the
file). Events go to stdout as JSON lines (dl_engine/events.py): ``log``, ``progress``, ``result``
(InferResult.event()), ``error`` (``parameter``, ``message``), ``canceled``; anything else a
library prints goes to stderr. SIGTERM/SIGINT stop the run at the next batch, leaving no output.

Exit codes: 0 done, 2 bad input (an ``error`` event naming the parameter), 130 canceled, 1 crash."""

from __future__ import annotations

from ..worker import add_config_flags, config_from_args as _config_from_args, leave, run_job
from .config import TOOLS, InferConfig

def add_parser(sub) -> None:
    p = sub.add_parser("infer", help="Classify Pixels / Detect Objects / Classify Objects Using Deep Learning",
                       description="Apply a trained model (.emd/.dlpk) to a raster; prints JSON-lines events on "
                                   "stdout.")
    p.add_argument("--config", help="JSON file of InferConfig (flags below override it)")
    add_config_flags(p, InferConfig, ints=("num_workers",), floats=("cell_size",), special={
        "tool": dict(choices=TOOLS),
        "extent": dict(type=float, nargs=4, metavar=("XMIN", "YMIN", "XMAX", "YMAX"))})


def config_from_args(a) -> InferConfig:
    return _config_from_args(InferConfig, a, ("tool", "in_raster", "model", "out_path"))


def run(a) -> int:
    def job(events, cancel) -> None:
        from .run import run_inference
        run_inference(config_from_args(a), events, cancel=cancel)

    return leave(run_job(job, "inference"))
