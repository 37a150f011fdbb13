"""The smoke test, run INSIDE the engine environment by the installer and by inspect():

    python -m dl_engine.environment.smoke [--modules a,b,…] [--device auto|cpu|cuda|mps]

It imports every module of the pinned list, then (when torch is among them) torch and
torchvision together (torchvision's compiled operators must match torch: a pair from two
indexes fails here with "operator torchvision::nms does not exist") and runs a convolution
forward and backward on the device. It prints ONE JSON line:

    {"ok", "python", "versions": {distribution: version}, "missing": [{"module", "error"}],
     "pair_error", "device", "cuda", "gpu_name", "gpu_memory_mib", "conv", "problems": […]}

torch is imported inside functions only: QGIS's Python imports this package without it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import traceback
from importlib import metadata
from typing import Dict, List

# What inspect() needs to tell a torch/torchvision mismatch from another failure.
PAIR_MARKERS = ("torchvision::", "undefined symbol", "DLL load failed", "does not exist")


def versions(distributions: List[str]) -> Dict[str, str]:
    found = {}
    for name in distributions:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def check_modules(modules: List[str]) -> List[dict]:
    missing = []
    for module in modules:
        if module in ("torch", "torchvision"):
            continue  # checked as a pair
        try:
            importlib.import_module(module)
        except BaseException as error:  # a broken compiled module may raise anything
            missing.append({"module": module, "error": f"{type(error).__name__}: {error}"[:500]})
    return missing


def torch_check(device: str) -> dict:
    """torch + torchvision, then a conv forward and backward on ``device``."""
    out = {"pair_error": None}
    try:
        import torch
    except BaseException as error:
        return {"torch_error": f"{type(error).__name__}: {error}"[:500]}
    out["torch"] = torch.__version__
    out["cuda"] = torch.version.cuda
    try:
        import torchvision
        from torchvision.ops import nms  # the compiled operators: fails on a mismatched pair

        boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.1]])
        nms(boxes, torch.tensor([1.0, 0.5]), 0.5)
        out["torchvision"] = torchvision.__version__
    except BaseException as error:
        out["pair_error"] = f"{type(error).__name__}: {error}"[:500]
    cuda_ok = torch.cuda.is_available()
    mps_ok = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if device == "auto":
        device = "cuda" if cuda_ok else "mps" if mps_ok else "cpu"
    out["device"] = device
    if device == "cuda":
        if not cuda_ok:
            out["device_error"] = (f"torch {torch.__version__} (CUDA {torch.version.cuda}) cannot use the GPU: "
                                   "torch.cuda.is_available() is False (driver too old, or no GPU visible)")
            return out
        props = torch.cuda.get_device_properties(0)
        out["gpu_name"] = props.name
        out["gpu_memory_mib"] = int(props.total_memory // (1024 * 1024))
    elif device == "mps" and not mps_ok:
        out["device_error"] = "torch cannot use Apple's GPU (torch.backends.mps.is_available() is False)"
        return out
    try:
        conv = torch.nn.Conv2d(3, 4, 3, padding=1).to(device)
        x = torch.randn(2, 3, 16, 16, device=device, requires_grad=True)
        conv(x).square().mean().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        ok = conv.weight.grad is not None and bool(torch.isfinite(conv.weight.grad).all())
        out["conv"] = f"forward and backward ok on {device}" if ok else None
        if not ok:
            out["device_error"] = f"a convolution on {device} gave no finite gradient"
    except BaseException as error:
        out["device_error"] = f"a convolution on {device} failed: {type(error).__name__}: {error}"[:500]
    return out


def run(modules: List[str], distributions: List[str], device: str) -> dict:
    result = {"python": platform.python_version(), "executable": sys.executable,
              "versions": versions(distributions), "missing": check_modules(modules), "problems": []}
    if "torch" in modules:
        result.update(torch_check(device))
    problems = result["problems"]
    for item in result["missing"]:
        problems.append(f"{item['module']} does not import ({item['error']})")
    if result.get("torch_error"):
        problems.append(f"torch does not import ({result['torch_error']})")
    if result.get("pair_error"):
        problems.append(f"torchvision {result['versions'].get('torchvision', '?')} does not work with torch "
                        f"{result.get('torch', '?')} ({result['pair_error']})")
    if result.get("device_error"):
        problems.append(result["device_error"])
    result["ok"] = not problems
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dl_engine.environment.smoke")
    parser.add_argument("--modules", default="torch,torchvision", help="comma-separated modules to import")
    parser.add_argument("--distributions", default="", help="comma-separated distributions to report versions of")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    args = parser.parse_args(argv)
    modules = [m for m in args.modules.split(",") if m]
    distributions = [d for d in args.distributions.split(",") if d]
    try:
        result = run(modules, distributions, args.device)
    except BaseException as error:  # the caller reads one JSON line whatever happens
        result = {"ok": False, "problems": [f"the smoke test failed: {type(error).__name__}: {error}"],
                  "traceback": traceback.format_exc(limit=-5)}
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
