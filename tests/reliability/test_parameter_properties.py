"""Property-based tests over the parameters' checks (issue 18 item 7): whatever values the
export, training, AutoDL and inference configurations get (sizes, strides, extents, batch
sizes, rates, texts where numbers belong), ``check()`` either accepts them, and then what they
would allocate fits the memory budget, or raises InputError naming one of the tool's
parameters. No other exception type escapes. 200 examples per tool (cheap: no raster is read)."""

import math
import os
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dl_engine import memory_budget
from dl_engine.autodl.config import AutoDLConfig
from dl_engine.errors import InputError
from dl_engine.export.config import ExportConfig, chip_bytes
from dl_engine.infer.config import InferConfig
from dl_engine.memory_budget import batch_bytes
from dl_engine.train.config import MIN_CHECKED_CHIP, TrainConfig

# Anything a script, a model file or a mistyped field can hand over.
ANY = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.integers(-(2 ** 40), 2 ** 40),
                st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6))
SIZE = st.one_of(st.integers(-3, 4096), st.integers(4096, 10 ** 7), ANY)  # mostly plausible, sometimes not
EXTENT = st.one_of(st.none(), st.lists(st.one_of(st.floats(-1e7, 1e7), ANY), min_size=0, max_size=5))

EXPORT_PARAMETERS = {"IN_RASTER", "OUT_FOLDER", "METADATA_FORMAT", "IMAGE_CHIP_FORMAT", "TILE_SIZE_X", "TILE_SIZE_Y",
                     "STRIDE_X", "STRIDE_Y", "START_INDEX", "MIN_POLYGON_OVERLAP_RATIO", "REFERENCE_SYSTEM",
                     "PROCESSING_MODE", "CROP_MODE", "ROTATION_ANGLE", "PARALLEL_PROCESSING_FACTOR", "EXTENT",
                     "CELL_SIZE"}
TRAIN_PARAMETERS = {"IN_FOLDER", "OUT_FOLDER", "MODEL_TYPE", "MAX_EPOCHS", "BATCH_SIZE", "LEARNING_RATE",
                    "BACKBONE_MODEL", "PRETRAINED_MODEL", "VALIDATION_PERCENTAGE", "CHIP_SIZE", "RESIZE_TO",
                    "WEIGHT_INIT_SCHEME", "MONITOR", "DEVICE", "num_workers", "patience", "max_steps"}
AUTODL_PARAMETERS = {"IN_DATA", "OUT_MODEL", "PRETRAINED_MODEL", "TOTAL_TIME_LIMIT", "AUTODL_MODE", "NETWORKS",
                     "DEVICE", "VALIDATION_PERCENTAGE", "num_workers", "max_batch_size"}
INFER_PARAMETERS = {"tool", "IN_RASTER", "IN_MODEL_DEFINITION", "OUT_CLASSIFIED_RASTER", "ARGUMENTS",
                    "PROCESSING_MODE", "EXTENT", "CELL_SIZE", "DEVICE", "num_workers"}


def accepted_or_named(check, parameters) -> bool:
    """True when ``check()`` passes; a named InputError otherwise (anything else fails the test)."""
    try:
        check()
    except InputError as error:
        assert error.parameter in parameters, error
        assert error.message and "Traceback" not in error.message
        return False
    return True


@pytest.fixture(autouse=True)
def small_machine(monkeypatch):
    """A machine with 2 GiB available: the budget bites at sizes tests can reach."""
    monkeypatch.setenv(memory_budget.ENV_OVERRIDE, str(2 << 30))


@settings(max_examples=200, deadline=None)
@given(tile_x=SIZE, tile_y=SIZE, stride_x=SIZE, stride_y=SIZE, start=ANY, workers=st.one_of(st.integers(0, 64), ANY),
       extent=EXTENT, cell=ANY, ratio=ANY, angle=ANY, fmt=st.sampled_from(["Classified_Tiles", "KITTI_rectangles",
                                                                            "Labeled_Tiles", "Nonsense", ""]))
def test_export_checks(tile_x, tile_y, stride_x, stride_y, start, workers, extent, cell, ratio, angle, fmt):
    config = ExportConfig("r.tif", "out", fmt, tile_size_x=tile_x, tile_size_y=tile_y, stride_x=stride_x,
                          stride_y=stride_y, start_index=start, workers=workers, extent=extent, cell_size=cell,
                          min_polygon_overlap_ratio=ratio, rotation_angle=angle)
    if accepted_or_named(config.check, EXPORT_PARAMETERS):
        assert chip_bytes(tile_x, tile_y, 1, 1, int(workers) or 1) <= memory_budget.budget_bytes()
        for warning in config.warnings():  # a stride beyond the tile is said, with the parameter
            assert "STRIDE_" in warning and "skipped" in warning


@settings(max_examples=200, deadline=None)
@given(batch=SIZE, chip=st.one_of(st.none(), SIZE), resize=st.one_of(st.none(), SIZE), epochs=ANY, rate=ANY,
       validation=ANY, patience=ANY, out=st.sampled_from(["model", "", "data"]))
def test_training_checks(batch, chip, resize, epochs, rate, validation, patience, out):
    config = TrainConfig("data", out, batch_size=batch, chip_size=chip, resize_to=resize, max_epochs=epochs,
                         learning_rate=rate, validation_percentage=validation, patience=patience)
    if accepted_or_named(config.check, TRAIN_PARAMETERS):
        side = resize or chip or MIN_CHECKED_CHIP
        assert batch_bytes(batch, side) <= memory_budget.budget_bytes()
        assert rate is None or (rate > 0 and math.isfinite(rate))


@settings(max_examples=200, deadline=None)
@given(out=st.sampled_from(["best.dlpk", "best", "best.zip", "", "a/b.DLPK"]), hours=ANY, mode=ANY,
       networks=st.one_of(st.lists(st.text(max_size=4), max_size=3), ANY), validation=ANY, max_batch=SIZE)
def test_autodl_checks(out, hours, mode, networks, validation, max_batch):
    config = AutoDLConfig("data", out, total_time_limit=hours, autodl_mode=mode, networks=networks,
                          validation_percentage=validation, max_batch_size=max_batch)
    accepted_or_named(config.check, AUTODL_PARAMETERS)


ARGUMENT = st.tuples(st.sampled_from(["batch_size", "tile_size", "padding", "threshold", "bogus"]),
                     st.one_of(st.integers(-2, 10 ** 6), st.text(max_size=4), st.floats(allow_nan=True)))


@settings(max_examples=200, deadline=None)
@given(arguments=st.lists(ARGUMENT, max_size=3), extent=EXTENT, cell=ANY,
       model=st.sampled_from(["m.dlpk", "m.emd", "m.pth", ""]))
def test_inference_checks(arguments, extent, cell, model):
    text = ";".join(f"{name} {value}" for name, value in arguments)
    config = InferConfig("classify_pixels", "r.tif", model, "out.tif", arguments=text, extent=extent, cell_size=cell)
    if accepted_or_named(config.check, INFER_PARAMETERS):
        given_sizes = {name: value for name, value in arguments}
        batch = given_sizes.get("batch_size", 4)
        tile = given_sizes.get("tile_size")
        side = tile if isinstance(tile, int) and tile >= 1 else 64
        if isinstance(batch, int) and batch >= 1:
            assert batch_bytes(batch, side) <= memory_budget.budget_bytes()


@settings(max_examples=200, deadline=None)
@given(value=st.integers(1, 10 ** 12), per_unit=st.integers(1, 10 ** 6), available=st.integers(1 << 20, 1 << 40))
def test_the_largest_value_offered_fits_and_one_more_does_not(value, per_unit, available):
    with machine_with(available):
        budget = memory_budget.budget_bytes()
        try:
            memory_budget.check_fits("BATCH_SIZE", value, lambda v: v * per_unit)
        except InputError as error:
            assert error.parameter == "BATCH_SIZE" and "would need" in error.message
            if "largest value that fits is" in error.message:
                largest = int(error.message.rsplit("largest value that fits is ", 1)[1])
                assert largest * per_unit <= budget < (largest + 1) * per_unit
            else:
                assert per_unit > budget
            return
        assert value * per_unit <= budget


@contextmanager
def machine_with(available: int):
    previous = os.environ.get(memory_budget.ENV_OVERRIDE)
    os.environ[memory_budget.ENV_OVERRIDE] = str(available)
    try:
        yield
    finally:
        os.environ[memory_budget.ENV_OVERRIDE] = previous or ""


def test_the_budget_comes_from_the_machine(monkeypatch):
    monkeypatch.delenv(memory_budget.ENV_OVERRIDE, raising=False)
    available = memory_budget.available_bytes()
    assert 64 << 20 < available < 1 << 50  # read from /proc/meminfo (or the platform's own call)
    with machine_with(4 << 30):
        assert memory_budget.budget_bytes() == int((4 << 30) * memory_budget.SHARE)
        assert memory_budget.budget_bytes(device_bytes=1 << 30) == 1 << 29  # a GPU smaller than RAM bounds it


def test_gpu_memory_is_named_when_it_is_the_limit(monkeypatch):
    with pytest.raises(InputError) as raised:
        TrainConfig("data", "model", batch_size=4096, chip_size=512).check_memory(device_bytes=512 << 20)
    assert raised.value.parameter == "BATCH_SIZE" and "GPU memory" in raised.value.message


@pytest.mark.parametrize("config, parameter", [
    (ExportConfig("r.tif", "out", tile_size_x=100_000, tile_size_y=100_000), "TILE_SIZE_X"),
    (ExportConfig("r.tif", "out", tile_size_x=256, tile_size_y=10 ** 7), "TILE_SIZE_Y"),
    (TrainConfig("data", "model", batch_size=10 ** 9), "BATCH_SIZE"),
    (TrainConfig("data", "model", chip_size=10 ** 6), "CHIP_SIZE"),
    (InferConfig("classify_pixels", "r.tif", "m.dlpk", "o.tif", arguments="tile_size 8192;batch_size 4096"),
     "ARGUMENTS"),
])
def test_huge_sizes_are_named_with_what_they_need_and_what_fits(config, parameter):
    with pytest.raises(InputError) as raised:
        config.check()
    message = raised.value.message
    assert raised.value.parameter == parameter
    assert "would need" in message and "GiB" in message and "largest value that fits is" in message


def test_learning_rate_typed_as_text_is_reported_as_typed():
    from dl_engine.checks import as_given

    with pytest.raises(InputError) as raised:
        TrainConfig("data", "model", learning_rate=as_given("abc", 0.0)).check()
    assert raised.value.parameter == "LEARNING_RATE" and "got 'abc'" in raised.value.message
    assert as_given("0.01", 0.01) == 0.01 and as_given(None, 0.0) == 0.0 and as_given(" ", 0.0) == 0.0


def test_autodl_out_model_that_is_a_folder_is_refused(tmp_path):
    (tmp_path / "models").mkdir()
    with pytest.raises(InputError) as raised:
        AutoDLConfig("data", str(tmp_path / "models")).check()
    assert raised.value.parameter == "OUT_MODEL" and "is a folder" in raised.value.message
    assert not (tmp_path / "models.dlpk").exists()


def test_inference_on_a_gpu_checks_the_batch_against_its_free_memory(monkeypatch):
    from types import SimpleNamespace

    import torch

    from dl_engine.infer import run as infer_run

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (256 << 20, 80 << 30))  # 256 MiB free
    job = SimpleNamespace(predictor=SimpleNamespace(runtime=SimpleNamespace(device=torch.device("cuda", 0))),
                          args=SimpleNamespace(tile=1024, batch_size=64), model=SimpleNamespace(input_bands=3))
    config = InferConfig("classify_pixels", "r.tif", "m.dlpk", "o.tif")
    with pytest.raises(InputError) as raised:
        infer_run._check_device_memory(config, job)
    assert raised.value.parameter == "ARGUMENTS" and "GPU memory" in raised.value.message
    assert "batch_size 64" in raised.value.message and "largest value that fits is" in raised.value.message
    job.args.batch_size = 2
    infer_run._check_device_memory(config, job)  # 2 tiles of 1024 px fit in 128 MiB


def test_training_asks_the_gpu_for_its_free_memory(monkeypatch):
    import torch

    from dl_engine.train.run import device_free_bytes

    assert device_free_bytes(torch.device("cpu")) is None
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (3 << 30, 80 << 30))
    assert device_free_bytes(torch.device("cuda", 0)) == 3 << 30
    with pytest.raises(InputError) as raised:
        TrainConfig("data", "model", batch_size=512).check_memory(chip=512, bands=3, device_bytes=1 << 30)
    assert raised.value.parameter == "BATCH_SIZE" and "GPU memory" in raised.value.message
