"""Helpers for the inference tests (no QGIS): one small trained U-Net shared by every test of
the session, truth masks of synthetic rasters, and fake detection / classification model
types (registered per test by the ``fake_models`` fixture), so that tiling, NMS and
georeferencing are checked without the real detectors."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import rasterio
import rasterio.features
import torch
from torch import nn

import engine_helpers as h
import train_helpers as th
from dl_engine.infer import InferConfig
from dl_engine.models.registry import BuiltModel, ModelSpec

_CACHE: Dict[str, object] = {}


def trained_model(tmp_path_factory):
    """A UNET (RESNET18, 32 px chips) trained for 6 epochs on train_helpers' roofs (value 3)
    and pools (value 7); trained once per session. Returns the TrainResult (or, when the
    environment names a folder in INFER_TEST_MODEL holding roofs.dlpk and roofs.emd, that
    model: for working on the tests without training each time)."""
    given = os.environ.get("INFER_TEST_MODEL")
    if given and "unet" not in _CACHE:
        from types import SimpleNamespace
        _CACHE["unet"] = SimpleNamespace(out_model_file=os.path.join(given, "roofs.dlpk"),
                                         emd=os.path.join(given, "roofs.emd"))
    if "unet" not in _CACHE:
        from dl_engine.train import TrainConfig
        from dl_engine.train.run import run_training
        folder = tmp_path_factory.mktemp("infer_model")
        export = th.learnable_export(folder)
        _CACHE["unet"] = run_training(TrainConfig(
            in_folder=export, out_folder=str(folder / "roofs"), backbone="RESNET18", batch_size=8, max_epochs=6,
            learning_rate=3e-3, validation_percentage=20, num_workers=0, stop_training=False))
    return _CACHE["unet"]


def scene(folder, seed: int = 11, size: int = 160, **kw):
    """A new raster like the training one: (path, truth class values (size, size))."""
    path, geoms, values = th.learnable_raster(folder, seed=seed, size=size, **kw)
    truth = rasterio.features.rasterize(list(zip(geoms, values)), out_shape=(size, size), transform=h.T0,
                                        fill=0, dtype="uint8")
    return path, truth


def iou(pred: np.ndarray, truth: np.ndarray, value: int) -> float:
    a, b = pred == value, truth == value
    return float((a & b).sum() / max(1, (a | b).sum()))


def read(path):
    with rasterio.open(path) as src:
        return src.read(1), src.profile, src


def config(tool: str, raster, model, out, **kw) -> InferConfig:
    kw.setdefault("device", "cpu")
    return InferConfig(tool=tool, in_raster=str(raster), model=str(model), out_path=str(out), **kw)


# ---- fake model types ---------------------------------------------------------------------------

class Brightness(nn.Module):
    """One learnable-looking parameter so the package has weights to load."""

    def __init__(self, in_channels: int = 3, num_classes: int = 2):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.num_classes = num_classes

    def forward(self, x):
        return x.mean(1, keepdim=True) * self.scale


class LocalMean(Brightness):
    """A pixel "model" whose output depends on a 5 x 5 neighbourhood only: any tiling with
    padding >= 2 must give the very same raster (a test of the stitching, free of what a
    real network makes of more or less context). Class 1 bright, 2 dark, else background."""

    def forward(self, x):
        m = nn.functional.avg_pool2d(x[:, :1] * self.scale, 5, stride=1, padding=2, count_include_pad=False)
        return torch.cat([torch.zeros_like(m), m - 1.0, -1.5 - m], 1)


def fake_detect(module, x, threshold: float = 0.5):
    """"Detects" bright squares: connected bright areas of the first band, class 1 when their
    box is below 12 px, else class 2; the score grows with the box's area (0.6 .. 0.9), so a
    whole square outscores a part of it cut by a tile's edge."""
    out = []
    bright = (x[:, 0] > 1.0).cpu().numpy().astype(np.uint8)
    for k in range(x.shape[0]):
        boxes, scores, labels = [], [], []
        for geom, value in rasterio.features.shapes(bright[k], mask=bright[k] > 0):
            xs = [p[0] for ring in geom["coordinates"] for p in ring]
            ys = [p[1] for ring in geom["coordinates"] for p in ring]
            box = [min(xs), min(ys), max(xs), max(ys)]
            boxes.append(box)
            scores.append(score_of(box))
            labels.append(1 if max(box[2] - box[0], box[3] - box[1]) < 12 else 2)
        out.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                    "scores": torch.tensor(scores, dtype=torch.float32),
                    "labels": torch.tensor(labels, dtype=torch.int64)})
    return out


def score_of(box) -> float:
    return 0.6 + 0.3 * min(1.0, (box[2] - box[0]) * (box[3] - box[1]) / 256.0)


def fake_instances(module, x):
    """As fake_detect, plus each object's mask (the bright pixels inside its box)."""
    out = fake_detect(module, x)
    bright = (x[:, 0] > 1.0).float()
    for k, o in enumerate(out):
        masks = torch.zeros((len(o["boxes"]),) + tuple(x.shape[-2:]))
        for i, (x0, y0, x1, y1) in enumerate(o["boxes"].round().long().tolist()):
            masks[i, y0:y1, x0:x1] = bright[k, y0:y1, x0:x1]
        o["masks"] = masks
    return out


def fake_classify(module, x):
    """Class index 1 ("bright") when the chip's centre is bright, else 0; probabilities."""
    h_, w_ = x.shape[-2:]
    centre = x[:, 0, h_ // 2 - 2:h_ // 2 + 2, w_ // 2 - 2:w_ // 2 + 2].mean((1, 2))
    p1 = torch.sigmoid(4 * (centre - 1.0))
    return torch.stack([1 - p1, p1], 1)


FAKES = {
    "FAKEPIXELS": ("FakePixels", "ImageClassification", "pixel", None),
    "FAKEDETECTOR": ("FakeDetector", "ObjectDetection", "detection", fake_detect),
    "FAKEMASKS": ("FakeMasks", "InstanceDetection", "instance", fake_instances),
    "FAKECLASSIFIER": ("FakeClassifier", "ObjectClassification", "classification", fake_classify),
}


def fake_specs():
    """The ModelSpecs of FAKES. Tests register them for their own duration with the
    ``fake_models`` fixture (tests/engine/conftest.py), which restores the registry."""
    return [ModelSpec(keyword=keyword, model_name=name, model_type=model_type, kind=kind,
                      formats=("PASCAL_VOC_rectangles",), arguments={},
                      build=lambda ctx, kind=kind: BuiltModel(
                          (LocalMean if kind == "pixel" else Brightness)(ctx.in_channels, ctx.num_classes),
                          "fake", False),
                      emd_params=lambda a, b: {}, predict=predict)
            for keyword, (name, model_type, kind, predict) in FAKES.items()]


def fake_package(folder, keyword: str, classes: Sequence[tuple], chip: int = 32, dlpk: bool = False,
                 emd_extra: Optional[dict] = None) -> str:
    """An emd + pth (or a .dlpk) of a fake model type written as our packages are.
    ``classes``: (value, name, (r, g, b)) in index order. Reading it needs the fake types
    registered: the test uses the ``fake_models`` fixture."""
    name, model_type, kind, _ = FAKES[keyword]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    emd = {"Framework": "PyTorch", "ModelType": model_type, "ExtractBands": [0, 1, 2],
           "Classes": [{"Value": v, "Name": n, "Color": list(c)} for v, n, c in classes],
           "ModelFile": "fake.pth", "ImageHeight": chip, "ImageWidth": chip, "ModelName": name,
           "ModelParameters": {"backbone": "fake", "backend": "pytorch"}, "IsMultispectral": False,
           "Engine": {"name": "deeplearningtools", "model_type": keyword,
                      "num_classes": len(classes) + (0 if kind == "classification" else 1)}}
    emd.update(emd_extra or {})
    (folder / "fake.emd").write_text(json.dumps(emd))
    torch.save(Brightness().state_dict(), folder / "fake.pth")
    if not dlpk:
        return str(folder / "fake.emd")
    path = folder / "fake.dlpk"
    with zipfile.ZipFile(path, "w") as z:
        z.write(folder / "fake.emd", "fake.emd")
        z.write(folder / "fake.pth", "fake.pth")
    return str(path)


def squares_raster(folder, squares: Sequence[tuple], size: int = 200, name: str = "squares.tif", **kw) -> str:
    """Dark noise with bright squares (col, row, side) in pixels; returns the path."""
    rng = np.random.default_rng(0)
    data = rng.integers(20, 60, size=(3, size, size)).astype(np.uint8)
    for col, row, side in squares:
        data[:, row:row + side, col:col + side] = 250
    return h.write_raster(Path(folder) / name, data, **kw)


def read_features(path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
