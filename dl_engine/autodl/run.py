"""Train Using AutoDL, end to end: check the input, run the trials within the time budget
(BASIC: every network in the first half — its evaluation backbone, Train Deep Learning Model's
default network first, as many as the budget gives time to compare — the best of them trained on
from its weights in the second; a budget too short to compare networks trains the default network
with Train Deep Learning Model's own defaults, the budget its cap: the default single model; ADVANCED: the same first half, Optuna tuning of the best two in
the second), write the best package at OUT_MODEL and the
leaderboard. Used by the worker process (``python -m dl_engine autodl``) and in-process.

Cancel (``cancel()`` turning true) ends the running trial as its deadline would (its best
epoch is written), publishes the best model so far and raises Canceled, whose message
says where it is."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, replace
from typing import Callable, Optional

from ..errors import Canceled, InputError
from ..events import Events, autodl_files
from .config import AutoDLConfig, AutoDLResult
from .leaderboard import ranked, rows
from .plan import make_plan
from .search import BASIC_EVALUATION_SHARE, Search
from .trial import DEFAULTS_PHASE, FAILED


def run_autodl(config: AutoDLConfig, events: Optional[Events] = None,
               cancel: Callable[[], bool] = lambda: False) -> AutoDLResult:
    config.check()
    events = events or Events()
    plan = make_plan(config)
    # the input is checked: the history beside OUT_MODEL too, once the run has made its folder
    events.record_to(*autodl_files(plan.out_model), create=False)
    names = ", ".join(s.model_name for s in plan.networks)
    events.log(f"AutoDL {plan.config.autodl_mode}: {names} on {plan.chips} {plan.data_format} chips, "
               f"{plan.seconds / 60:.1f} min, ranked by {plan.monitor.lower()}")
    search = Search(plan, events, cancel)
    try:
        specs = [search.default_spec(n) for n in default_network_first(plan.networks)]
        if plan.config.autodl_mode == "ADVANCED":
            from .tune import tune

            half = search.start + plan.seconds / 2
            evaluated = search.evaluate(search.affordable(specs, plan.seconds / 2), half)
            search.not_evaluated()
            if not search.cancel():
                tune(search, evaluated, search.end)
        else:
            chosen = search.affordable(specs, plan.seconds * BASIC_EVALUATION_SHARE)
            if len(chosen) > 1:
                search.evaluate(chosen, search.start + plan.seconds * BASIC_EVALUATION_SHARE)
                search.not_evaluated()
                search.continue_best(search.end)
            else:  # one network: all the time is its own
                if len(chosen) < len(specs):  # too short to compare: the default single model, capped by time
                    chosen = [replace(chosen[0], phase=DEFAULTS_PHASE, learning_rate=None)]
                search.evaluate(chosen, search.end)
                search.not_evaluated()
        if search.best is None:
            _nothing(search, cancel)
        search.finish()
    finally:
        search.cleanup()
    table = rows(search.records, plan.monitor)
    best_row = next(row for row in table if row["trial"] == search.best.name)
    elapsed = time.time() - search.start
    trained = sum(r.trained for r in search.records)
    events.log(f"AutoDL {'canceled' if cancel() else 'done'} after {elapsed:.0f} s of {plan.seconds:.0f}: "
               f"{trained} trial(s); best {best_row['network']} {best_row['backbone']} "
               f"({plan.monitor.lower()} {best_row['value']}) → {plan.out_model}; leaderboard {plan.leaderboard}")
    result = AutoDLResult(out_model_file=plan.out_model, leaderboard=plan.leaderboard, best=best_row, trials=table,
                          evaluated_folder=plan.evaluated if plan.config.save_evaluated_models else None)
    if cancel():
        raise Canceled(f"AutoDL canceled after {trained} trial(s); the best model so far "
                             f"({best_row['network']} {best_row['backbone']}, {plan.monitor.lower()} "
                             f"{best_row['value']}) is {plan.out_model}; leaderboard: {plan.leaderboard}")
    events.progress(100.0, "done")
    events.emit("result", **asdict(result))
    return result


def default_network_first(networks):
    """Train Deep Learning Model's default network (MODEL_TYPE) first, the others in their order:
    the network evaluated first is the one a user would have trained."""
    from ..train.config import TrainConfig

    default = TrainConfig.__dataclass_fields__["model_type"].default
    return sorted(networks, key=lambda spec: spec.keyword != default)


def _nothing(search: Search, cancel) -> None:
    """No trial gave a model: say why, leave nothing behind."""
    search.events.discard_records()
    if os.path.isfile(search.plan.leaderboard):
        os.remove(search.plan.leaderboard)
    if cancel():
        raise Canceled("AutoDL canceled before a model finished training; nothing was written")
    failed = [r for r in ranked(search.records) if r.status == FAILED]
    if failed:
        raise InputError("NETWORKS", "no network could be trained: " + "; ".join(
            f"{r.model_name} {r.spec.backbone}: {r.message}" for r in failed))
    raise InputError("TOTAL_TIME_LIMIT", f"{search.plan.config.total_time_limit:g} h is too short to train a "
                                        "network on this data; give a longer time limit")
