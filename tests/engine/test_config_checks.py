"""Every rule on a single parameter value lives on its configuration dataclass (``check()``):
bad values raise InputError naming the arcpy parameter, the defaults pass, and the check
imports nothing beyond the standard library (QGIS's process runs it before a worker starts).
No QGIS, no data."""

import dataclasses
import subprocess
import sys

import pytest

from dl_engine.autodl.config import AutoDLConfig
from dl_engine.errors import InputError
from dl_engine.export.config import ExportConfig
from dl_engine.infer.config import InferConfig
from dl_engine.train.config import TrainConfig


def train(**kw):
    return dataclasses.replace(TrainConfig(in_folder="/data/chips", out_folder="/data/model"), **kw)


def autodl(**kw):
    return dataclasses.replace(AutoDLConfig(in_data="/data/chips", out_model="/data/best.dlpk"), **kw)


def infer(which="classify_pixels", **kw):
    return dataclasses.replace(InferConfig(tool=which, in_raster="/data/image.tif", model="/data/m.dlpk",
                                           out_path="/data/out.tif"), **kw)


def export(**kw):
    return dataclasses.replace(ExportConfig(raster="/data/image.tif", out_folder="/data/chips"), **kw)


def refused(config, parameter, *words):
    with pytest.raises(InputError) as raised:
        config.check()
    assert raised.value.parameter == parameter, str(raised.value)
    for word in words:
        assert word in raised.value.message, raised.value.message
    return raised.value.message


# ---- defaults pass --------------------------------------------------------------------------------

@pytest.mark.parametrize("config", [train(), autodl(), infer(), infer("detect_objects", out_path="/d/o.geojson"),
                                    infer("classify_objects", out_path="/d/o.geojson"), export()],
                         ids=["train", "autodl", "classify_pixels", "detect_objects", "classify_objects", "export"])
def test_defaults_pass(config):
    assert config.check() is None


def test_checks_import_only_the_standard_library():
    code = ("import sys; import dl_engine.train.config, dl_engine.autodl.config, dl_engine.infer.config, "
            "dl_engine.export.config, dl_engine.infer.arguments; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'torch', 'rasterio', 'shapely', "
            "'affine', 'timm', 'PIL'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- TrainConfig ----------------------------------------------------------------------------------

@pytest.mark.parametrize("change, parameter, words", [
    ({"validation_percentage": 100}, "VALIDATION_PERCENTAGE", ["below 100"]),
    ({"validation_percentage": 100.0}, "VALIDATION_PERCENTAGE", ["below 100"]),
    ({"validation_percentage": -1}, "VALIDATION_PERCENTAGE", []),
    ({"validation_percentage": float("nan")}, "VALIDATION_PERCENTAGE", []),
    ({"validation_percentage": "ten"}, "VALIDATION_PERCENTAGE", []),
    ({"device": "gpu"}, "DEVICE", ["auto", "cuda:N", "mps"]),
    ({"device": "cpu:1"}, "DEVICE", []),
    ({"batch_size": 0}, "BATCH_SIZE", ["at least 1", "0"]),
    ({"batch_size": 2.5}, "BATCH_SIZE", []),
    ({"batch_size": True}, "BATCH_SIZE", []),
    ({"max_epochs": -3}, "MAX_EPOCHS", ["at least 1"]),
    ({"learning_rate": 0.0}, "LEARNING_RATE", ["above 0", "empty"]),
    ({"learning_rate": -0.1}, "LEARNING_RATE", []),
    ({"learning_rate": float("inf")}, "LEARNING_RATE", []),
    ({"chip_size": 0}, "CHIP_SIZE", ["empty"]),
    ({"resize_to": -8}, "RESIZE_TO", []),
    ({"weight_init_scheme": "ZEROS"}, "WEIGHT_INIT_SCHEME", ["RED_BAND"]),
    ({"monitor": "LOSS"}, "MONITOR", ["VALID_LOSS", "MIOU"]),
    ({"backbone": "  "}, "BACKBONE_MODEL", ["RESNET34"]),
    ({"in_folder": " ; "}, "IN_FOLDER", ["Export Training Data"]),
    ({"out_folder": ""}, "OUT_FOLDER", []),
    ({"out_folder": "/data/chips"}, "OUT_FOLDER", ["IN_FOLDER"]),
    ({"pretrained_model": "/data/weights.pth"}, "PRETRAINED_MODEL", [".emd", ".dlpk"]),
    ({"num_workers": -1}, "num_workers", []),
])
def test_train_refuses(change, parameter, words):
    refused(train(**change), parameter, *words)


@pytest.mark.parametrize("change", [
    {"device": "mps"}, {"device": "cuda:1"}, {"device": "CUDA"}, {"device": ""}, {"validation_percentage": 0},
    {"validation_percentage": 99.5}, {"learning_rate": 0.001}, {"chip_size": 224}, {"monitor": "miou"},
    {"pretrained_model": "/data/earlier.DLPK"}, {"in_folder": "/a;/b"}, {"num_workers": 0},
])
def test_train_accepts(change):
    train(**change).check()


def test_train_engine_runs_the_check_first(tmp_path):
    """run_training refuses before it reads anything (IN_FOLDER does not even exist)."""
    pytest.importorskip("torch")
    from dl_engine.train.run import run_training

    with pytest.raises(InputError) as raised:
        run_training(TrainConfig(in_folder=str(tmp_path / "none"), out_folder=str(tmp_path / "m"),
                                 validation_percentage=100))
    assert raised.value.parameter == "VALIDATION_PERCENTAGE"
    assert not (tmp_path / "m").exists()


def test_split_refuses_100_as_the_config_does():
    from dl_engine.data.split import split_samples

    with pytest.raises(InputError) as raised:
        split_samples([], 100)
    assert raised.value.parameter == "VALIDATION_PERCENTAGE"


# ---- AutoDLConfig ---------------------------------------------------------------------------------

@pytest.mark.parametrize("change, parameter, words", [
    ({"total_time_limit": 0}, "TOTAL_TIME_LIMIT", ["above 0", "0.05"]),
    ({"total_time_limit": -1.0}, "TOTAL_TIME_LIMIT", []),
    ({"total_time_limit": float("nan")}, "TOTAL_TIME_LIMIT", []),
    ({"autodl_mode": "FAST"}, "AUTODL_MODE", ["BASIC", "ADVANCED"]),
    ({"device": "gpu"}, "DEVICE", ["cuda:N"]),
    ({"validation_percentage": 100}, "VALIDATION_PERCENTAGE", []),
    ({"out_model": "/data/best.zip"}, "OUT_MODEL", [".dlpk"]),
    ({"out_model": " "}, "OUT_MODEL", []),
    ({"in_data": ""}, "IN_DATA", ["Export Training Data"]),
    ({"networks": "UnetClassifier"}, "NETWORKS", []),
    ({"pretrained_model": "/data/weights.pth"}, "PRETRAINED_MODEL", []),
    ({"max_batch_size": 0}, "max_batch_size", []),
])
def test_autodl_refuses(change, parameter, words):
    refused(autodl(**change), parameter, *words)


@pytest.mark.parametrize("change", [
    {"device": "mps"}, {"autodl_mode": "advanced"}, {"out_model": "/data/best"}, {"total_time_limit": 0.05},
    {"networks": ["UnetClassifier", "DEEPLAB"]},
])
def test_autodl_accepts(change):
    autodl(**change).check()


# ---- InferConfig ----------------------------------------------------------------------------------

@pytest.mark.parametrize("tool, change, parameter, words", [
    ("classify_pixels", {"device": "gpu please"}, "DEVICE", ["cuda:N"]),
    ("classify_pixels", {"cell_size": 0.0}, "CELL_SIZE", ["above 0"]),
    ("classify_pixels", {"cell_size": -2.0}, "CELL_SIZE", []),
    ("classify_pixels", {"extent": [10, 0, 0, 10]}, "EXTENT", ["xmin < xmax"]),
    ("classify_pixels", {"extent": [0, 0, 10]}, "EXTENT", []),
    ("classify_pixels", {"processing_mode": "TILES"}, "PROCESSING_MODE", ["PROCESS_ITEMS_SEPARATELY"]),
    ("classify_pixels", {"model": "/data/weights.pth"}, "IN_MODEL_DEFINITION", [".dlpk", ".emd"]),
    ("classify_pixels", {"model": ""}, "IN_MODEL_DEFINITION", []),
    ("classify_pixels", {"out_path": ""}, "OUT_CLASSIFIED_RASTER", []),
    ("classify_pixels", {"out_path": "/data/image.tif"}, "OUT_CLASSIFIED_RASTER", ["overwrite"]),
    ("classify_pixels", {"arguments": "threshold 0.5"}, "ARGUMENTS", ["padding", "tile_size"]),
    ("classify_pixels", {"arguments": "batch_size many"}, "ARGUMENTS", []),
    ("classify_pixels", {"tool": "segment"}, "tool", ["classify_pixels"]),
    ("detect_objects", {"max_overlap_ratio": 1.5}, "MAX_OVERLAP_RATIO", ["0 to 1"]),
    ("detect_objects", {"class_value_field": "  "}, "CLASS_VALUE_FIELD", []),
    ("detect_objects", {"class_value_field": "classvalue"}, "CLASS_VALUE_FIELD", ["ClassValue"]),
    ("detect_objects", {"class_value_field": "Score", "confidence_score_field": "score"},
     "CONFIDENCE_SCORE_FIELD", []),
    ("detect_objects", {"confidence_score_field": 'a"b'}, "CONFIDENCE_SCORE_FIELD", ["quotes"]),
    ("detect_objects", {"out_path": ""}, "OUT_DETECTED_OBJECTS", []),
    ("classify_objects", {"class_label_field": ""}, "CLASS_LABEL_FIELD", []),
    ("classify_objects", {"class_label_field": "confidence"}, "CLASS_LABEL_FIELD", ["confidence"]),
    ("classify_objects", {"arguments": "padding 4"}, "ARGUMENTS", ["batch_size", "tile_size"]),
])
def test_infer_refuses(tool, change, parameter, words):
    refused(infer(tool, **change), parameter, *words)


@pytest.mark.parametrize("change", [
    {"device": "mps"}, {"device": "cuda:0"}, {"cell_size": 0.5}, {"extent": [0.0, 0.0, 10.0, 5.0]},
    {"arguments": "padding 16;batch_size 2;tile_size 256"}, {"model": "/data/m.EMD"},
])
def test_infer_accepts(change):
    infer(**change).check()


# ---- ExportConfig ---------------------------------------------------------------------------------

@pytest.mark.parametrize("change, parameter, words", [
    ({"tile_size_x": 0}, "TILE_SIZE_X", ["at least 1"]),
    ({"tile_size_y": -64}, "TILE_SIZE_Y", []),
    ({"stride_x": 0}, "STRIDE_X", []),
    ({"stride_y": 12.5}, "STRIDE_Y", []),
    ({"start_index": -1}, "START_INDEX", ["at least 0"]),
    ({"min_polygon_overlap_ratio": 1.5}, "MIN_POLYGON_OVERLAP_RATIO", ["0 to 1"]),
    ({"reference_system": "WORLD_SPACE"}, "REFERENCE_SYSTEM", ["MAP_SPACE", "PIXEL_SPACE"]),
    ({"processing_mode": "X"}, "PROCESSING_MODE", []),
    ({"crop_mode": "X"}, "CROP_MODE", ["BOUNDING_BOX"]),
    ({"rotation_angle": 360.0}, "ROTATION_ANGLE", ["between 0 and 360"]),
    ({"rotation_angle": float("nan")}, "ROTATION_ANGLE", []),
    ({"workers": -1}, "PARALLEL_PROCESSING_FACTOR", []),
    ({"metadata_format": "COCO"}, "METADATA_FORMAT", ["unknown format"]),
    ({"image_format": "BMP"}, "IMAGE_CHIP_FORMAT", ["TIFF"]),
    ({"extent": (5.0, 5.0, 1.0, 1.0)}, "EXTENT", []),
    ({"cell_size": 0.0}, "CELL_SIZE", []),
    ({"cell_size": 1.0, "reference_system": "PIXEL_SPACE"}, "CELL_SIZE", ["PIXEL_SPACE"]),
    ({"out_folder": ""}, "OUT_FOLDER", []),
    ({"raster": ""}, "IN_RASTER", []),
])
def test_export_refuses(change, parameter, words):
    refused(export(**change), parameter, *words)


@pytest.mark.parametrize("change", [{"rotation_angle": 90.0}, {"cell_size": 0.5}, {"start_index": 12},
                                    {"metadata_format": "Classified_Tiles"}, {"extent": (0.0, 0.0, 1.0, 1.0)}])
def test_export_accepts(change):
    export(**change).check()


# ---- one rule: the engine runs the same check -----------------------------------------------------

def test_every_run_function_calls_check():
    """run_training, run_autodl, run_inference and run_export start with config.check()."""
    import inspect

    pytest.importorskip("torch")
    from dl_engine.autodl.run import run_autodl
    from dl_engine.export.exporter import run_export
    from dl_engine.infer.run import run_inference
    from dl_engine.train.run import run_training

    for run in (run_training, run_autodl, run_inference, run_export):
        assert "config.check()" in inspect.getsource(run), run.__name__
