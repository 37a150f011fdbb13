"""One AutoDL trial: an ordinary training run of the engine (run_training) with a deadline,
reporting into the AutoDL run's events and ending as a leaderboard row."""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass, field, replace
from typing import Callable, List, Optional

from ..errors import InputError
from ..models.registry import get_spec
from ..train.config import TrainConfig
from ..train.control import TrainControl
from ..events import Events
from ..errors import Canceled
from ..train.metrics import monitor_key
from .plan import Plan

MAX_EPOCHS = 10_000  # time ends a trial, not epochs
# Augmentation strengths the tuning phase chooses from. STRONG adds zoom and radiometric
# changes to the dihedral turns (no turns or flips for PIXEL_SPACE chips, where up is up).
AUGMENTATIONS = ("NONE", "DEFAULT", "STRONG")
STRONG_MAP_SPACE = "dihedral; zoom 1,1.25 0.5; brightness 0.4,0.6 0.5; contrast 0.8,1.25 0.5"
STRONG_PIXEL_SPACE = "zoom 1,1.25 0.5; brightness 0.4,0.6 0.5; contrast 0.8,1.25 0.5"

# The phase of a trial that trains with Train Deep Learning Model's own defaults (the default single
# model: learning-rate finder, FREEZE, early stopping, MAX_EPOCHS and BATCH_SIZE), its deadline a cap.
DEFAULTS_PHASE = "defaults"

# statuses in the leaderboard
COMPLETED, FAILED, SKIPPED = "completed", "failed", "skipped"  # skipped: no time was left for it


@dataclass
class TrialSpec:
    network: str  # MODEL_TYPE keyword
    backbone: str  # BACKBONE_MODEL keyword
    learning_rate: Optional[float]  # None: the learning-rate finder chooses (long evaluation trials)
    augmentation: str = "DEFAULT"  # one of AUGMENTATIONS
    batch_upper: int = 64  # the automatic batch size's ceiling
    # evaluate (the first half), continue (BASIC's second half), tune (ADVANCED's) or DEFAULTS_PHASE
    phase: str = "evaluate"
    pretrained_model: Optional[str] = None


@dataclass
class TrialRecord:
    number: int
    name: str  # AutoDL_<ModelName>_<backbone>[_n], the package's folder and file names
    spec: TrialSpec
    status: str = COMPLETED  # completed, time limit, early stopping, pruned, stopped, failed
    value: Optional[float] = None  # the ranking metric at the best epoch
    valid_loss: Optional[float] = None
    epochs: int = 0
    best_epoch: Optional[int] = None  # from 1
    batch_size: Optional[int] = None
    learning_rate: Optional[float] = None  # the one used (the finder's when the spec left it open)
    seconds: float = 0.0
    folder: Optional[str] = None  # the trial's package folder (None when it failed)
    dlpk: Optional[str] = None
    message: str = ""
    curve: List[Optional[float]] = field(default_factory=list)  # the ranking metric per epoch
    setup_seconds: float = 0.0  # from start to the first epoch
    write_seconds: float = 0.0  # from the end of training to the package

    @property
    def trained(self) -> bool:
        return self.status not in (FAILED, SKIPPED)

    @property
    def model_name(self) -> str:
        return model_name(self.spec.network)


def model_name(network: str) -> str:
    """arcgis.learn's class name of a MODEL_TYPE keyword (UNET → UnetClassifier)."""
    return get_spec(network).model_name


def trial_name(spec: TrialSpec, taken: set) -> str:
    from ..models.backbones import resolve_backbone

    try:
        backbone = resolve_backbone(spec.backbone)[0]
    except InputError:
        backbone = spec.backbone.lower()
    base = f"AutoDL_{model_name(spec.network)}_{backbone}".replace(":", "_").replace("/", "_")
    name, n = base, 1
    while name.lower() in taken:
        n += 1
        name = f"{base}_{n}"
    taken.add(name.lower())
    return name


def train_config(plan: Plan, spec: TrialSpec, folder: str) -> TrainConfig:
    c = plan.config
    if spec.phase == DEFAULTS_PHASE:
        return TrainConfig(in_folder=plan.in_data, out_folder=folder, model_type=spec.network, backbone=spec.backbone,
                           pretrained_model=spec.pretrained_model, validation_percentage=c.validation_percentage,
                           device=c.device, num_workers=c.num_workers, precision=c.precision, seed=c.seed,
                           write_dlpk=bool(c.save_evaluated_models))
    strong = spec.augmentation == "STRONG"
    return TrainConfig(
        in_folder=plan.in_data, out_folder=folder, model_type=spec.network, max_epochs=MAX_EPOCHS,
        batch_size=max(2, int(spec.batch_upper)), auto_batch_size=True, learning_rate=spec.learning_rate,
        backbone=spec.backbone, pretrained_model=spec.pretrained_model, validation_percentage=c.validation_percentage,
        # no early stopping: the schedule is fitted to the trial's time and the best gains come as
        # the rate anneals at its end (measured: 5 epochs of patience ended trials at a third of
        # their time, benchmarks/README.md); trailing trials are pruned in ADVANCED instead
        stop_training=False, freeze=False, augmentation="CUSTOM" if strong else spec.augmentation,
        augmentation_parameters=(STRONG_PIXEL_SPACE if plan.image_space.upper() == "PIXEL_SPACE"
                                 else STRONG_MAP_SPACE) if strong else None,
        monitor=plan.monitor, device=c.device, num_workers=c.num_workers, precision=c.precision, seed=c.seed,
        write_dlpk=bool(c.save_evaluated_models))  # otherwise only the best is zipped, once, at OUT_MODEL


def run_trial(plan: Plan, record: TrialRecord, folder: str, deadline: float, events: Events,
              stop: Callable[[], bool], on_epoch: Optional[Callable[[int, Optional[float]], bool]] = None
              ) -> TrialRecord:
    """Train ``record.spec`` into ``folder`` until ``deadline`` (time.time()); fills the record.

    A failure of this network (an out-of-memory it cannot back off from, an argument it does
    not accept, a crash) fails the trial, not the search; bad data fails the search."""
    from ..train.run import run_training

    key = monitor_key(plan.monitor)
    t0 = time.time()
    spec = record.spec
    attempt_batch = spec.batch_upper
    for attempt in range(3):  # out of GPU memory during training: halve the batch and try again
        control = TrainControl(deadline=deadline, stop=stop, on_epoch=_curve_hook(record, on_epoch), advise=False)
        record.curve = []
        try:
            result = run_training(train_config(plan, replace(spec, batch_upper=attempt_batch), folder), events,
                                  control=control)
            break
        except Canceled:
            raise
        except InputError as e:
            if e.parameter == "IN_FOLDER":  # the data, not the network: no other trial would do better
                raise InputError("IN_DATA", e.message) from None
            if e.parameter == "PRETRAINED_MODEL":
                raise
            return _failed(record, t0, f"{e.parameter}: {e.message}")
        except Exception as e:  # noqa: BLE001 - one network's failure must not end the search
            if _out_of_memory(e) and (control.batch_size or attempt_batch) > 2 and time.time() < deadline:
                attempt_batch = max(2, (control.batch_size or attempt_batch) // 2)
                events.warning(f"{record.name}: out of GPU memory; trying again with batch size {attempt_batch}")
                _free_memory()
                from ..train import checkpoint
                checkpoint.remove(folder)  # another run in the same folder: the failed one's checkpoint goes
                continue
            import traceback
            traceback.print_exc()  # the worker's stderr (the log); the leaderboard gets one line
            return _failed(record, t0, f"{type(e).__name__}: {e}")
        finally:
            _free_memory()
    else:
        return _failed(record, t0, "out of GPU memory even at batch size 2")
    history = result.history
    best = history[result.best_epoch] if 0 <= result.best_epoch < len(history) else {}
    record.value = _number(best.get(key))
    record.valid_loss = _number(best.get("valid_loss"))
    record.epochs = len(history)
    record.best_epoch = result.best_epoch + 1 if history else None
    record.batch_size = result.batch_size
    record.learning_rate = result.learning_rate
    record.status = result.stop_reason or COMPLETED
    record.folder = result.out_folder
    record.dlpk = result.out_model_file or None
    record.seconds = time.time() - t0
    if control.training_started:
        record.setup_seconds = control.training_started - t0
    if control.training_ended:
        record.write_seconds = time.time() - control.training_ended
    return record


def _curve_hook(record: TrialRecord, on_epoch):
    def hook(epoch: int, value: Optional[float]) -> bool:
        record.curve.append(value)
        return bool(on_epoch(epoch, value)) if on_epoch is not None else False
    return hook


def _failed(record: TrialRecord, t0: float, message: str) -> TrialRecord:
    record.status, record.message, record.seconds = FAILED, message, time.time() - t0
    return record


def _number(value) -> Optional[float]:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if value == value else None


def _out_of_memory(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass


def remove_folder(folder: Optional[str]) -> None:
    if folder and os.path.isdir(folder):
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
