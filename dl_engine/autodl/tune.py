"""ADVANCED's second half: Optuna tunes the two best networks of the first half.

The search space: the network (one of the two), its backbone (BACKBONES), the learning rate
(LR_FACTORS around the rates the first half used), the batch size (the largest that fits, or half of it) and
the augmentation strength (NONE, DEFAULT, STRONG). The first half's trials of those networks
enter the study as finished trials, with their per-epoch curves, so the sampler starts from
what is known and the median pruner compares new trials with them: a trial whose metric
trails the median of earlier trials at the same epoch is stopped (its best epoch still
counts)."""

from __future__ import annotations

from typing import List

from .leaderboard import ranked
from .search import DEFAULT_LEARNING_RATE, LR_FACTORS, Search
from .trial import AUGMENTATIONS, FAILED, TrialRecord, TrialSpec, model_name

BACKBONES = ("EFFICIENTNET_LITE0", "RESNET18", "RESNET34", "RESNET50", "EFFICIENTNET_B0", "MOBILENET_V2", "DENSENET121", "CONVNEXT_TINY")
BATCH_SCALES = (1.0, 0.5)
TOP = 2


def tune(search: Search, evaluated: List[TrialRecord], until: float) -> List[TrialRecord]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    done = [r for r in ranked(evaluated) if r.trained and r.value is not None]
    top: List[str] = []
    for r in done:
        if r.spec.network not in top:
            top.append(r.spec.network)
    top = top[:TOP]
    if not top:
        search.events.warning("tuning skipped: no network of the first half produced a metric to compare")
        return []
    # around the rates the first half used (the default, or what the finder found)
    rates = [r.learning_rate or DEFAULT_LEARNING_RATE[search.plan.kind] for r in done if r.spec.network in top]
    lr_range = (min(rates) * LR_FACTORS[0], max(rates) * LR_FACTORS[1])
    backbones = {n: _backbones(search, n) for n in top}
    space = {"network": optuna.distributions.CategoricalDistribution(top),
             "learning_rate": optuna.distributions.FloatDistribution(*lr_range, log=True),
             "batch_scale": optuna.distributions.CategoricalDistribution(BATCH_SCALES),
             "augmentation": optuna.distributions.CategoricalDistribution(AUGMENTATIONS),
             **{f"backbone_{n}": optuna.distributions.CategoricalDistribution(backbones[n]) for n in top}}
    # no pruning in a trial's first third (by the first half's epoch counts): early epochs of a
    # one-cycle schedule say little about where a trial ends
    epochs = sorted(r.epochs for r in done)
    warmup = max(1, epochs[len(epochs) // 2] // 3)
    study = optuna.create_study(direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=search.plan.config.seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=warmup))
    for r in done:
        if r.spec.network in top:
            study.add_trial(_known(r, space))
    search.events.log(f"tuning {', '.join(model_name(n) for n in top)}: backbones, learning rate, batch size and augmentation with Optuna")

    planned = max(2, len(search.plan.networks))
    share = search.time_left(until) / planned
    tuned: List[TrialRecord] = []
    while not search.cancel():
        left = search.time_left(until)
        if left < search.min_trial():
            break
        seconds = left if left - share < search.min_trial() else share
        trial = study.ask()
        spec = _suggest(search, trial, top, backbones, lr_range)

        def report(epoch: int, value, trial=trial) -> bool:
            if value is None:
                return False
            trial.report(float(value), epoch)
            return trial.should_prune()

        record = search.run_one(spec, seconds, on_epoch=report)
        if record is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            break
        tuned.append(record)
        if record.status == FAILED or record.value is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        elif record.status == "pruned":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, record.value)
    return tuned


def _backbones(search: Search, network: str) -> List[str]:
    from ..models.registry import get_spec

    out = list(BACKBONES)
    for extra in (get_spec(network).default_backbone,
                  search.plan.pretrained[2] if search.plan.pretrained and search.plan.pretrained[1] == network
                  else None):
        if extra and extra.upper() not in out:
            out.append(extra.upper())
    return out


def _known(record: TrialRecord, space):
    import optuna

    s = record.spec
    params = {"network": s.network, f"backbone_{s.network}": s.backbone.upper(), "augmentation": s.augmentation,
              "batch_scale": 1.0, "learning_rate": record.learning_rate}
    return optuna.trial.create_trial(params=params, distributions={k: space[k] for k in params}, value=record.value,
                                     intermediate_values={i: v for i, v in enumerate(record.curve) if v is not None})


def _suggest(search: Search, trial, top, backbones, lr_range) -> TrialSpec:
    network = trial.suggest_categorical("network", top)
    backbone = trial.suggest_categorical(f"backbone_{network}", backbones[network])
    learning_rate = trial.suggest_float("learning_rate", *lr_range, log=True)
    scale = trial.suggest_categorical("batch_scale", BATCH_SCALES)
    augmentation = trial.suggest_categorical("augmentation", AUGMENTATIONS)
    known = search.batches.get((network, backbone)) or int(search.plan.config.max_batch_size)
    spec = TrialSpec(network=network, backbone=backbone, learning_rate=learning_rate, augmentation=augmentation,
                     batch_upper=max(2, int(known * scale)), phase="tune")
    return search.with_pretrained(spec)

