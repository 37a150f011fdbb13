#!/usr/bin/env python3
"""Training benchmark (issue 4, item 6): is the data pipeline fast enough to keep the model busy?

From one run, on the same model (UNET, RESNET18 by default, random weights), batch and precision:

* ``in memory``  training steps on one batch already collated in memory: the model's own speed;
  (and the same two rows for a detector, FASTERRCNN RESNET18 on PASCAL_VOC_rectangles chips);
* ``on disk``    training steps on exported chips read from disk through the trainer's data
                 pipeline (``prepare_data`` → ``ChipDataset`` with DEFAULT augmentation →
                 ``make_loader`` with the trainer's default loader workers);
* ``run_training``  the whole Train Deep Learning Model run for the same number of steps
                 (includes validation and writing the package), from its per-epoch figures;

and prints samples/s and the ratio on disk / in memory (target ≥ 0.9 on the CPU). Both step
loops call the trainer's own ``task.training_loss`` and an AdamW step. ``--precision`` picks
bf16 autocast or fp32; ``--compare-precision`` trains the same short run in both and prints
samples/s and validation mIoU of each (why bf16 autocast is on by default on CPUs that have
native bf16). The export is synthetic (``tests/engine/train_helpers.py``: roofs and pools),
built under benchmarks/output/train_data once and reused.

    .venv/bin/python benchmarks/train_bench.py                       # CPU, 256 px, batch 8
    .venv/bin/python benchmarks/train_bench.py --device cuda --batch 64 --steps 100
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [REPO, os.path.join(REPO, "tests", "engine")]
OUT = os.path.join(HERE, "output")


def build_export(tile: int, kind: str = "pixel") -> str:
    """144 chips: roofs and pools as Classified_Tiles, or squares as PASCAL_VOC_rectangles."""
    folder = os.path.join(OUT, "train_data", f"{kind}_tile{tile}")
    export = os.path.join(folder, "export")
    if not os.path.isfile(os.path.join(export, "map.txt")):
        if kind == "pixel":
            import train_helpers as th
            th.learnable_export(folder, seed=3, size=tile * 12, tile=tile)
        else:
            import detection_helpers as dh
            dh.squares_export(folder, seed=3, tile=tile, cells=12, min_side=tile // 8, max_side=tile // 4)
    return export


def step_loop(task, model, runtime, batches, steps: int, warmup: int):
    """samples/s of ``steps`` training steps after ``warmup`` (the trainer's loss + AdamW)."""
    import torch
    from dl_engine.train.loader import to_device
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    it = iter(batches)
    n = 0
    for i in range(warmup + steps):
        if i == warmup:
            if runtime.is_cuda:
                torch.cuda.synchronize()
            t0, n = time.perf_counter(), 0
        batch = to_device(next(it), runtime.device, runtime.channels_last)
        loss = task.training_loss(model, batch, runtime)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += int(batch["image"].shape[0])
    if runtime.is_cuda:
        torch.cuda.synchronize()
    return n / (time.perf_counter() - t0)


def endless(loader, sampler):
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        for b in loader:
            yield b
        epoch += 1


def measure(args, precision: str, model_type: str, backbone: str):
    import torch
    from dl_engine.data import DataConfig, prepare_data
    from dl_engine.models.registry import BuildContext, get_spec
    from dl_engine.runtime import choose_runtime
    from dl_engine.train.loader import default_workers, make_loader
    from dl_engine.train.families import task_for

    spec = get_spec(model_type)
    export = build_export(args.tile, spec.kind)
    runtime = choose_runtime(args.device, precision)
    td = prepare_data(DataConfig(export, validation_percentage=0))
    torch.manual_seed(0)
    arguments = dict(spec.arguments)
    built = spec.build(BuildContext(backbone, td.normalization.bands_in, td.class_map.num_classes, args.tile,
                                    arguments, log=lambda m: None))
    model = built.module.to(runtime.device)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    task = task_for(spec.kind)(td.class_map, arguments)
    workers = args.workers if args.workers is not None else default_workers(runtime.is_cuda)
    loader, sampler = make_loader(td.train_dataset(), args.batch, task.collate, True, 0, workers, runtime.is_cuda,
                                  drop_last=True)
    batches = endless(loader, sampler)
    fixed = next(batches)
    memory = step_loop(task, model, runtime, _repeat(fixed), args.steps, args.warmup)
    disk = step_loop(task, model, runtime, batches, args.steps, args.warmup)
    memory2 = step_loop(task, model, runtime, _repeat(fixed), args.steps, 0)  # drift check
    return {"device": runtime.description, "workers": workers, "in_memory": memory, "in_memory_after": memory2,
            "on_disk": disk, "ratio": disk / ((memory + memory2) / 2), "chips": len(td.train)}


def _repeat(batch):
    while True:
        yield batch


def run_training_figure(args, precision: str, epochs: int = 1, out_name: str = "run"):
    import shutil
    from dl_engine.events import Events
from dl_engine.train import TrainConfig
    from dl_engine.train.run import run_training
    seen = []
    out = os.path.join(OUT, "train_runs", out_name)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    result = run_training(TrainConfig(build_export(args.tile), out, model_type=args.model, backbone=args.backbone,
                                      batch_size=args.batch, max_epochs=epochs, learning_rate=1e-3,
                                      validation_percentage=20, device=args.device, precision=precision,
                                      num_workers=args.workers, stop_training=False),
                          Events(sink=seen.append))
    metrics = [e for e in seen if e["event"] == "metric"]
    return {"samples_per_s": metrics[-1]["samples_per_s"], "miou": result.metrics.get("miou"),
            "seconds": time.perf_counter() - t0, "epochs": epochs}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--model", default="UNET")
    p.add_argument("--backbone", default="RESNET18")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--workers", type=int, default=None, help="loader workers (default: the trainer's choice)")
    p.add_argument("--precision", default="auto", help="auto, bf16, fp16, fp32")
    p.add_argument("--detector", default="FASTERRCNN", help="the detector row's MODEL_TYPE")
    p.add_argument("--detector-backbone", default="RESNET18")
    p.add_argument("--no-detector", action="store_true", help="only the pixel model")
    p.add_argument("--compare-precision", action="store_true",
                   help="also train a few epochs in bf16 and fp32 and compare mIoU")
    args = p.parse_args()

    os.makedirs(OUT, exist_ok=True)
    report = {"args": vars(args)}
    models = [(args.model, args.backbone)] + ([] if args.no_detector else [(args.detector, args.detector_backbone)])
    for model_type, backbone in models:
        r = measure(args, args.precision, model_type, backbone)
        report[f"pipeline {model_type}"] = r
        print(f"{model_type} {backbone} {args.tile}px batch {args.batch} — device: {r['device']}; {r['chips']} chips "
              f"on disk; loader workers {r['workers']}")
        print(f"  {'measurement':42s} {'samples/s':>10s}")
        print(f"  {'in memory (same batch, before)':42s} {r['in_memory']:10.1f}")
        print(f"  {'on disk (our data pipeline)':42s} {r['on_disk']:10.1f}")
        print(f"  {'in memory (same batch, after)':42s} {r['in_memory_after']:10.1f}")
        print(f"  ratio on disk / in memory: {r['ratio']:.2f}  (target >= 0.9)")
    run = run_training_figure(args, args.precision)
    print(f"{'run_training, 1 epoch (samples/s of its epoch)':44s} {run['samples_per_s']:10.1f}  "
          f"(whole run {run['seconds']:.1f} s incl. validation and package)")
    report["run_training"] = run
    if args.compare_precision:
        report["precision"] = {}
        for prec in ("bf16", "fp32"):
            fig = run_training_figure(args, prec, epochs=4, out_name=f"prec_{prec}")
            report["precision"][prec] = fig
            print(f"{'precision ' + prec + ', 4 epochs':44s} {fig['samples_per_s']:10.1f}  mIoU {fig['miou']:.3f}")
    with open(os.path.join(OUT, "train_bench.json"), "w") as f:
        json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
