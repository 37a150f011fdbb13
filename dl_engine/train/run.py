"""Train Deep Learning Model, end to end: check everything, build data and model, train,
write the package. Used by the worker process (``python -m dl_engine train``), by torchrun
(every process runs this; rank 0 reports and writes) and in-process by tests.

Every check that can fail on the user's input runs before OUT_FOLDER is touched, so bad
input leaves nothing behind; outputs are written to a staging folder and moved into place.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from ..data import DataConfig, TrainingData, prepare_data
from ..destinations import named_os_errors
from ..errors import Canceled, InputError
from ..models import rs_weights
from ..models.registry import BuildContext, ModelSpec, get_spec, model_types, network_of_emd
from ..models.spec import BUILT_NETWORK, OWN_NETWORK
from . import checkpoint as ckpt
from .anchors import training_anchors
from . import resume
from . import verdict
from ..arguments import given_names, parse_arguments
from .arguments import TRAINER_ARGUMENTS
from .batch_size import choose_batch_size
from .config import TrainConfig, monitor_keyword
from .control import TrainControl
from ..runtime import choose_runtime
from .distributed import Dist, from_environment
from ..events import Events, plain, training_files
from .loader import default_workers, make_loader
from .lr_finder import DEFAULT_LR, MIN_STEPS, SHARE, find_learning_rate, finder_steps
from .loop import FitState, LoopSettings, Trainer
from .metrics import MONITOR_KEYS
from .pretrained import load_pretrained, package_arguments, pretrained_emd
from .families import task_for

LR_FINDER_SHARE = 5.0  # percent of the progress bar the learning-rate finder takes
FREEZE_SHARE = 0.25  # FREEZE with pretrained weights: the share of the epochs that train the head alone
ENCODER_LR_SCALE = 0.1  # the backbone's learning rate after unfreezing, relative to the head's
SHOW_RESULTS = 4  # validation chips in show_results.png


@dataclass
class TrainResult:
    out_model_file: str  # the .dlpk
    out_folder: str
    emd: str
    metrics: Dict[str, Any]
    history: List[Dict[str, Any]] = field(default_factory=list)
    learning_rate: float = 0.0
    best_epoch: int = 0
    batch_size: int = 0
    stop_reason: str = ""  # "" or control.EARLY_STOPPING / TIME_LIMIT / STOPPED / PRUNED
    report: str = ""  # model_metrics.html


def run_training(config: TrainConfig, events: Optional[Events] = None,
                 cancel: Callable[[], bool] = lambda: False,
                 control: Optional[TrainControl] = None) -> Optional[TrainResult]:
    """Train; returns the result on rank 0 (None on other ranks). Raises InputError on bad
    input and Canceled when ``cancel()`` turns true. ``control`` (in-process callers
    such as AutoDL): a deadline, a soft stop and a per-epoch hook that end training early
    but still write the best epoch's package."""
    config.check()
    dist = from_environment(config.device)
    events = events or Events()
    if not dist.is_main:
        events = Events(enabled=False)
    try:
        with named_os_errors("OUT_FOLDER", os.path.abspath(config.out_folder)):  # disk full, read-only, …
            return _run(config, events, cancel, dist, control or TrainControl())
    finally:
        dist.close()


def device_free_bytes(device: "torch.device") -> Optional[int]:
    """A GPU's free memory (the budget's second bound); None on the CPU."""
    if device.type != "cuda":
        return None
    try:
        return int(torch.cuda.mem_get_info(device)[0])
    except Exception:  # noqa: BLE001 - a driver that cannot say: the host's memory bounds it alone
        return None


def _run(config: TrainConfig, events: Events, cancel, dist: Dist, control: TrainControl) -> Optional[TrainResult]:
    t_start = time.perf_counter()
    plan = _plan(config, events)
    # the input is checked: the history goes to OUT_FOLDER too (a worker's events; a resumed run's continues)
    events.record_to(*training_files(os.path.abspath(config.out_folder)), append=bool(plan.arguments.get("resume")))
    torch.manual_seed(config.seed)
    runtime = choose_runtime(config.device, config.precision, dist.local_rank if dist.enabled else None)
    events.log(f"device: {runtime.description}" + (f", {dist.world_size} processes" if dist.enabled else ""))

    spec, td, args = plan.spec, plan.data, plan.arguments
    if not config.auto_batch_size:  # the data's chip size and bands, against the GPU's free memory when on one
        config.check_memory(chip=plan.chip_size, bands=td.normalization.bands_in,
                            device_bytes=device_free_bytes(runtime.device))
    built = spec.build(BuildContext(backbone=config.backbone, in_channels=td.normalization.bands_in,
                                    num_classes=td.class_map.num_classes, chip_size=plan.chip_size,
                                    arguments=args, pretrained=not config.pretrained_model,
                                    weight_init_scheme=config.weight_init_scheme, log=events.log,
                                    warn=events.warning, emd=plan.pretrained_emd,
                                    network=network_of_emd(plan.pretrained_emd) if plan.pretrained_emd else None,
                                    normalization=td.normalization.mode))
    model = built.module
    _say_whether_it_crosses(spec, built.backbone_name, args, events.log)
    pretrained_loaded = built.pretrained_loaded
    if config.pretrained_model:
        load_pretrained(config.pretrained_model, model, spec, built.backbone_name, td, events.log)
        pretrained_loaded = True
    freeze_epochs = _freeze_epochs(config, built, pretrained_loaded, events)
    model.to(runtime.device)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)

    task = plan.task
    task.prepare(td, model, plan.chip_size, events.log)  # a look at the training data (class balance, …)

    workers = config.num_workers if config.num_workers is not None else default_workers(runtime.is_cuda)
    train_ds, valid_ds = td.train_dataset(), td.valid_dataset()
    batch = int(config.batch_size)
    if config.auto_batch_size and not dist.enabled:
        batch = choose_batch_size(model, task, runtime, train_ds, plan.chip_size, batch, events.log)
    control.batch_size = batch
    if freeze_epochs:  # after the batch size probe, which must see the whole network train
        for p in built.encoder_parameters:
            p.requires_grad_(False)
    net = _wrap(model, dist, runtime)  # after freezing: DDP syncs what requires gradients now
    train_loader, train_sampler = make_loader(train_ds, batch, task.collate, True, config.seed, workers,
                                              runtime.is_cuda, dist.rank, dist.world_size,
                                              # a last batch of one chip breaks BatchNorm: drop the
                                              # partial batch whenever there is a full one
                                              drop_last=len(train_ds) > batch * dist.world_size)
    valid_loader = valid_sampler = None
    if len(valid_ds):
        valid_loader, valid_sampler = make_loader(valid_ds, batch, task.collate, False, config.seed,
                                                  min(workers, 2), runtime.is_cuda, dist.rank, dist.world_size)
    events.log(f"{len(train_ds)} training and {len(valid_ds)} validation chips of {plan.chip_size} px, "
               f"{td.class_map.num_classes} classes ({', '.join(td.class_map.names)}), {td.normalization.bands_in} "
               f"bands ({td.normalization.mode} normalisation), batch {batch}, {workers} loader workers")

    out_folder = os.path.abspath(config.out_folder)
    check_path = ckpt.path_for(out_folder)
    run_items = dict(model_type=spec.keyword, backbone=built.backbone_name, folders=td.data.paths,
                     bands=td.normalization.bands_in, classes=td.class_map.names, chip_size=plan.chip_size,
                     batch_size=batch, max_epochs=config.max_epochs,
                     **({"freeze_epochs": freeze_epochs} if freeze_epochs else {}))
    check_cancel = _cancel_check(cancel, dist, runtime)
    saved, run_items = _resume_state(args, check_path, run_items, events)
    freeze_epochs = int(run_items.get("freeze_epochs", 0))  # a resumed run keeps the phases it had
    fingerprint = ckpt.fingerprint(**run_items)

    learning_rate = config.learning_rate
    if saved is not None:
        learning_rate = float(saved["learning_rate"])
    elif learning_rate is None:
        planned = len(train_loader) * int(config.max_epochs)
        if config.max_steps:
            planned = min(planned, int(config.max_steps))
        iterations = finder_steps(planned)
        if iterations:
            learning_rate, _ = find_learning_rate(
                model, net, task, runtime, dist, events, train_loader, train_sampler, iterations,
                args["weight_decay"], check_cancel,
                lambda f: events.progress(LR_FINDER_SHARE * f, "finding the learning rate"))
        else:
            learning_rate = DEFAULT_LR
            events.log(f"learning rate {learning_rate:.2e}, AdamW's safe default: the run plans {planned} steps, "
                       f"too few for the learning-rate finder ({MIN_STEPS} steps within {SHARE:.0%} of the run)")
    else:
        events.log(f"learning rate {learning_rate:.2e}")

    settings = LoopSettings(max_epochs=int(config.max_epochs), learning_rate=float(learning_rate),
                            monitor=plan.monitor, stop_training=bool(config.stop_training),
                            patience=int(args.get("patience") or config.patience),
                            weight_decay=float(args["weight_decay"]), max_steps=config.max_steps,
                            progress_start=LR_FINDER_SHARE if config.learning_rate is None else 0.0,
                            checkpoint_path=check_path, fingerprint=fingerprint, freeze_epochs=freeze_epochs,
                            encoder_lr_scale=ENCODER_LR_SCALE)
    board = _tensorboard(config, out_folder, events) if dist.is_main else None
    trainer = Trainer(model, net, task, runtime, dist, events, train_loader, train_sampler, valid_loader,
                      valid_sampler, settings, cancel, on_epoch=board, control=control,
                      encoder_parameters=built.encoder_parameters if freeze_epochs else None,
                      rewrap=(lambda: _wrap(model, dist, runtime)) if dist.enabled else None)
    state = trainer.load_state_dict(saved) if saved is not None else FitState()
    if saved is not None:
        events.log(f"resuming after epoch {state.epoch} of {config.max_epochs} from {check_path}")
    try:
        state = trainer.fit(state)
    except Canceled:  # ``state`` is the loop's own: its epochs are those in the checkpoint
        best = (f"best {plan.monitor.lower()} {state.best:.4g} at epoch {state.best_epoch + 1}"
                if state.best is not None else None)
        raise Canceled(resume.canceled_message(check_path, state.epoch, int(config.max_epochs), best)) from None

    model.load_state_dict(state.best_state)
    _learned_nothing(state, plan, learning_rate, pretrained_loaded, events, control.advise)
    result = None
    if dist.is_main:
        events.progress(98.5, "writing the model package")
        result = _write(config, plan, built, model, task, runtime, valid_ds, state, learning_rate,
                        pretrained_loaded, events, batch, freeze_epochs)
        ckpt.remove(out_folder)
        events.log(f"done in {time.perf_counter() - t_start:.0f} s: {result.out_model_file or result.emd}")
        events.progress(100.0, "done")
        events.emit("result", out_model_file=result.out_model_file, out_folder=result.out_folder,
                    emd=result.emd, report=result.report, metrics=result.metrics)
    dist.barrier()
    return result


def _say_whether_it_crosses(spec: ModelSpec, backbone_name: str, arguments: Dict[str, Any],
                            log: Callable[[str], None]) -> None:
    """One log line when a model type that can have arcgis.learn's network was built with ours: its
    package will not load in arcgis.learn or ArcGIS Pro's own tools, and which backbones would."""
    if not spec.arcgis_backbones or arguments.get(BUILT_NETWORK) != OWN_NETWORK:
        return
    crossing = spec.crossing_backbones
    log(f"{spec.keyword} on {backbone_name} has this plugin's own network: arcgis.learn and ArcGIS Pro's "
        f"{spec.model_name} will not load its package"
        + (f" (BACKBONE_MODEL {', '.join(b.upper() for b in crossing)} give arcgis.learn's)" if crossing else ""))


# ---- checks, before anything is written -------------------------------------------------------

@dataclass
class _Plan:
    """What the checks resolved: the model type, the data, the arguments and the task."""

    spec: ModelSpec
    data: TrainingData
    arguments: Dict[str, Any]
    monitor: str
    chip_size: int
    task: Any  # the family's task (train/families.py)
    pretrained_emd: Optional[Dict[str, Any]] = None  # PRETRAINED_MODEL's: the network is built in its layout


def _plan(config: TrainConfig, events: Events) -> _Plan:
    """The checks that need the model type's spec or the data (the single values were checked
    by ``config.check()``)."""
    spec = get_spec(config.model_type)
    args = parse_arguments(config.arguments, {**TRAINER_ARGUMENTS, **spec.arguments}, spec.keyword)
    base_emd = pretrained_emd(config.pretrained_model)
    if base_emd is not None:
        args.update(package_arguments(spec, base_emd, given_names(config.arguments)))
    monitor = monitor_keyword(args.get("monitor") or config.monitor)
    task_class = task_for(spec.kind)
    allowed = ["VALID_LOSS"] + [m for m, (k, _) in MONITOR_KEYS.items() if k in task_class.metric_keys]
    if monitor not in allowed:
        raise InputError("MONITOR", f"{monitor} is not measured for {spec.keyword}; accepted: {', '.join(allowed)}")
    chip_size = args.get("chip_size") or config.chip_size
    resume.check_out_folder(config.out_folder, bool(args.get("resume")))
    td = prepare_data(DataConfig(config.in_folder, config.validation_percentage, chip_size, config.resize_to,
                                 config.augmentation, config.augmentation_parameters, config.seed))
    # torchgeo weights (torchgeo:<Enum>.<MEMBER>): the export's bands checked, their normalisation used
    rs_weights.prepare_training_data(td, config.backbone, events.log)
    for w in td.warnings:
        events.warning(w)
    fmt = td.data.metadata_format
    if fmt not in spec.formats:
        fits = [k for k in model_types() if fmt in get_spec(k).formats]
        raise InputError("MODEL_TYPE", f"{spec.keyword} trains on {', '.join(spec.formats)} exports, and "
                                      f"{td.data.paths[0]} is {fmt}; "
                                      + (f"model types for {fmt}: {', '.join(fits)}" if fits else
                                         f"no model type of this version trains on {fmt}; export again with "
                                         f"METADATA_FORMAT {spec.formats[0]}"))
    if not td.train:
        raise InputError("IN_FOLDER", f"{'; '.join(td.data.paths)} has {len(td.data.samples)} usable chip(s): too "
                                     "few to train on (export more, or lower VALIDATION_PERCENTAGE)")
    if not td.class_map.classes:
        raise InputError("IN_FOLDER", "the export has no classes to learn (its emd lists none)")
    if td.class_map.num_classes < 2:  # a classifier without background has one output
        raise InputError("IN_FOLDER", f"the export has one class ({td.class_map.classes[0].name}); "
                                     f"{spec.keyword} needs at least two to tell apart")
    size = td.reader.resize_to or td.reader.chip_size or min(td.data.tile_size_x, td.data.tile_size_y)
    if spec.data_anchors and base_emd is None and args.get("anchors") in (None, "", "None"):
        found = training_anchors(td, int(size), spec.data_anchors, config.seed, events.log)
        if found:  # into the run's arguments: the emd records them, and the package rebuilds them
            args["anchors"] = found
    return _Plan(spec, td, args, monitor, int(size), task_class(td.class_map, args), base_emd)


def _freeze_epochs(config: TrainConfig, built, pretrained_loaded: bool, events: Events) -> int:
    """FREEZE with pretrained weights: the epochs that train the head with the backbone frozen
    (fastai's fine_tune): FREEZE_SHARE of them, at least 1, leaving at least 1 to train
    everything, the backbone at ENCODER_LR_SCALE of the rate; all of them when MAX_EPOCHS is 1.
    0: no freezing (FREEZE off, or nothing pretrained to protect: said once in the log)."""
    if not config.freeze:
        return 0
    if not pretrained_loaded or not built.encoder_parameters:
        events.log("FREEZE has nothing to protect: the backbone starts from random weights, so it trains from "
                   "the first epoch")
        return 0
    epochs = int(config.max_epochs)
    frozen = epochs if epochs < 2 else min(epochs - 1, max(1, int(round(FREEZE_SHARE * epochs))))
    count = sum(p.numel() for p in built.encoder_parameters)
    if frozen >= epochs:
        events.log(f"backbone frozen ({count:,} parameters): MAX_EPOCHS {epochs} trains the head only (a second "
                   "epoch would fine-tune the backbone too)")
    else:
        events.log(f"backbone frozen for the first {frozen} of {epochs} epochs ({count:,} parameters): the head "
                   f"learns first, then everything trains, the backbone at {ENCODER_LR_SCALE:g} times the rate")
    return frozen


def _wrap(model, dist: Dist, runtime):
    """What training calls: the model, or its DistributedDataParallel wrapper under torchrun."""
    if not dist.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel
    return DistributedDataParallel(model, device_ids=[runtime.device.index] if runtime.is_cuda else None)


ADVICE = {
    "pixel": "ARGUMENTS 'class_balancing true' or 'focal_loss true' when the foreground is rare",
    "classification": "ARGUMENTS 'class_balancing true' or 'oversample true' when a class is rare",
}


def _learned_nothing(state: FitState, plan: "_Plan", learning_rate: float, pretrained_loaded: bool,
                     events: Events, advise: bool = True) -> None:
    """The kept model learned nothing (verdict.py, or no validation finite): one warning that
    says what to try; the metrics carry ``learned_nothing`` (and the reason)."""
    m = state.best_metrics
    reason = m.get("learned_nothing_reason") if m.get("learned_nothing") else None
    if reason is None and not m and state.history and plan.data.valid:
        reason = "no epoch had a finite validation value (training diverged)"
        m["learned_nothing"] = True
        m["learned_nothing_reason"] = reason
    if not reason:
        return
    chips = len(plan.data.valid)
    if verdict.is_guess_level(reason) and chips < verdict.MIN_CHIPS_FOR_GUESS:
        m["learned_nothing"] = False  # too few validation chips to call the model useless
        events.log(f"on its {chips} validation chip(s) {reason}; too few chips to judge (export more, or raise "
                   "VALIDATION_PERCENTAGE, to have the model checked)")
        return
    said = f"the model learned nothing: {reason} (epoch {state.best_epoch + 1}, the one kept)"
    if not advise:
        events.warning(said)
        return
    tries = [f"more epochs (MAX_EPOCHS; {len(state.history)} ran)",
             f"a lower LEARNING_RATE (this run used {learning_rate:.1e}; try {learning_rate / 10:.0e})",
             "check the labels and classes of the export (are the objects labelled, with the right class values?)"]
    if not pretrained_loaded:
        tries.append("a pretrained backbone (BACKBONE_MODEL EFFICIENTNET_LITE0 has ImageNet weights offline)")
    if plan.spec.kind in ADVICE:
        tries.append(ADVICE[plan.spec.kind])
    events.warning(f"{said}. Try " + "; ".join(tries) + ".")


def _resume_state(args, path: str, run_items: Dict[str, Any], events: Events):
    """(the checkpoint to resume or None, the run's fingerprint items); resume.py's rules."""
    if not args.get("resume"):
        return None, run_items  # a checkpoint there without resume: refused by resume.check_out_folder
    saved = ckpt.load(path)
    if saved is None:
        events.warning(f"resume: no checkpoint in {os.path.dirname(path)}; training starts from the beginning")
        return None, run_items
    before = resume.parse_fingerprint(saved.get("fingerprint"))
    items = resume.resumable(before, run_items, int(saved.get("epoch", 0)), os.path.dirname(path))
    if int(items["max_epochs"]) > int(before.get("max_epochs", 0)):
        events.log(f"resume: MAX_EPOCHS {before.get('max_epochs')} → {items['max_epochs']}; the learning-rate "
                   "schedule stretches over the longer run")
    return saved, items


def _tensorboard(config: TrainConfig, out_folder: str, events: Events):
    """TENSORBOARD: per-epoch scalars in <OUT_FOLDER>/tensorboard (needs the tensorboard package)."""
    if not config.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        events.warning("TENSORBOARD is ignored: the tensorboard package is not installed "
                       "(pip install tensorboard in the Python that runs training)")
        return None
    writer = SummaryWriter(os.path.join(out_folder, "tensorboard"))
    events.log(f"TensorBoard logs: {os.path.join(out_folder, 'tensorboard')} (tensorboard --logdir <that folder>)")

    def on_epoch(record: Dict[str, Any]) -> None:
        for key, value in record.items():
            if key != "epoch" and isinstance(value, (int, float)) and value is not None:
                writer.add_scalar(key, value, record["epoch"])
        writer.flush()
    return on_epoch


def _cancel_check(cancel, dist: Dist, runtime):
    def check() -> None:
        if dist.any(bool(cancel()), runtime.device):
            raise Canceled()
    return check


# ---- outputs ----------------------------------------------------------------------------------

def _write(config, plan, built, model, task, runtime, valid_ds, state: FitState, learning_rate, pretrained_loaded,
           events, batch: int, freeze_epochs: int = 0) -> TrainResult:
    from ..package.record import TrainedModel
    from ..package.writer import write_model_package

    td = plan.data
    name = os.path.basename(os.path.normpath(os.path.abspath(config.out_folder)))
    metrics = {k: v for k, v in state.best_metrics.items()}
    metrics.setdefault("valid_loss", state.history[state.best_epoch]["valid_loss"] if state.history else None)
    # model_metrics.html: the parameters as given, and under "run" what they led to
    settings: Dict[str, Any] = {k: v for k, v in asdict(config).items() if k != "extra"}
    settings["run"] = dict(device=runtime.description, learning_rate=learning_rate, batch_size=batch,
                           epochs_run=len(state.history), stop_reason=state.stop_reason,
                           freeze_epochs=freeze_epochs, train_chips=len(td.train), valid_chips=len(td.valid))
    record = TrainedModel(
        name=name, model_type=plan.spec.keyword, backbone=built.backbone_name, backbone_keyword=config.backbone,
        arguments=plan.arguments, class_map=td.class_map, normalization=td.normalization, data=td.data,
        chip_size=plan.chip_size, resize_to=config.resize_to, learning_rate=float(learning_rate),
        monitor=plan.monitor, best_value=state.best, best_epoch=state.best_epoch, history=state.history,
        metrics=metrics, settings=settings, samples=_sample_results(model, task, runtime, valid_ds, td),
        pretrained_loaded=pretrained_loaded,
        pretrained_weights=(f"model: {os.path.abspath(config.pretrained_model)}" if config.pretrained_model
                            else built.pretrained_source))
    paths = write_model_package(record, {k: v.detach().cpu() for k, v in model.state_dict().items()},
                                config.out_folder, log=events.log, dlpk=config.write_dlpk)
    return TrainResult(out_model_file=str(paths.dlpk), out_folder=os.path.abspath(config.out_folder),
                       emd=str(paths.emd), metrics=_plain_metrics(metrics), history=state.history,
                       learning_rate=float(learning_rate), best_epoch=state.best_epoch, batch_size=batch,
                       stop_reason=state.stop_reason, report=str(paths.html))


def _sample_results(model, task, runtime, valid_ds, td) -> list:
    if not len(valid_ds):
        return []
    model.eval()
    items = [valid_ds[i] for i in range(min(SHOW_RESULTS, len(valid_ds)))]
    return task.sample_results(model, items, runtime, lambda image: _display(td.normalization, image))


def _display(normalization, image: np.ndarray) -> np.ndarray:
    unit = normalization.to_unit(image)
    rgb = unit[:3] if unit.shape[0] >= 3 else np.repeat(unit[:1], 3, axis=0)
    if normalization.is_multispectral:  # stretch each band for a visible picture
        lo = np.percentile(rgb, 2, axis=(1, 2), keepdims=True)
        hi = np.percentile(rgb, 98, axis=(1, 2), keepdims=True)
        rgb = (rgb - lo) / np.maximum(hi - lo, 1e-6)
    return (np.clip(rgb, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)


def _plain_metrics(metrics: Dict[str, Any]) -> Dict[str, Any]:
    return json.loads(json.dumps(metrics, default=plain))
