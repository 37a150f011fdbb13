"""The training worker: ``python -m dl_engine train --config cfg.json`` (also under
``torchrun``). Events go to stdout as JSON lines (events.py); everything else that would
print to stdout goes to stderr so the stream stays parseable. SIGTERM/SIGINT stop the run
between batches; the last epoch's checkpoint stays resumable.

Exit codes: 0 done, 2 bad input (an ``error`` event), 130 canceled, 1 crash."""

from __future__ import annotations

from ..worker import add_config_flags, config_from_args as _config_from_args, leave, run_job
from .config import TrainConfig


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="Train Deep Learning Model",
                       description="Train a model on export folders; prints JSON-lines events on stdout.")
    p.add_argument("--config", help="JSON file of TrainConfig (flags below override it)")
    add_config_flags(p, TrainConfig, ints=("chip_size", "resize_to", "num_workers", "max_steps"),
                     floats=("learning_rate",))


def config_from_args(a) -> TrainConfig:
    return _config_from_args(TrainConfig, a, ("in_folder", "out_folder"))


def run(a) -> int:
    def job(events, cancel) -> None:
        from .run import run_training
        run_training(config_from_args(a), events, cancel)

    return leave(run_job(job, "training"))
