"""The search: trials within the time budget, the leaderboard after every trial, the best
model's package at OUT_MODEL at the end (also when canceled).

Time: the run must end by start + TOTAL_TIME_LIMIT. Each trial gets a slice of what is left
(shared evenly among the trials still to run); its training ends early enough to validate and
write its model folder inside the slice (the write time is measured on each trial), and a
reserve for zipping the best package stays at the end (its weights' size over ZIP_RATE). The
first trial always runs, whatever its slice. Trials write no .dlpk of their own unless
SAVE_EVALUATED_MODELS asks for them: deflating the weights is the slowest part of a package."""

from __future__ import annotations

import os
import shutil
import time
from typing import Callable, List, Optional

from ..package.writer import make_dirs, remove_dirs
from ..events import Events
from .leaderboard import ranked, rows, write_csv
from .plan import Plan
from .publish import publish_best
from .trial import FAILED, SKIPPED, TrialRecord, TrialSpec, model_name, remove_folder, run_trial, trial_name

# Learning rates of the evaluation trials (AdamW, one-cycle); the tuning phase searches
# LR_FACTORS around them.
DEFAULT_LEARNING_RATE = {"pixel": 2e-3, "detection": 1e-3}
# The evaluation trials' backbone per kind of network (else the network's default): EfficientNet-Lite0
# starts from ImageNet weights even offline (they ship in a package), where RESNET34 offline starts
# from random weights; on small data pretrained weights about double the held-out IoU
# (benchmarks/quality_bench.py).
EVALUATION_BACKBONE = {"pixel": "EFFICIENTNET_LITE0"}
# With every network (NETWORKS empty), each evaluated network needs this much of the evaluation
# time; a shorter budget evaluates fewer of them, Train Deep Learning Model's default network
# first: on a short budget, time on one network is worth more than the choice among several
# (benchmarks/quality_bench.py: AutoDL's best against the default single model, same time).
MIN_EVALUATION_SECONDS = 150
LR_FACTORS = (0.2, 5.0)
# An evaluation trial this long (seconds) spends a little of it on the learning-rate finder
# (up to 100 steps, train/lr_finder.py) instead of taking the default rate.
LR_FINDER_SECONDS = 600
# BASIC with several networks: the share of the budget that evaluates them; the rest continues
# the best one from its weights (time on one network counts more than the choice of network
# on small budgets: benchmarks/README.md).
BASIC_EVALUATION_SHARE = 0.5
CONTINUE_LR_FACTOR = 0.5  # the continuation's rate: a warm restart, gentler than the first cycle
ZIP_RATE = 25e6  # bytes/s deflate reaches on float weights (measured 13 MB/s on a busy 2-core machine, 30 idle)


class Search:
    def __init__(self, plan: Plan, events: Events, cancel: Callable[[], bool]):
        self.plan, self.events, self.cancel = plan, events, cancel
        self.start = time.time()
        self.end = self.start + plan.seconds
        self.records: List[TrialRecord] = []
        self.best: Optional[TrialRecord] = None
        self.names: set = set()
        self.work = os.path.join(os.path.dirname(plan.out_model), f".{plan.stem}.autodl-{os.getpid()}")
        # estimates, replaced by what each trial measures
        self.setup_seconds, self.write_seconds, self.publish_seconds = 3.0, 3.0, 2.0
        self.batches = {}  # (network, backbone) -> the automatic batch size found
        self.created: List[str] = []  # folders made for OUT_MODEL, removed again if no model comes of it
        self.left_out: List[TrialSpec] = []  # networks the budget is too short for (affordable)

    # ---- time ----------------------------------------------------------------------------------

    def reserve(self) -> float:
        """Kept at the end for the final package."""
        return 1.0 + 1.2 * self.publish_seconds

    def time_left(self, until: Optional[float] = None) -> float:
        end = self.end - self.reserve() if until is None else min(until, self.end - self.reserve())
        return end - time.time()

    def min_trial(self) -> float:
        return self.setup_seconds + self.write_seconds + 2.0

    def percent(self) -> float:
        return min(99.0, 100.0 * (time.time() - self.start) / max(self.plan.seconds, 1e-9))

    # ---- trials --------------------------------------------------------------------------------

    def default_spec(self, network) -> TrialSpec:
        spec = TrialSpec(network=network.keyword,
                         backbone=EVALUATION_BACKBONE.get(network.kind, network.default_backbone),
                         learning_rate=DEFAULT_LEARNING_RATE[self.plan.kind],
                         batch_upper=int(self.plan.config.max_batch_size))
        return self.with_pretrained(spec)

    def with_pretrained(self, spec: TrialSpec) -> TrialSpec:
        """PRETRAINED_MODEL: its network starts from it, with its backbone."""
        if self.plan.pretrained and self.plan.pretrained[1] == spec.network:
            if spec.phase == "evaluate":
                spec.backbone = self.plan.pretrained[2]
            if spec.backbone.upper() == self.plan.pretrained[2].upper():
                spec.pretrained_model = self.plan.pretrained[0]
        return spec

    def run_one(self, spec: TrialSpec, seconds: float,
                on_epoch: Optional[Callable[[int, Optional[float]], bool]] = None) -> Optional[TrialRecord]:
        """One trial in at most ``seconds`` (and before the end of the budget)."""
        if self.cancel():
            return None
        t0 = time.time()
        end = min(t0 + seconds, self.end - self.reserve())
        deadline = end - 1.2 * self.write_seconds
        name = trial_name(spec, self.names)
        record = TrialRecord(number=len(self.records) + 1, name=name, spec=spec)
        rate = "found by the finder" if spec.learning_rate is None else f"{spec.learning_rate:.2g}"
        self.events.log(f"trial {record.number}: {record.model_name} with {spec.backbone}, learning rate "
                        f"{rate}, augmentation {spec.augmentation}"
                        + (f", from {os.path.basename(spec.pretrained_model)}" if spec.pretrained_model else "")
                        + f" ({spec.phase}; {end - t0:.0f} s)")
        if not os.path.isdir(self.work):
            self.created += make_dirs(self.work)
        run_trial(self.plan, record, os.path.join(self.work, name), deadline, self._relay(name), self.cancel,
                  on_epoch)
        self.records.append(record)
        self._learn_times(record)
        if record.status == FAILED:
            remove_folder(os.path.join(self.work, name))
            self.events.warning(f"trial {record.number} ({name}) failed: {record.message}")
        else:
            self.batches[(spec.network, spec.backbone.upper())] = record.batch_size
            value = "n/a" if record.value is None else f"{record.value:.4f}"
            self.events.log(f"trial {record.number} ({name}): {self.plan.monitor.lower()} {value} after "
                            f"{record.epochs} epoch(s), batch size {record.batch_size}, {record.seconds:.0f} s"
                            + (f" ({record.status})" if record.status != "completed" else ""))
            self._keep(record)
        self._write_leaderboard()
        return record

    def _keep(self, record: TrialRecord) -> None:
        """Tracks the best; the other trials' folders are kept only when asked for."""
        if self.best is None or (record.value is not None
                                 and ranked([r for r in self.records if r.trained])[0] is record):
            old, self.best = self.best, record
            self.publish_seconds = _weights_bytes(record.folder) / ZIP_RATE
            self.events.log(f"best so far: {record.name}")
            if old is not None and not self.plan.config.save_evaluated_models:
                remove_folder(old.folder)
        elif not self.plan.config.save_evaluated_models:
            remove_folder(record.folder)

    def publish(self) -> None:
        t0 = time.time()
        publish_best(self.best, self.plan, self._table(), self.work)
        self.events.log(f"best model written in {time.time() - t0:.1f} s: {self.plan.out_model}")

    def _table(self):
        return rows(self.records, self.plan.monitor)

    def _write_leaderboard(self) -> None:
        write_csv(self.plan.leaderboard, self._table())

    def _learn_times(self, record: TrialRecord) -> None:
        if record.setup_seconds:
            self.setup_seconds = record.setup_seconds
        if record.write_seconds:
            self.write_seconds = max(0.5, record.write_seconds)

    def _relay(self, name: str) -> Events:
        """The trial's events, in the AutoDL run's terms: progress over the whole budget, log
        lines and epoch metrics marked with the trial; its own result is not the run's."""
        parent = self.events

        def sink(event: dict) -> None:
            kind = event.get("event")
            fields = {k: v for k, v in event.items() if k != "event"}
            if kind == "progress":
                parent.progress(self.percent(), f"{name}: {fields.get('message', '')}")
            elif kind == "log":
                parent.log(f"{name}: {fields.get('message', '')}", fields.get("level", "info"))
            elif kind == "metric":
                parent.metric(**{**fields, "trial": name, "epochs": None})
        return Events(sink=sink)

    # ---- phases --------------------------------------------------------------------------------

    def evaluate(self, specs: List[TrialSpec], until: float) -> List[TrialRecord]:
        """Each spec in turn, sharing the time until ``until`` evenly. Evaluating every network
        comes first: when that time is too short for a trial, the trial takes what it needs
        from the rest of the budget."""
        done = []
        for i, spec in enumerate(specs):
            if self.cancel():
                break
            share = self.time_left(until) / (len(specs) - i)
            if share < self.min_trial():
                share = min(self.min_trial(), self.time_left() / (len(specs) - i))
            if self.records and share < self.min_trial():
                self._skip(specs[i:])
                break
            if share >= LR_FINDER_SECONDS and spec.phase == "evaluate":
                spec.learning_rate = None
            record = self.run_one(spec, share)
            if record is not None:
                done.append(record)
        return done

    def affordable(self, specs: List[TrialSpec], evaluation_seconds: float) -> List[TrialSpec]:
        """Every network the user named; of every network (NETWORKS empty), as many as get
        MIN_EVALUATION_SECONDS each (at least one). The others are said in the log now and listed
        as not evaluated by ``not_evaluated``."""
        if self.plan.config.networks or len(specs) < 2:
            return specs
        count = max(1, min(len(specs), int(evaluation_seconds // MIN_EVALUATION_SECONDS)))
        if count < len(specs):
            self.left_out = specs[count:]
            self.events.log(f"{self.plan.seconds / 60:.1f} min is too short to compare every network (about "
                            f"{MIN_EVALUATION_SECONDS / 60:.1f} min each): "
                            f"{', '.join(model_name(s.network) for s in self.left_out)} not evaluated (NETWORKS "
                            "chooses the networks)")
        return specs[:count]

    def not_evaluated(self) -> None:
        """The leaderboard's rows of the networks ``affordable`` left out."""
        for spec in self.left_out:
            self.records.append(TrialRecord(number=len(self.records) + 1, name=trial_name(spec, self.names),
                                            spec=spec, status=SKIPPED, message="no time left to evaluate it: a "
                                            "longer TOTAL_TIME_LIMIT compares more networks"))
        if self.left_out:
            self._write_leaderboard()
        self.left_out = []

    def _skip(self, specs: List[TrialSpec]) -> None:
        """Networks no time was left for: a warning, and leaderboard rows that say so."""
        self.events.warning(f"time is up: {', '.join(model_name(s.network) for s in specs)} not evaluated (a trial "
                            f"needs about {self.min_trial():.0f} s here; give a longer TOTAL_TIME_LIMIT)")
        for spec in specs:
            self.records.append(TrialRecord(number=len(self.records) + 1, name=trial_name(spec, self.names),
                                            spec=spec, status=SKIPPED, message="no time left to evaluate it"))
        self._write_leaderboard()

    def continue_best(self, until: float) -> Optional[TrialRecord]:
        """The best trial trains on from its weights, with a new schedule, until ``until``."""
        best = self.best
        if best is None or best.value is None or self.cancel() or self.time_left(until) < self.min_trial():
            return None
        emd = os.path.join(best.folder, f"{best.name}.emd")
        spec = TrialSpec(network=best.spec.network, backbone=best.spec.backbone,
                         learning_rate=(best.learning_rate or best.spec.learning_rate) * CONTINUE_LR_FACTOR,
                         augmentation=best.spec.augmentation, batch_upper=best.batch_size or best.spec.batch_upper,
                         phase="continue", pretrained_model=emd)
        self.events.log(f"continuing {best.name}, the best of {sum(r.trained for r in self.records)}, for the "
                        "time left")
        return self.run_one(spec, self.time_left(until))

    # ---- the end -------------------------------------------------------------------------------

    def finish(self) -> None:
        """SAVE_EVALUATED_MODELS: the trials' packages to <stem>_evaluated/; the final package
        with the whole leaderboard; the working folder removed."""
        kept = [r for r in self.records if r.folder and os.path.isdir(r.folder)]
        if self.plan.config.save_evaluated_models and kept:
            if os.path.isdir(self.plan.evaluated):
                shutil.rmtree(self.plan.evaluated)
            os.replace(self.work, self.plan.evaluated)
            for r in kept:
                r.folder = os.path.join(self.plan.evaluated, r.name)
                r.dlpk = os.path.join(r.folder, f"{r.name}.dlpk")
        else:  # the others go with the working folder; the best is OUT_MODEL
            for r in self.records:
                r.dlpk = self.plan.out_model if r is self.best else None
        if self.best is not None:
            self.publish()
        self._write_leaderboard()

    def cleanup(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        if self.best is None:
            remove_dirs([d for d in self.created if d != self.work])


def _weights_bytes(folder: Optional[str]) -> int:
    if not folder or not os.path.isdir(folder):
        return 0
    return sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder) if n.endswith(".pth"))

