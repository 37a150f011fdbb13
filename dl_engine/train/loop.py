"""The training loop: AdamW with a one-cycle schedule, per-epoch validation metrics,
early stopping on MONITOR, the best weights kept, a resumable checkpoint every epoch,
progress per batch and cancel between batches.

With a deadline (TrainControl, AutoDL's trials) the schedule is shaped by time: the number
of steps that fit before the deadline is estimated from the measured step and validation
times and re-estimated after every epoch, so the learning rate has annealed when time is up;
the last epoch is cut short and validated so that it still counts.

Freeze-then-unfreeze (FREEZE with pretrained backbone weights; fastai's ``fine_tune``):
the first ``freeze_epochs`` train the head with the backbone frozen (one one-cycle over
them), then the backbone is unfrozen and everything trains (a second one-cycle over the
rest) with the backbone at ``encoder_lr_scale`` (a tenth) of the head's rate. Early
stopping waits for the second phase. Both phases follow from the step, so resume needs no
more state.

Every validation also judges whether the model learned anything (verdict.py); the verdict
travels in the epoch's metrics (``learned_nothing``, ``learned_nothing_reason``)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import torch

from ..errors import Canceled
from . import checkpoint as ckpt
from . import schedule
from . import verdict
from .control import EARLY_STOPPING, PRUNED, STOPPED, TIME_LIMIT, TrainControl
from .distributed import Dist
from ..events import Events, plain
from .loader import to_device
from .metrics import is_better, monitor_key


@dataclass
class FitState:
    epoch: int = 0  # next epoch to run
    step: int = 0  # optimizer steps done
    best: Optional[float] = None
    best_epoch: int = -1
    best_state: Optional[Dict[str, torch.Tensor]] = None
    best_metrics: Dict[str, Any] = field(default_factory=dict)
    history: List[Dict[str, Any]] = field(default_factory=list)
    stale: int = 0  # epochs since the monitored value last improved
    stop_reason: str = ""  # why the loop ended before max_epochs (control.EARLY_STOPPING, TIME_LIMIT, …)

    @property
    def stopped_early(self) -> bool:
        return self.stop_reason == EARLY_STOPPING


@dataclass
class LoopSettings:
    max_epochs: int
    learning_rate: float
    monitor: str = "VALID_LOSS"
    stop_training: bool = True
    patience: int = 5
    weight_decay: float = 0.01
    max_steps: Optional[int] = None
    progress_start: float = 0.0  # percent already used (learning-rate finder)
    checkpoint_path: Optional[str] = None
    fingerprint: str = ""
    freeze_epochs: int = 0  # epochs with the backbone frozen (FREEZE with pretrained weights); 0: none
    encoder_lr_scale: float = 0.1  # the backbone's rate after unfreezing, relative to the head's


class Trainer:
    def __init__(self, model: torch.nn.Module, net: torch.nn.Module, task, runtime, dist: Dist, events: Events,
                 train_loader, train_sampler, valid_loader, valid_sampler, settings: LoopSettings,
                 cancel: Callable[[], bool] = lambda: False,
                 on_epoch: Optional[Callable[[Dict[str, Any]], None]] = None,
                 control: Optional[TrainControl] = None, encoder_parameters: Optional[List[Any]] = None,
                 rewrap: Optional[Callable[[], torch.nn.Module]] = None):
        """``encoder_parameters``: the backbone's (frozen by the caller for the first
        ``settings.freeze_epochs``); ``rewrap``: a new DDP wrapper once they train again (DDP
        syncs only the parameters that required gradients when it was made)."""
        self.on_epoch = on_epoch  # e.g. TensorBoard scalars
        self.model = model  # the network itself (state dicts, validation)
        self.net = net  # what training calls: the DDP wrapper in a distributed run, else the model
        self.task, self.runtime, self.dist, self.events = task, runtime, dist, events
        self.train_loader, self.train_sampler = train_loader, train_sampler
        self.valid_loader, self.valid_sampler = valid_loader, valid_sampler
        self.s = settings
        self.cancel = cancel
        self.control = control or TrainControl()
        self._valid_seconds: Optional[float] = None  # the last validation's duration (deadline reserve)
        self._step_seconds: Optional[float] = None  # measured seconds per optimizer step
        self.encoder_parameters = list(encoder_parameters or []) if settings.freeze_epochs > 0 else []
        self.rewrap = rewrap
        if self.encoder_parameters:  # two groups: the head, and the backbone at its own rate once unfrozen
            mine = {id(p) for p in self.encoder_parameters}
            groups = [{"params": [p for p in model.parameters() if id(p) not in mine and p.requires_grad],
                       "lr_scale": 1.0},
                      {"params": self.encoder_parameters, "lr_scale": float(settings.encoder_lr_scale)}]
        else:
            groups = [{"params": [p for p in model.parameters() if p.requires_grad]}]
        self.optimizer = torch.optim.AdamW(groups, lr=settings.learning_rate, weight_decay=settings.weight_decay,
                                           betas=(0.95, 0.99))
        self.scaler = torch.amp.GradScaler("cuda") if runtime.needs_grad_scaler else None
        self.steps_per_epoch = max(len(train_loader), 1)
        self.step_cap = self.steps_per_epoch * settings.max_epochs
        if settings.max_steps:
            self.step_cap = min(self.step_cap, settings.max_steps)
        self.total_steps = self.step_cap  # the schedule's length; shaped by time under a deadline
        # the step at which the backbone trains again (the second cycle starts); None: no freezing
        self.unfreeze_step = (self.steps_per_epoch * settings.freeze_epochs if self.encoder_parameters else None)
        self.frozen = bool(self.encoder_parameters)

    # ---- resume ---------------------------------------------------------------------------

    def state_dict(self, state: FitState) -> Dict[str, Any]:
        return {"model": ckpt.cpu_state(self.model), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler else {}, "epoch": state.epoch, "step": state.step,
                "best": state.best, "best_epoch": state.best_epoch,
                # the best weights are the current ones when the last epoch was the best: not stored twice
                "best_state": {} if state.best_epoch == state.epoch - 1 else (state.best_state or {}),
                "best_metrics": _json(state.best_metrics), "history": _json(state.history), "stale": state.stale,
                "learning_rate": self.s.learning_rate, "fingerprint": self.s.fingerprint}

    def load_state_dict(self, saved: Dict[str, Any]) -> FitState:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scaler and saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        best_state = saved["best_state"] or None
        if best_state is None and int(saved["best_epoch"]) == int(saved["epoch"]) - 1:
            best_state = saved["model"]
        return FitState(epoch=int(saved["epoch"]), step=int(saved["step"]), best=saved["best"],
                        best_epoch=int(saved["best_epoch"]), best_state=best_state,
                        best_metrics=json.loads(saved["best_metrics"]), history=json.loads(saved["history"]),
                        stale=int(saved["stale"]))

    # ---- the loop -------------------------------------------------------------------------

    def fit(self, state: Optional[FitState] = None) -> FitState:
        state = state or FitState()
        key = monitor_key(self.s.monitor)
        self.control.training_started = time.time()
        while state.epoch < self.s.max_epochs and not self._out_of_steps(state):
            epoch = state.epoch
            if self.frozen and epoch >= self.s.freeze_epochs:
                self._unfreeze(state)
            t0 = time.perf_counter()
            step0 = state.step
            train_loss, samples = self._train_epoch(state)
            train_seconds = time.perf_counter() - t0
            if state.stop_reason and state.step == step0 and state.best_state is not None:
                break  # stopped before this epoch trained anything: nothing new to validate
            t_valid = time.perf_counter()
            metrics = self._validate(epoch)
            self._valid_seconds = time.perf_counter() - t_valid
            if state.step > step0:
                self._step_seconds = train_seconds / (state.step - step0)
            metrics["train_loss"] = train_loss
            if metrics.get("valid_loss") is None:  # no validation chips: watch the training loss
                metrics["valid_loss"] = train_loss
            seconds = time.perf_counter() - t0
            record = {"epoch": epoch, "train_loss": train_loss, "valid_loss": metrics["valid_loss"],
                      **{k: metrics.get(k) for k in self.task.metric_keys}, "lr": self.optimizer.param_groups[0]["lr"],
                      "seconds": round(seconds, 3), "samples_per_s": round(samples / max(train_seconds, 1e-9), 2)}
            state.history.append(record)
            if self.on_epoch is not None and self.dist.is_main:
                self.on_epoch(record)
            value = metrics.get(key)
            improved = is_better(self.s.monitor, value, state.best)
            if improved:
                state.best, state.best_epoch, state.stale = float(value), epoch, 0
                state.best_state = ckpt.cpu_state(self.model)
                state.best_metrics = metrics
            else:
                state.stale += 1
            state.epoch = epoch + 1
            # one event per epoch (the QGIS side prints it); epochs counted from 1 for people
            self.events.metric(**{**record, "epoch": epoch + 1}, epochs=self.s.max_epochs, monitor=self.s.monitor,
                               best=state.best, improved=improved, per_class=metrics.get("per_class"),
                               device=self.runtime.description)
            if (self.s.stop_training and not state.stop_reason and state.stale >= self.s.patience
                    and state.epoch < self.s.max_epochs and not self.frozen):  # not before the backbone trains
                state.stop_reason = EARLY_STOPPING
                self.events.log(f"early stopping: {self.s.monitor.lower()} has not improved for {state.stale} "
                                f"epochs; keeping epoch {state.best_epoch + 1}")
            if not state.stop_reason and self.control.on_epoch is not None and self.control.on_epoch(
                    epoch, None if value is None else float(value)):
                state.stop_reason = PRUNED
                self.events.log(f"stopped after epoch {epoch + 1}: trailing other trials (pruned)")
            if self.s.checkpoint_path and self.dist.is_main:
                ckpt.save(self.s.checkpoint_path, self.state_dict(state))
            self.dist.barrier()
            if state.stop_reason:
                break
            self._shape_schedule(state)
        if state.best_state is None:  # nothing finite to compare: keep the last weights
            state.best_state = ckpt.cpu_state(self.model)
            state.best_epoch = max(state.epoch - 1, 0)
            state.best_metrics = state.best_metrics or {}
        self.control.stop_reason = state.stop_reason
        self.control.training_ended = time.time()
        return state

    # ---- freeze-then-unfreeze ------------------------------------------------------------------

    def _unfreeze(self, state: FitState) -> None:
        for p in self.encoder_parameters:
            p.requires_grad_(True)
        self.frozen = False
        if self.rewrap is not None:
            self.net = self.rewrap()
        state.stale = 0  # early stopping counts from the second phase
        self.events.log(f"epoch {state.epoch + 1}: backbone unfrozen; it trains at {self.s.encoder_lr_scale:g} "
                        f"times the head's learning rate")

    def _rate(self, step: int):
        """(learning rate, beta1) at ``step``: one cycle, or two around the unfreezing."""
        b = self.unfreeze_step
        if b and b < self.total_steps:
            if step < b:
                return schedule.one_cycle(step, b, self.s.learning_rate)
            return schedule.one_cycle(step - b, self.total_steps - b, self.s.learning_rate)
        return schedule.one_cycle(step, self.total_steps, self.s.learning_rate)

    # ---- deadline ---------------------------------------------------------------------------

    def _stop_now(self, state: FitState) -> bool:
        """Soft stop or deadline (keeping time to validate what was trained)."""
        if self.control.stop():
            state.stop_reason = STOPPED
            return True
        left = self.control.time_left()
        if left is None:
            return False
        reserve = self._valid_seconds
        if reserve is None:  # before the first validation: guess from the step time
            reserve = 0.5 * (self._step_seconds or 0.0) * (len(self.valid_loader) if self.valid_loader else 0)
        if left <= reserve:
            state.stop_reason = TIME_LIMIT
            self.events.log(f"time limit: training stops in epoch {state.epoch + 1} after {state.step} steps")
            return True
        return False

    def _shape_schedule(self, state: FitState) -> None:
        """Under a deadline: the schedule's length = the steps that fit in the time left."""
        left = self.control.time_left()
        if left is None or not self._step_seconds:
            return
        per_epoch = self.steps_per_epoch * self._step_seconds + (self._valid_seconds or 0.0)
        fit = int(max(left, 0.0) / max(per_epoch, 1e-9) * self.steps_per_epoch)
        self.total_steps = max(state.step + 1, min(self.step_cap, state.step + fit))

    def _out_of_steps(self, state: FitState) -> bool:
        return bool(self.s.max_steps) and state.step >= self.s.max_steps

    def _train_epoch(self, state: FitState):
        self.net.train()
        self.train_sampler.set_epoch(state.epoch)
        total, count, samples = 0.0, 0, 0
        t_first = None
        for i, batch in enumerate(self.train_loader):
            if self._out_of_steps(state) or self._stop_now(state):
                break
            self._check_cancel()
            batch = to_device(batch, self.runtime.device, self.runtime.channels_last)
            lr, beta1 = self._rate(state.step)
            schedule.apply(self.optimizer, lr, beta1)
            loss = self.task.training_loss(self.net, batch, self.runtime)
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler:
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                loss.backward()
                self.optimizer.step()
            state.step += 1
            value = float(loss.detach())
            if self.control.deadline is not None:
                # a first estimate of the step time (the first step pays for start-up, so it is left out)
                if t_first is None:
                    t_first = time.perf_counter()
                elif state.epoch == 0 and i == min(3, self.steps_per_epoch - 1):
                    self._step_seconds = (time.perf_counter() - t_first) / i
                    self._shape_schedule(state)
            if math.isfinite(value):
                total, count = total + value, count + 1
            samples += int(batch["image"].shape[0]) * self.dist.world_size
            self._progress(state.epoch, (i + 1) / self.steps_per_epoch, f"epoch {state.epoch + 1}: loss {value:.4f}")
        loss_sum = torch.tensor([total, count], dtype=torch.float64, device=self.runtime.device)
        self.dist.all_sum(loss_sum)
        return float(loss_sum[0] / loss_sum[1]) if loss_sum[1] > 0 else float("nan"), samples

    @torch.no_grad()
    def _validate(self, epoch: int) -> Dict[str, Any]:
        if self.valid_loader is None:
            return {}
        self.model.eval()
        acc = self.task.accumulator(self.runtime.device)
        loss_sum, n = 0.0, 0
        for batch in self.valid_loader:
            if self.cancel():  # local check: shards differ in length, a collective here would hang
                raise Canceled()
            batch = to_device(batch, self.runtime.device, self.runtime.channels_last)
            s, k = self.task.validation_step(self.model, batch, self.runtime, acc)
            loss_sum, n = loss_sum + s, n + k
        totals = torch.tensor([loss_sum, n], dtype=torch.float64, device=self.runtime.device)
        self.dist.all_sum(totals)
        reduced = self.task.reduce(acc, self.dist)
        metrics = self.task.metrics(reduced)
        metrics["valid_loss"] = float(totals[0] / totals[1]) if totals[1] > 0 else None
        reason = verdict.judge(self.task, reduced, monitor_key(self.s.monitor))
        if reason is not None:  # None: the validation chips cannot tell
            metrics["learned_nothing"] = bool(reason)
            if reason:
                metrics["learned_nothing_reason"] = reason
        return metrics

    def _check_cancel(self) -> None:
        if self.dist.any(bool(self.cancel()), self.runtime.device):
            raise Canceled()

    def _progress(self, epoch: int, fraction: float, message: str) -> None:
        start = self.s.progress_start
        done = (epoch + min(fraction, 1.0)) / max(self.s.max_epochs, 1)
        self.events.progress(start + (100.0 - start) * min(done, 1.0) * 0.98, message)


def _json(value) -> str:
    return json.dumps(value, default=plain)
