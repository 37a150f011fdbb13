"""dl_engine.data.normalization: 8-bit RGB → ImageNet statistics; anything else → the
export's per-band statistics, with the numbers arcgis.learn writes (checked against numpy)."""

import json
from pathlib import Path

import numpy as np
import pytest
from pytest import approx

import data_helpers as dh
import engine_helpers as h
from dl_engine.errors import InputError
from dl_engine.data import BandStats, normalization_for, open_folders
from dl_engine.data.normalization import IMAGENET_MEAN, IMAGENET_STD, from_band_stats, is_rgb8


def test_rgb8_uses_imagenet(tmp_path):
    path, _ = dh.raster(tmp_path)
    data = open_folders(dh.export(path, tmp_path / "rgb", "Classified_Tiles"))
    norm = normalization_for(data)
    assert norm.mode == "imagenet" and not norm.is_multispectral
    assert norm.emd_keys() == {"IsMultispectral": False, "ExtractBands": [0, 1, 2]}
    assert norm.normalization_stats() is None
    x = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5) * 4
    expected = (x / 255.0 - np.array(IMAGENET_MEAN)[:, None, None]) / np.array(IMAGENET_STD)[:, None, None]
    got = norm.normalize(x)
    assert got.dtype == np.float32 and np.allclose(got, expected, atol=1e-5)
    assert np.allclose(norm.to_unit(got), x / 255.0, atol=1e-5)


def _multispectral(tmp_path):
    """4-band UInt16 export whose last band is constant (no information)."""
    data = h.random_image(4, dh.SIZE, dh.SIZE, dtype="uint16", seed=3, low=200, high=3000)
    data[1] = data[1] // 4 + 5000
    data[3] = 700
    path = h.write_raster(tmp_path / "ms.tif", data)
    return dh.export(path, tmp_path / "ms", "Classified_Tiles")


def test_multispectral_numbers_against_numpy(tmp_path):
    out = _multispectral(tmp_path)
    data = open_folders(out)
    norm = normalization_for(data)
    assert norm.mode == "band_stats" and norm.is_multispectral
    values = h.band_values(out, width=dh.SIZE, height=dh.SIZE)
    vmin = np.array([v.min() for v in values])
    vmax = np.array([v.max() for v in values])
    mean = np.array([v.mean() for v in values])
    std = np.array([v.std() for v in values])
    scaled_mean = (mean - vmin) / (vmax - vmin + 1e-5)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled_std = std * scaled_mean / mean
    stats = norm.normalization_stats()
    assert stats["band_min_values"] == vmin.tolist() and stats["band_max_values"] == vmax.tolist()
    assert stats["band_mean_values"] == approx(mean.tolist(), rel=1e-9)
    assert stats["band_std_values"] == approx(std.tolist(), rel=1e-9, abs=1e-12)
    assert stats["scaled_min_values"] == [0.0] * 4 and stats["scaled_max_values"] == [1.0] * 4
    assert stats["scaled_mean_values"] == approx(scaled_mean.tolist(), rel=1e-9)
    assert stats["scaled_std_values"][:3] == approx(scaled_std[:3].tolist(), rel=1e-9)
    # The constant band 4 (Max <= Min) is left out, as arcgis.learn does.
    assert norm.extract_bands == [0, 1, 2]
    keys = norm.emd_keys()
    assert keys["IsMultispectral"] is True and keys["ExtractBands"] == [0, 1, 2] and keys["DoNormalize"] is True
    json.dumps(keys)  # plain JSON types
    # normalize: x' = (x - min) / (max - min), then (x' - scaled_mean) / scaled_std, bands of ExtractBands.
    chip = h.read(data.samples[0].image)[0].astype(np.float64)
    b = [0, 1, 2]
    expected = ((chip[b] - vmin[b, None, None]) / (vmax - vmin)[b, None, None] - scaled_mean[b, None, None]) \
        / scaled_std[b, None, None]
    got = norm.normalize(chip.astype(np.float32))
    assert got.shape == (3, dh.TILE, dh.TILE) and got.dtype == np.float32
    assert np.allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_stats_computed_from_chips_when_the_export_has_none(tmp_path):
    """A Pro 2.x style export (no BandStatsState, no AllTilesStats) of UInt16 data."""
    out = _multispectral(tmp_path)
    s = h.stats_json(out)
    del s["BandStatsState"]
    Path(out, "esri_accumulated_stats.json").write_text(json.dumps(s))
    e = h.emd(out)
    del e["AllTilesStats"]
    Path(out, "esri_model_definition.emd").write_text(json.dumps(e))
    data = open_folders(out)
    assert data.band_stats is None
    norm = normalization_for(data)
    values = h.band_values(out, width=dh.SIZE, height=dh.SIZE)
    assert norm.band_mean == approx([v.mean() for v in values], rel=1e-9)
    assert norm.band_std == approx([v.std() for v in values], rel=1e-9, abs=1e-12)
    assert norm.extract_bands == [0, 1, 2]


def test_pro2_rgb_without_stats_is_imagenet(tmp_path):
    out, _ = dh.pro2_voc_export(tmp_path / "pro2")
    assert normalization_for(open_folders(out, warn=False)).mode == "imagenet"


def _stats(bands, lo=0, hi=255):
    s = BandStats.empty(bands)
    for b in range(bands):
        s.add(b, 100, (lo + hi) / 2, 1000.0, lo, hi)
    return s


def test_which_imagery_is_rgb():
    assert is_rgb8(3, "uint8", _stats(3))
    assert is_rgb8(3, "uint8", None, ["Red", "Green", "Blue"])
    assert not is_rgb8(3, "uint16", _stats(3))
    assert not is_rgb8(3, "uint8", _stats(3), ["Red", "Green", "NearInfrared"])
    assert not is_rgb8(1, "uint8", _stats(1))
    assert not is_rgb8(4, "uint8", _stats(4), ["", "", "", ""])
    assert is_rgb8(4, "uint8", _stats(4), ["Red", "Green", "Blue", "Alpha"])
    assert not is_rgb8(3, "uint8", _stats(3, -1, 255))


def test_zero_mean_band_and_constant_input():
    s = BandStats.empty(2)
    s.add(0, 10, 0.0, 40.0, -2.0, 2.0)  # mean 0: arcgis.learn's formula divides by 0
    s.add(1, 10, 5.0, 0.0, 5.0, 5.0)  # constant
    norm = from_band_stats(s)
    assert norm.extract_bands == [0]
    assert norm.scaled_std[0] == approx(2.0 / (4 + 1e-5))
    assert np.isfinite(norm.normalize(np.zeros((2, 2, 2), np.float32))).all()
    s = BandStats.empty(1)
    s.add(0, 10, 5.0, 0.0, 5.0, 5.0)
    with pytest.raises(InputError) as e:
        from_band_stats(s)
    assert e.value.parameter == "IN_FOLDER"
