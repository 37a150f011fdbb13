"""The inference tools, end to end: check every input (nothing is written before all
checks pass), load the model on the chosen device, run the tool, report.

Used in-process (``run_inference``) and by the worker process (``python -m dl_engine infer``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

from ..destinations import named_os_errors
from ..errors import InputError
from ..events import Events
from .arguments import TOOL_NAMES, parse_tool_arguments
from .config import OUT_PARAMETERS, InferConfig
from ..errors import Canceled
from .job import Job
from .model import load_model
from ..raster_info import describe, open_raster, quiet_georeferencing, warn_without_crs
from .source import check_bands
from .grid import plan_grid

GDAL_CACHE_MB = 256  # GDAL's block cache (default 5% of RAM) would grow with the raster; windows need little


@dataclass
class InferResult:
    tool: str
    out_path: str
    seconds: float
    device: str  # "cpu (2 threads, 2 cores), bf16 autocast"
    width: int  # output grid
    height: int
    tiles: int  # model windows (or chips) processed
    megapixels_per_s: float  # output grid pixels per second
    features: Optional[int] = None  # detect / classify objects: features written
    class_counts: Dict[str, int] = field(default_factory=dict)  # classify pixels: pixels per class value
    details: Dict[str, object] = field(default_factory=dict)

    def event(self) -> Dict[str, object]:
        """The worker's ``result`` event fields."""
        out = {"tool": self.tool, "out_path": self.out_path, "seconds": round(self.seconds, 3),
               "device": self.device, "width": self.width, "height": self.height, "tiles": self.tiles,
               "megapixels_per_s": round(self.megapixels_per_s, 3)}
        if self.features is not None:
            out["features"] = self.features
        if self.class_counts:
            out["class_counts"] = self.class_counts
        return out


def run_inference(config: InferConfig, events: Optional[Events] = None,
                  cancel: Callable[[], bool] = lambda: False) -> InferResult:
    """Run one inference tool. Raises InputError (bad input, naming the parameter) and
    Canceled (``cancel()`` turned true; no output left behind)."""
    config.check()
    events = events or Events()
    out = OUT_PARAMETERS[config.tool]
    with quiet_georeferencing(), named_os_errors(out, os.path.dirname(os.path.abspath(config.out_path))):
        warn_without_crs(config.in_raster, events.warning)  # processed in its own pixels or coordinates
        return _run(config, events, cancel)


def _check_device_memory(config: InferConfig, job: Job) -> None:
    """On a GPU, a batch of the run's tiles against its free memory (the host's memory was
    ``config.check``'s, before the model's tile size was known)."""
    device = job.predictor.runtime.device
    if device.type != "cuda":
        return
    import torch

    try:
        free = int(torch.cuda.mem_get_info(device)[0])
    except Exception:  # noqa: BLE001 - a driver that cannot say
        return
    config.check_memory({"tile_size": job.args.tile, "batch_size": job.args.batch_size},
                        bands=job.model.input_bands, device_bytes=free)


def _run(config: InferConfig, events: Events, cancel: Callable[[], bool]) -> InferResult:
    import rasterio

    t0 = time.perf_counter()
    job = prepare(config, events, cancel)
    _check_device_memory(config, job)
    events.log(f"{TOOL_NAMES[config.tool]}: {job.model.spec.keyword} model, {len(job.model.classes)} class(es); "
               f"grid {job.grid.width} x {job.grid.height} px; tile {job.args.tile} px, padding "
               f"{job.args.padding}, batch {job.args.batch_size}; device: {job.predictor.runtime.description}")
    if config.processing_mode == "PROCESS_ITEMS_SEPARATELY" and config.tool != "detect_objects":
        events.log("PROCESS_ITEMS_SEPARATELY: this tool processes the mosaic as one image")
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
        if config.tool == "classify_pixels":
            from .pixels import classify_pixels
            stats = classify_pixels(job)
        elif config.tool == "detect_objects":
            from .detect import detect_objects
            stats = detect_objects(job)
        else:
            from .objects import classify_objects
            stats = classify_objects(job)
    seconds = time.perf_counter() - t0
    result = InferResult(tool=config.tool, out_path=os.path.abspath(config.out_path), seconds=seconds,
                         device=job.predictor.runtime.description, width=job.grid.width, height=job.grid.height,
                         tiles=int(stats.pop("tiles", 0)),
                         megapixels_per_s=job.grid.pixels / 1e6 / max(seconds, 1e-9),
                         features=stats.pop("features", None), class_counts=stats.pop("class_counts", {}),
                         details=stats)
    events.progress(100.0, "done")
    events.log(f"done in {seconds:.1f} s ({result.megapixels_per_s:.2f} Mpx/s): {result.out_path}")
    events.emit("result", **result.event())
    return result


def prepare(config: InferConfig, events: Events, cancel: Callable[[], bool]) -> Job:
    """Every check on the user's input, then the model on its device."""
    from ..runtime import choose_runtime
    from .predictor import Predictor

    if config.tool == "classify_objects" and config.in_features and not os.path.isfile(config.in_features):
        raise InputError("IN_FEATURES", f"{config.in_features} does not exist; give a GeoJSON file of the features")
    model = load_model(config.model, config.tool)
    args = parse_tool_arguments(config.tool, config.arguments, model.chip_size)
    src = open_raster(config.in_raster)
    try:
        desc = describe(src, config.in_raster)
        check_bands(desc, model)
        grid = plan_grid(src, config.extent, config.cell_size)
    finally:
        src.close()
    if not model.normalization.is_multispectral and desc.dtype != "uint8":
        events.warning(f"the model was trained on 8-bit RGB imagery; {config.in_raster} holds {desc.dtype}: "
                       "its values are used as they are (0-255 expected)")
    runtime = choose_runtime(config.device, config.precision)
    predictor = Predictor(model, runtime)
    workers = config.num_workers or (min(4, os.cpu_count() or 1) if runtime.is_cuda else 1)
    return Job(config=config, model=model, predictor=predictor, args=args, raster=desc, grid=grid,
               events=events, cancel=cancel, workers=max(1, int(workers)), depth=max(3, 2 * int(workers)))


__all__ = ["InferResult", "Canceled", "run_inference"]
