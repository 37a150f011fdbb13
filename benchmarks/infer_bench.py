#!/usr/bin/env python3
"""Inference benchmark (issue 5): does Classify Pixels keep the model busy, and is its memory
flat as the raster grows?

On the same model (UNET, RESNET18 by default, random weights: speed is what matters),
tile, padding, batch, device and precision:

* ``forward``  the model alone on one batch already in memory (normalised input on the
               device, ``module(x)``): tiles/s, and the output megapixels/s that makes with
               the padding discarded (tiles/s x (tile - 2 x padding)^2);
* ``predictor`` the same batch as raw pixels through the tool's own per-batch work
               (transfer, normalisation, model, argmax, back to numpy);
* ``classify pixels N²``  the whole ``run_inference`` (tool classify_pixels) on an N x N
               3-band uint8 GeoTIFF: read windows, model, stitch, write the class raster;
               output Mpx/s, the ratio to ``forward`` (target >= 0.8), and peak RSS
               (``ru_maxrss`` of a fresh process) for two sizes: flat memory means about the
               same peak for both.

The rasters (smooth noise with bright squares, 256 px DEFLATE tiles) are built once under
benchmarks/output/infer_data/ and reused. Each measurement runs in its own process.

    .venv/bin/python benchmarks/infer_bench.py            # CPU: 2048² and 4096², ~3.5 min on 2 idle cores
    .venv/bin/python benchmarks/infer_bench.py --quick    # 512² and 1024²
    .venv/bin/python benchmarks/infer_bench.py --device cuda --sizes 4096,8192 --batch 32
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from machine_load import run_measured, wait_idle  # benchmarks/, beside this script

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [REPO]
OUT = os.path.join(HERE, "output")
DATA = os.path.join(OUT, "infer_data")


# ---- inputs -------------------------------------------------------------------------------------

def build_raster(size: int) -> str:
    """N x N RGB uint8, EPSG:32617, 0.5 m: smooth colour noise with bright squares, written in
    strips (little memory)."""
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    path = os.path.join(DATA, f"bench_{size}.tif")
    if os.path.isfile(path):
        return path
    os.makedirs(DATA, exist_ok=True)
    tmp = path + ".partial"
    profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs="EPSG:32617",
                   transform=Affine(0.5, 0, 500000.0, 0, -0.5, 3320000.0), tiled=True, blockxsize=256,
                   blockysize=256, compress="DEFLATE", predictor=2, photometric="RGB")
    rng = np.random.default_rng(size)
    phase = rng.uniform(0, 6.28, (3, 4))
    with rasterio.open(tmp, "w", **profile) as dst:
        for row in range(0, size, 256):
            h = min(256, size - row)
            yy, xx = np.mgrid[row:row + h, 0:size].astype(np.float32)
            bands = []
            for b in range(3):
                v = 110 + 40 * np.sin(xx / 97 + phase[b, 0]) * np.cos(yy / 131 + phase[b, 1]) \
                    + 20 * np.sin((xx + yy) / 23 + phase[b, 2])
                bands.append(v + rng.normal(0, 6, v.shape))
            data = np.stack(bands)
            for _ in range(size // 40):  # bright squares: something for a model to find
                x, y, s = int(rng.integers(0, size - 20)), int(rng.integers(0, max(1, h - 4))), int(rng.integers(6, 20))
                data[0, y:y + s, x:x + s] += 90
            dst.write(np.clip(data, 0, 255).astype("uint8"), window=Window(0, row, size, h))
    os.replace(tmp, path)
    return path


def build_model(tile: int, backbone: str) -> str:
    """A UNET package with random weights (emd + pth as the trainer writes them)."""
    import torch
    from dl_engine.models.registry import build_from_emd

    folder = os.path.join(DATA, f"model_{backbone.lower()}_{tile}")
    emd_path = os.path.join(folder, "bench.emd")
    if os.path.isfile(emd_path):
        return emd_path
    os.makedirs(folder, exist_ok=True)
    emd = {"Framework": "PyTorch", "ModelType": "ImageClassification", "ExtractBands": [0, 1, 2],
           "Classes": [{"Value": 1, "Name": "bright", "Color": [250, 40, 40]},
                       {"Value": 2, "Name": "other", "Color": [40, 40, 250]}],
           "ModelFile": "bench.pth", "ImageHeight": tile, "ImageWidth": tile, "ModelName": "UnetClassifier",
           "ModelParameters": {"backbone": backbone.lower(), "backend": "pytorch"}, "IsMultispectral": False,
           "SupportsVariableTileSize": True,
           "Engine": {"name": "deeplearningtools", "model_type": "UNET", "backbone_keyword": backbone,
                      "num_classes": 3}}
    torch.manual_seed(0)
    module = build_from_emd(emd)
    torch.save(module.state_dict(), os.path.join(folder, "bench.pth"))
    with open(emd_path, "w") as f:
        json.dump(emd, f, indent=4)
    return emd_path


# ---- measurements (each in a child process) -------------------------------------------------------

def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_forward(a) -> dict:
    import numpy as np
    import torch
    from dl_engine.infer.model import load_model
    from dl_engine.infer.predictor import Predictor
    from dl_engine.runtime import choose_runtime

    runtime = choose_runtime(a.device, a.precision)
    predictor = Predictor(load_model(a.model, "classify_pixels"), runtime)
    raw = np.random.default_rng(0).integers(0, 255, (a.batch, 3, a.tile, a.tile)).astype(np.uint8)
    x = predictor.inputs(raw)

    def module_step():
        with torch.inference_mode(), runtime.autocast():
            predictor.module(x)

    def predictor_step():
        predictor.classify_pixels(raw)

    out = {}
    for name, step in (("module", module_step), ("predictor", predictor_step)):
        for _ in range(2):
            step()
        sync = torch.cuda.synchronize if runtime.is_cuda else (lambda: None)
        sync()
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < a.seconds or n < 3:
            step()
            n += 1
        sync()
        out[f"{name}_tiles_per_s"] = n * a.batch / (time.perf_counter() - t0)
    out["device"] = runtime.description
    return out


def child_run(a) -> dict:
    from dl_engine.infer import InferConfig, run_inference

    raster = os.path.join(DATA, f"bench_{a.size}.tif")
    out = os.path.join(OUT, "infer_tmp", f"classes_{a.size}.tif")
    # import and model loading first, so the baseline holds them
    from dl_engine.infer.model import load_model
    load_model(a.model, "classify_pixels")
    baseline = rss_mb()
    cfg = InferConfig(tool="classify_pixels", in_raster=raster, model=a.model, out_path=out, device=a.device,
                      precision=a.precision, arguments=f"tile_size {a.tile};padding {a.padding};batch_size {a.batch}",
                      num_workers=a.workers)
    result = run_inference(cfg)
    size_mb = os.path.getsize(out) / 1e6
    os.remove(out)
    return {"seconds": result.seconds, "mpx_per_s": result.megapixels_per_s, "tiles": result.tiles,
            "model_seconds": result.details["model_seconds"], "wait_seconds": result.details["wait_seconds"],
            "baseline_rss_mb": baseline, "peak_rss_mb": peak_rss_mb(), "out_mb": size_mb, "device": result.device}


def in_child(args, extra) -> dict:
    if args.wait_idle:
        wait_idle(args.wait_idle)
    cmd = [sys.executable, os.path.abspath(__file__)] + extra + [
        "--tile", str(args.tile), "--padding", str(args.padding), "--batch", str(args.batch), "--device", args.device,
        "--precision", args.precision, "--model", args.model, "--seconds", str(args.seconds)]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    p, _, others = run_measured(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        raise SystemExit(f"measurement failed: {' '.join(extra)}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["others"] = others  # cores other jobs used meanwhile: above ~0.3 they slowed the figure down
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="rasters of 512² and 1024²")
    ap.add_argument("--sizes", default=None, help="raster sizes, comma separated (default 2048,4096)")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--padding", type=int, default=64)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--backbone", default="RESNET18")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--workers", type=int, default=None, help="reader threads (default: the tool's)")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each forward measurement")
    ap.add_argument("--wait-idle", type=float, default=60.0,
                    help="before each measurement wait up to this many seconds for other jobs to leave the CPUs "
                         "idle (0: do not wait)")
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--child", choices=("forward", "run"), help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child_forward(a) if a.child == "forward" else child_run(a)))
        return 0

    sizes = [int(s) for s in (a.sizes or ("512,1024" if a.quick else "2048,4096")).split(",")]
    if a.quick:
        a.seconds = min(a.seconds, 5.0)
    t_all = time.perf_counter()
    a.model = build_model(a.tile, a.backbone)
    for s in sizes:
        build_raster(s)
    stride = a.tile - 2 * a.padding
    print(f"UNET {a.backbone} (random weights), tile {a.tile}, padding {a.padding} (kept {stride}²), batch {a.batch}, "
          f"device {a.device}, precision {a.precision}")
    # forward, run, forward, run, forward: each run is compared with the forward figures
    # measured just before and after it (the load of a shared machine drifts)
    fwd = [in_child(a, ["--child", "forward"])]
    runs = {}
    for s in sizes:
        runs[s] = in_child(a, ["--child", "run", "--size", str(s)])
        fwd.append(in_child(a, ["--child", "forward"]))
    print(f"device: {fwd[0]['device']}")
    print(f"{'measurement':34} {'Mpx/s':>8} {'tiles/s':>8} {'vs forward':>10} {'seconds':>8} {'model busy':>10} "
          f"{'peak RSS MB':>11} {'run +MB':>8} {'others':>6}")
    for i, f in enumerate(fwd):
        for key, name in (("module", "forward (module, batch in memory)"),
                          ("predictor", "  predictor (raw batch, argmax)")):
            tps = f[f"{key}_tiles_per_s"]
            print(f"{name:34} {tps * stride * stride / 1e6:8.3f} {tps:8.2f} {'':>10} {'':>8} {'':>10} {'':>11} "
                  f"{'':>8} {f['others']:6.2f}")
        if i < len(sizes):
            s = sizes[i]
            r = runs[s]
            ref = (fwd[i]["module_tiles_per_s"] + fwd[i + 1]["module_tiles_per_s"]) / 2 * stride * stride / 1e6
            r["vs_forward"] = r["mpx_per_s"] / ref
            name = f"classify pixels {s}x{s}"
            print(f"{name:34} {r['mpx_per_s']:8.3f} {r['tiles'] / r['seconds']:8.2f} {r['vs_forward']:10.2f} "
                  f"{r['seconds']:8.1f} {r['model_seconds'] / r['seconds']:10.2f} {r['peak_rss_mb']:11.0f} "
                  f"{r['peak_rss_mb'] - r['baseline_rss_mb']:8.0f} {r['others']:6.2f}")
    print("vs forward: output Mpx/s / the module's (mean of the forward rows before and after); model busy: share "
          "of the run's wall time spent in the model; run +MB: peak RSS above the RSS with torch imported and "
          "the model loaded; others: CPU cores other jobs used meanwhile")
    print(f"total {time.perf_counter() - t_all:.0f} s")
    report = {"args": {k: v for k, v in vars(a).items() if k not in ("child", "size")}, "forward": fwd,
              "runs": {str(s): r for s, r in runs.items()}}
    with open(os.path.join(OUT, "infer_bench.json"), "w") as f:
        json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
