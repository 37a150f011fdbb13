"""Shared fixtures of the dl_engine.package tests: TrainedModel records over small real
exports (RGB uint8 and 4-band UInt16) and a stand-in pixel model spec (the registry's own
UNET lives in dl_engine.models.pixel, tested separately when it exists)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import data_helpers as dh
import engine_helpers as h
from dl_engine.data import normalization_for, open_folders
from dl_engine.models import registry
from dl_engine.package.record import SampleResult, TrainedModel

TEST_KEYWORD = "TESTUNET"
TEST_MODEL_NAME = "TestUnetClassifier"


def _build(ctx):  # never called: the package code does not build networks
    raise AssertionError("build called")


def make_spec(**kw) -> registry.ModelSpec:
    args = dict(keyword=TEST_KEYWORD, model_name=TEST_MODEL_NAME, model_type="ImageClassification", kind="pixel",
                formats=("Classified_Tiles",), arguments={"depth": 4}, build=_build,
                emd_params=lambda arguments, backbone: {"ignore_mapped_class": [], "SupportsVariableTileSize": True})
    args.update(kw)
    return registry.ModelSpec(**args)


@pytest.fixture
def fake_spec():
    """TESTUNET, registered for the test (the registry is as before afterwards)."""
    with registry.registered(make_spec()) as (spec,):
        yield spec


@pytest.fixture(scope="session")
def exports(tmp_path_factory):
    """{"rgb": export folder, "ms": export folder} (Classified_Tiles, classes Oak=3, Pine=7)."""
    root = tmp_path_factory.mktemp("package_exports")
    rgb, _ = dh.raster(root)
    data = h.random_image(4, dh.SIZE, dh.SIZE, dtype="uint16", seed=3, low=200, high=3000)
    ms = h.write_raster(root / "ms.tif", data)
    return {"rgb": dh.export(rgb, root / "rgb", "Classified_Tiles"),
            "ms": dh.export(ms, root / "ms", "Classified_Tiles")}


def history(n=3):
    return [{"epoch": i, "train_loss": 1.0 / (i + 1), "valid_loss": 1.2 / (i + 1), "accuracy": 0.5 + 0.1 * i,
             "miou": 0.3 + 0.1 * i, "dice": 0.4 + 0.1 * i, "seconds": 3725.4 + i, "lr": 1e-3} for i in range(n)]


def metrics():
    per = {"NoData": (0.9, 0.8, 0.847, 0.73), "Oak": (0.7, 0.6, 0.646, 0.48), "Pine": (0.5, 0.4, 0.444, 0.29)}
    return {"valid_loss": 0.4, "accuracy": 0.953551234, "miou": 0.5, "dice": 0.64, "f1": 0.64,
            "per_class": {k: dict(zip(("precision", "recall", "f1", "iou"), v)) for k, v in per.items()}}


def samples(n=2, size=32):
    rng = np.random.default_rng(0)
    return [SampleResult(image=rng.integers(0, 256, (size, size, 3)).astype(np.uint8),
                         truth=rng.integers(0, 3, (size, size)), prediction=rng.integers(0, 3, (size, size)))
            for _ in range(n)]


def make_record(folder, name="mymodel", **kw) -> TrainedModel:
    data = open_folders(folder, warn=False)
    args = dict(name=name, model_type=TEST_KEYWORD, backbone="resnet34", backbone_keyword="RESNET34",
                arguments={"depth": 4}, class_map=data.class_map(), normalization=normalization_for(data), data=data,
                chip_size=32, resize_to=None, learning_rate=0.00083176, monitor="VALID_LOSS", best_value=0.4,
                best_epoch=2, history=history(), metrics=metrics(),
                settings={"in_folder": str(folder), "out_folder": "x", "max_epochs": 3, "batch_size": 2,
                          "device": "cpu"},
                samples=samples())
    args.update(kw)
    return TrainedModel(**args)


def state_dict():
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 3, 1))
    return net.state_dict()


def listing(folder) -> dict:
    """Every file and folder under ``folder`` (hidden ones too) with its bytes."""
    return h.snapshot(Path(folder))
