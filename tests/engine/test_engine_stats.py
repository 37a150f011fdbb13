"""esri_accumulated_stats.json, esri_model_definition.emd, map.txt and stats.txt
checked against what the exported chips hold."""

import json
import math
import re

import numpy as np
import pytest
import rasterio
import shapely

import engine_helpers as h
from engine_helpers import SIZE, T0, TILE, ClassInfo, band_values, check_band_stats

WKB_KEY = "WellKnownBandNames (FYI, these band names can be used in ExtractBands)"


def test_band_stats_exclude_padding(tmp_path, rgb, rects):
    raster, _ = rgb
    _, geoms, values = rects
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="PASCAL_VOC_rectangles", labels=h.vector_labels(geoms, values))
    s, e = h.stats_json(out), h.emd(out)
    check_band_stats(s["BandStatsState"], e["AllTilesStats"], band_values(out))


def test_band_stats_exclude_nodata(tmp_path, nodata_raster):
    raster, _ = nodata_raster
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Export_Tiles", output_nofeature_tiles=True)
    vals = band_values(out, nodata=255)
    s, e = h.stats_json(out), h.emd(out)
    check_band_stats(s["BandStatsState"], e["AllTilesStats"], vals)
    assert s["BandStatsState"][1]["Num"] < s["BandStatsState"][0]["Num"]  # band-only NoData left out


def test_band_stats_float_with_nodata_real_data(tmp_path):
    hag = h.data_path("elevation", "hag.tif")
    with rasterio.open(hag) as src:
        t, w, ht = src.transform, src.width, src.height
    out = tmp_path / "out"
    h.export(hag, out, metadata_format="Export_Tiles")
    vals = band_values(out, grid_t=t, width=w, height=ht, nodata=-9999)
    check_band_stats(h.stats_json(out)["BandStatsState"], h.emd(out)["AllTilesStats"], vals)


def test_feature_stats(tmp_path, rgb, rects):
    raster, _ = rgb
    _, geoms, values = rects
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="PASCAL_VOC_rectangles", labels=h.vector_labels(geoms, values))
    cs = h.chips(out)
    # Independently: the features with area in each exported chip, and their clipped areas.
    per_chip = []
    areas = {1: [], 2: [], 3: []}
    for c in cs:
        col, row = h.offset_of(h.read(c.image)[1]["transform"], T0)
        box = h.pix_box(col, row, min(col + TILE, SIZE), min(row + TILE, SIZE))
        here = []
        for g, v in zip(geoms, values):
            a = shapely.intersection(g, box).area
            if a > 0:
                here.append(v)
                areas[v].append(a)
        assert sorted(here) == sorted(v for v, _ in h.voc_objects(c.label))
        per_chip.append(here)
    s = h.stats_json(out)
    fs = s["FeatureStats"]
    assert s["OutputFeatures"] is True
    assert s["NumClasses"] == fs["NumClasses"] == 3
    assert fs["NumImagesTotal"] == len(cs) == s["NumTiles"] == s["NumTilesAsDouble"]
    assert fs["NumFeaturesPerClass"] == [sum(x.count(v) for x in per_chip) for v in (1, 2, 3)]
    assert fs["NumImagesPerClass"] == [sum(v in x for x in per_chip) for v in (1, 2, 3)]
    assert fs["NumFeaturesTotal"] == sum(len(x) for x in per_chip)
    fpi = fs["NumFeaturesPerImage"]
    counts = [len(x) for x in per_chip]
    assert (fpi["Min"], fpi["Max"], fpi["Sum"], fpi["Count"]) == (min(counts), max(counts), sum(counts), len(counts))
    assert fpi["Mean"] == pytest.approx(np.mean(counts))
    for i, v in enumerate((1, 2, 3)):
        fa = fs["FeatureAreaPerClass"][i]
        assert fa["Count"] == len(areas[v])
        assert fa["Sum"] == pytest.approx(sum(areas[v]))
        assert fa["Min"] == pytest.approx(min(areas[v])) and fa["Max"] == pytest.approx(max(areas[v]))
    assert s["NextTileIndex"] == 25
    assert s["MetaDataMode"] == "PASCAL_VOC_rectangles"
    assert (s["NumBands"], s["TileSizeX"], s["TileSizeY"]) == (3, TILE, TILE)
    assert s["Classes"] == [{"ClassValue": v, "ClassName": str(v), "Color": [-1, -1, -1]} for v in (1, 2, 3)]


def test_map_txt(tmp_path, rgb, rects):
    raster, _ = rgb
    _, geoms, values = rects
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Classified_Tiles", labels=h.vector_labels(geoms, values))
    raw = (out / "map.txt").read_bytes()
    images = sorted(p.name for p in (out / "images").glob("*.tif"))
    labels = sorted(p.name for p in (out / "labels").glob("*.tif"))
    assert images == labels
    expected = "".join(f"images\\{n}  labels\\{n} \r\n" for n in images).encode()
    assert raw == expected
    assert b"/" not in raw


def test_stats_txt(tmp_path, rgb, rects):
    raster, _ = rgb
    _, geoms, values = rects
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="PASCAL_VOC_rectangles",
             labels=h.vector_labels(geoms, values, [ClassInfo(2, "Roof")]))
    raw = (out / "stats.txt").read_bytes()
    assert raw.endswith(b"\r\n") and raw.count(b"\n") == raw.count(b"\r\n")
    text = raw.decode()
    s = h.stats_json(out)
    assert text.startswith(f"images = {s['NumTiles']} *3*{TILE}*{TILE}\r\n")
    assert f"features = {s['FeatureStats']['NumFeaturesTotal']}\r\n" in text
    assert re.search(r"\r\nRoof +2 +\d+ +\d+ ", text)


def test_json_files_use_pro_style(tmp_path, rgb, rects):
    raster, _ = rgb
    _, geoms, values = rects
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="PASCAL_VOC_rectangles", labels=h.vector_labels(geoms, values))
    for name in ("esri_accumulated_stats.json", "esri_model_definition.emd"):
        raw = (out / name).read_bytes()
        assert b"\r\n" not in raw
        json.loads(raw)
        assert b'"Version" : 1' in raw or name.endswith(".emd")
        assert raw.startswith(b"{\n  \"")


def test_emd_template(tmp_path, rgb, rects):
    raster, _ = rgb
    _, geoms, values = rects
    out = tmp_path / "out"
    h.export(raster, out, metadata_format="Classified_Tiles",
             labels=h.vector_labels(geoms, values, [ClassInfo(1, "House", (10, 20, 30)), ClassInfo(3, "Shed")]),
             tile_size_x=TILE, tile_size_y=48, stride_y=48)
    e = h.emd(out)
    assert e["ImageHeight"] == 48 and e["ImageWidth"] == TILE
    assert isinstance(e["ImageHeight"], int) and isinstance(e["ImageWidth"], int)
    assert e["MetaDataMode"] == "Classified_Tiles"
    assert e["ImageSpaceUsed"] == "MAP_SPACE"
    assert e["CropTileMode"] == "Fixed_Size"
    assert e["BlackenAroundFeature"] is False and e["IsMultidimensional"] is False
    assert e["Classes"] == [{"Value": 1, "Name": "House", "Color": [10, 20, 30]},
                            {"Value": 2, "Name": "2", "Color": [-1, -1, -1]},
                            {"Value": 3, "Name": "Shed", "Color": [-1, -1, -1]}]
    assert e[WKB_KEY][:3] == ["Red", "Green", "Blue"] and "PseudoBlue" in e[WKB_KEY]
    assert e["InputRastersProps"]["RasterCount"] == 1
    assert len(e["InputRastersProps"]["BandNames"]) == 3
    assert len(e["AllTilesStats"]) == 3
    assert e["MinCellSize"] == {"x": 0.5, "y": 0.5, "spatialReference": {"wkid": 32617, "latestWkid": 32617}}
    assert e["MaxCellSize"] == e["MinCellSize"]
    for k in ("Framework", "ModelConfiguration", "ModelType", "ModelFile", "ExtractBands"):
        assert isinstance(e[k], str)
    s = h.stats_json(out)
    assert (s["TileSizeX"], s["TileSizeY"]) == (TILE, 48)
    assert s["InputRastersProps"] == e["InputRastersProps"]
    assert "BandStatsState2" not in s and "AllTilesStats2" not in e


def test_band_names_from_raster_descriptions(tmp_path):
    data = h.random_image(4, dtype="uint16", seed=9, low=0, high=4000)
    path = tmp_path / "ms.tif"
    h.write_raster(path, data)
    with rasterio.open(path, "r+") as dst:
        for i, name in enumerate(("Blue", "Green", "Red", "NearInfrared"), 1):
            dst.set_band_description(i, name)
    out = tmp_path / "out"
    h.export(path, out, metadata_format="Export_Tiles")
    props = h.emd(out)["InputRastersProps"]
    assert props["BandNames"] == ["Blue", "Green", "Red", "NearInfrared"]
    assert [a["BandName"] for a in h.emd(out)["AllTilesStats"]] == props["BandNames"]
