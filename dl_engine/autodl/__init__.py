"""Train Using AutoDL: a time-budgeted search over networks (and, in ADVANCED mode, backbones
and hyper-parameters with Optuna) whose trials are ordinary training runs of dl_engine.train.

config.py (AutoDLConfig) → plan.py (checks) → search.py (trials within the budget, best kept
at OUT_MODEL) with trial.py (one training run) and tune.py (ADVANCED's Optuna phase) →
leaderboard.py, publish.py (the best package with the leaderboard); run.py ties them
together, worker.py is ``python -m dl_engine autodl``."""

from .config import AutoDLConfig, AutoDLResult

__all__ = ["AutoDLConfig", "AutoDLResult"]
