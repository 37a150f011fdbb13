"""dl_engine.data.split: VALIDATION_PERCENTAGE gives the same disjoint split on every run,
whatever the order of the samples."""

import random
from dataclasses import dataclass

import pytest

import data_helpers as dh
from dl_engine.errors import InputError
from dl_engine.data import open_folders, split_samples
from dl_engine.data.split import validation_count


@dataclass(frozen=True)
class S:
    key: str


SAMPLES = [S(f"chips/images/{i:012d}.tif") for i in range(200)]


def test_reproducible_disjoint_and_sized():
    train, valid = split_samples(SAMPLES, 10)
    assert len(valid) == 20 and len(train) == 180
    assert set(train).isdisjoint(valid) and set(train) | set(valid) == set(SAMPLES)
    assert split_samples(SAMPLES, 10) == (train, valid)
    # Not simply the first or last samples.
    assert valid != SAMPLES[:20] and valid != SAMPLES[-20:]


def test_stable_under_sample_order():
    _, valid = split_samples(SAMPLES, 25)
    shuffled = list(SAMPLES)
    random.Random(3).shuffle(shuffled)
    _, valid2 = split_samples(shuffled, 25)
    assert set(valid2) == set(valid)


def test_seed_changes_the_split():
    assert set(split_samples(SAMPLES, 10, seed=1)[1]) != set(split_samples(SAMPLES, 10, seed=2)[1])


def test_small_sets():
    assert validation_count(2, 1) == 1 and validation_count(10, 0.1) == 1  # at least one
    assert validation_count(1, 50) == 0  # a single sample trains
    assert validation_count(5, 100) == 4  # at least one training sample
    assert validation_count(50, 0) == 0  # 0 %: no validation set
    train, valid = split_samples(SAMPLES[:2], 5)
    assert len(train) == 1 and len(valid) == 1


@pytest.mark.parametrize("bad", [-1, 100, 100.5, 250, "ten", None, float("nan")])  # 100: nothing to train on
def test_bad_percentage(bad):
    with pytest.raises(InputError) as e:
        split_samples(SAMPLES, bad)
    assert e.value.parameter == "VALIDATION_PERCENTAGE"


def test_split_of_an_export(tmp_path):
    path, _ = dh.raster(tmp_path)
    data = open_folders(dh.export(path, tmp_path / "c", "Classified_Tiles"))
    train, valid = split_samples(data.samples, 20)
    assert len(valid) == validation_count(len(data.samples), 20) >= 1
    assert {s.image for s in train}.isdisjoint({s.image for s in valid})
    again = open_folders(str(tmp_path / "c"))
    assert [s.image for s in split_samples(again.samples, 20)[1]] == [s.image for s in valid]
