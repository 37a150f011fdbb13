"""dl_engine.data.dataset: the whole layer in one call, as the trainer uses it."""

import numpy as np
import pytest

import data_helpers as dh
from dl_engine.errors import InputError
from dl_engine.data import DataConfig, prepare_data


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    base = tmp_path_factory.mktemp("ds")
    path, _ = dh.raster(base)
    return dh.export(path, base / "c", "Classified_Tiles")


def test_prepare_data(export):
    td = prepare_data(DataConfig(export, validation_percentage=20, chip_size=24))
    assert td.class_map.names == ["NoData", "Oak", "Pine"] and td.normalization.mode == "imagenet"
    assert len(td.train) + len(td.valid) == len(td.data.samples) and len(td.valid) >= 1
    train, valid = td.train_dataset(), td.valid_dataset()
    item = train[0]
    assert item["image"].shape == (3, 24, 24) and item["image"].dtype == np.float32
    assert item["mask"].shape == (24, 24) and item["mask"].dtype == np.int64
    # Augmentation and crop position depend on (seed, epoch, index) only.
    again = train[0]
    assert np.array_equal(item["image"], again["image"]) and np.array_equal(item["mask"], again["mask"])
    changed = False
    for epoch in range(1, 6):
        train.set_epoch(epoch)
        changed |= not np.array_equal(train[0]["image"], item["image"])
    assert changed
    # Validation: centre crop, no augmentation, the same every epoch.
    v0 = valid[0]
    valid.set_epoch(3)
    assert np.array_equal(valid[0]["image"], v0["image"])


@pytest.mark.parametrize("kw, parameter", [
    (dict(validation_percentage=120), "VALIDATION_PERCENTAGE"),
    (dict(chip_size=64), "CHIP_SIZE"),
    (dict(augmentation="CUSTOM", augmentation_parameters="shear 3"), "AUGMENTATION_PARAMETERS"),
    (dict(augmentation="RANDOM"), "AUGMENTATION"),
])
def test_bad_parameters(export, kw, parameter):
    with pytest.raises(InputError) as e:
        prepare_data(DataConfig(export, **kw))
    assert e.value.parameter == parameter


def test_bad_folder(tmp_path):
    with pytest.raises(InputError) as e:
        prepare_data(DataConfig(str(tmp_path / "missing")))
    assert e.value.parameter == "IN_FOLDER"
