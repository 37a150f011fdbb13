"""IMAGE_CHIP_FORMAT PNG, JPEG and MRF, and data types / band counts kept in TIFF."""

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS

import engine_helpers as h
from engine_helpers import SIZE, T0, TILE


def _window(data, col, row, fill=0):
    out = np.full((data.shape[0], TILE, TILE), fill, dtype=data.dtype)
    win = data[:, row:row + TILE, col:col + TILE]
    out[:, :win.shape[1], :win.shape[2]] = win
    return out


def _aux_srs(path):
    import xml.etree.ElementTree as ET

    aux = path.with_name(path.name + ".aux.xml")
    assert aux.is_file(), f"{aux.name} missing"
    srs = ET.parse(aux).getroot().find("SRS")
    assert srs is not None and srs.text
    return CRS.from_user_input(srs.text)


@pytest.mark.parametrize("fmt,ext,world", [("PNG", ".png", ".pgw"), ("JPEG", ".jpg", ".jgw")])
def test_png_and_jpeg_chips(tmp_path, rgb, rects, fmt, ext, world):
    raster, data = rgb
    _, geoms, values = rects
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="PASCAL_VOC_rectangles", labels=h.vector_labels(geoms, values),
             image_format=fmt)
    cs = h.chips(out)
    assert cs
    for c in cs:
        assert c.image.suffix == ext
        pixels, meta = h.read(c.image)
        assert meta["driver"] == fmt
        assert (meta["count"], meta["dtype"], meta["width"]) == (3, "uint8", TILE)
        wf = c.image.with_suffix(world)
        assert wf.is_file(), f"{wf.name} missing"
        # The world file gives the chip's place on the raster grid (pixel-centre convention).
        t = meta["transform"]
        assert h.world_file_lines(wf) == h.expected_world_file(t)
        col, row = h.offset_of(t, T0)
        assert _aux_srs(c.image) == h.CRS_UTM
        assert meta["crs"] == h.CRS_UTM
        expected = _window(data, col, row)
        if fmt == "PNG":
            np.testing.assert_array_equal(pixels, expected)
        else:
            inside = expected[:, :SIZE - row, :SIZE - col].astype(int)
            got = pixels[:, :SIZE - row, :SIZE - col].astype(int)
            # Lossy (and chroma-subsampled, which random noise suffers most from), but the same picture.
            assert np.corrcoef(got.ravel(), inside.ravel())[0, 1] > 0.5
        assert f"<filename>{c.image.name}</filename>" in c.label.read_text()
    assert h.map_lines(out)[0].split()[0].endswith(ext)


def test_jpeg_chips_of_smooth_image_are_close(tmp_path):
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    data = np.stack([xx % 200, yy % 200, (xx + yy) % 200]).astype("uint8")
    raster = h.write_raster(tmp_path / "smooth.tif", data)
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Export_Tiles", image_format="JPEG")
    for c in h.chips(out):
        pixels, meta = h.read(c.image)
        col, row = h.offset_of(meta["transform"], T0)
        exp = _window(data, col, row)[:, :SIZE - row, :SIZE - col].astype(int)
        got = pixels[:, :SIZE - row, :SIZE - col].astype(int)
        assert np.abs(got - exp).mean() < 5


def test_classified_tiles_with_png_chips_have_png_labels(tmp_path, rgb, shapes):
    raster, _ = rgb
    geoms, values = shapes
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Classified_Tiles", labels=h.vector_labels(geoms, values),
             image_format="PNG")
    for c in h.chips(out):
        assert c.label.suffix == ".png"
        lab, meta = h.read(c.label)
        assert meta["dtype"] == "uint8" and meta["count"] == 1
        assert meta["transform"] == h.read(c.image)[1]["transform"]
        assert c.label.with_suffix(".pgw").is_file()


def test_classified_tiles_with_jpeg_chips_keep_lossless_labels(tmp_path, rgb, shapes):
    raster, _ = rgb
    geoms, values = shapes
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Classified_Tiles", labels=h.vector_labels(geoms, values),
             image_format="JPEG")
    seen = set()
    for c in h.chips(out):
        assert c.image.suffix == ".jpg"
        assert c.label.stem == c.image.stem and c.label.suffix in (".png", ".tif")
        lab, _ = h.read(c.label)
        seen |= set(np.unique(lab).tolist())
    assert seen == {0, 1, 2, 3}


def test_mrf_chips(tmp_path, rgb, shapes):
    raster, data = rgb
    geoms, values = shapes
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Classified_Tiles", labels=h.vector_labels(geoms, values),
             image_format="MRF")
    cs = h.chips(out)
    assert cs
    for c in cs:
        assert c.image.suffix == ".mrf"
        pixels, meta = h.read(c.image)
        assert meta["driver"] == "MRF"
        assert meta["crs"] == h.CRS_UTM
        col, row = h.offset_of(meta["transform"], T0)
        np.testing.assert_array_equal(pixels, _window(data, col, row))
        lab, lmeta = h.read(c.label)
        assert lmeta["transform"] == meta["transform"]
    assert h.map_lines(out)[0].split()[0].endswith(".mrf")


@pytest.mark.parametrize("dtype,nodata", [("uint16", None), ("float32", -9999.0), ("float32", float("nan")),
                                          ("int16", -1)])
def test_tiff_keeps_data_type_and_band_count(tmp_path, dtype, nodata):
    if np.dtype(dtype).kind == "f":
        data = h.random_image(4, dtype=dtype, seed=4, low=-50.0, high=3000.0)
    else:
        data = h.random_image(4, dtype=dtype, seed=4, low=0, high=40000 if dtype == "uint16" else 30000)
    if nodata is not None:
        data[:, 0:5, 0:5] = nodata
    raster = h.write_raster(tmp_path / f"{dtype}.tif", data, nodata=nodata)
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Export_Tiles")
    cs = h.chips(out)
    assert len(cs) == 25
    for c in cs:
        pixels, meta = h.read(c.image)
        assert (meta["count"], meta["dtype"]) == (4, dtype)
        assert meta["nodata"] == nodata or (np.isnan(nodata) and np.isnan(meta["nodata"]))
        col, row = h.offset_of(meta["transform"], T0)
        np.testing.assert_array_equal(pixels, _window(data, col, row, 0 if nodata is None else nodata))
    s, e = h.stats_json(out), h.emd(out)
    assert s["NumBands"] == 4
    assert e["InputRastersProps"]["SensorName"] == "MultiSpectral"
    if nodata is None:
        inside = data[0].ravel()
    else:
        inside = data[0][~np.isnan(data[0])] if np.isnan(nodata) else data[0][data[0] != nodata]
    assert s["BandStatsState"][0]["Num"] == inside.size
    assert s["BandStatsState"][0]["M1"] == pytest.approx(inside.astype(float).mean(), rel=1e-6)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_png_jpeg_single_band(tmp_path, fmt):
    data = h.random_image(1, seed=8)
    raster = h.write_raster(tmp_path / "gray.tif", data)
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Export_Tiles", image_format=fmt)
    pixels, meta = h.read(h.chips(out)[0].image)
    assert meta["count"] == 1
