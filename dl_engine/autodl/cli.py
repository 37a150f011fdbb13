"""The AutoDL worker: ``python -m dl_engine autodl --config cfg.json`` (flags override the
file). Events go to stdout as JSON lines, as the training worker's; the ``result`` event
carries ``out_model_file``, ``leaderboard``, ``best``, ``trials`` and ``evaluated_folder``.
SIGTERM/SIGINT end the running trial gracefully, keep the best model so far at OUT_MODEL and
report it in the ``canceled`` event.

Exit codes: 0 done, 2 bad input (an ``error`` event), 130 canceled, 1 crash."""

from __future__ import annotations

from ..worker import add_config_flags, config_from_args as _config_from_args, leave, run_job
from .config import AutoDLConfig


def _names(text: str):
    return [n.strip() for n in str(text).replace(";", ",").split(",") if n.strip()]


def add_parser(sub) -> None:
    p = sub.add_parser("autodl", help="Train Using AutoDL",
                       description="Search networks and hyper-parameters within a time budget; prints JSON-lines "
                                   "events on stdout.")
    p.add_argument("--config", help="JSON file of AutoDLConfig (flags below override it)")
    add_config_flags(p, AutoDLConfig, ints=("num_workers",), special={"networks": dict(
        type=_names, metavar="NAME,NAME",
        help="arcgis.learn class names or MODEL_TYPE keywords (default: all that fit the data)")})


def config_from_args(a) -> AutoDLConfig:
    return _config_from_args(AutoDLConfig, a, ("in_data", "out_model"))


def run(a) -> int:
    def job(events, cancel) -> None:
        from .run import run_autodl
        run_autodl(config_from_args(a), events, cancel)

    return leave(run_job(job, "AutoDL"))
