"""Classify Objects Using Deep Learning, engine side, with a fake classifier registered in
the model registry (class "bright" when the chip's centre is bright): one chip per feature
centred on it, attributes kept, BlackenAroundFeature and CropSizeFixed as the emd says, and
image tiles when no features are given."""

import json

import numpy as np
import pytest
import shapely
import shapely.geometry

torch = pytest.importorskip("torch")

import engine_helpers as h  # noqa: E402
import infer_helpers as ih  # noqa: E402
from dl_engine.infer import run_inference  # noqa: E402

pytestmark = pytest.mark.usefixtures("fake_models")  # reading fake packages needs the fake types

SQUARES = [(14, 14, 6), (45, 58, 10), (100, 100, 8), (150, 20, 11)]
CLASSES = [(1, "dark", (0, 0, 0)), (2, "bright", (255, 255, 255))]


@pytest.fixture(scope="module")
def raster(tmp_path_factory):
    return ih.squares_raster(tmp_path_factory.mktemp("objects"), SQUARES, size=200)


def features_file(path, features):
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": shapely.geometry.mapping(g) if g is not None else None, "properties": p}
        for g, p in features]}
    path.write_text(json.dumps(fc))
    return str(path)


def ring():
    """A square ring around the square at (150, 20): its extent's centre lies in the hole."""
    return h.pix_box(140, 10, 172, 42).difference(h.pix_box(146, 16, 166, 36))


def test_features_are_classified_with_their_attributes(raster, tmp_path):
    feats = features_file(tmp_path / "in.geojson", [
        (h.pix_box(44, 57, 56, 69), {"id": 1, "name": "on a square"}),
        (h.pix_box(60, 120, 80, 140), {"id": 2, "name": "dark ground"}),
        (shapely.Point(h.T0 * (104, 104)), {"id": 3, "name": "a point"}),
        (None, {"id": 4, "name": "no geometry"}),
        (ring(), {"id": 5, "name": "ring"}),
    ])
    model = ih.fake_package(tmp_path / "m", "FAKECLASSIFIER", CLASSES, chip=24)
    result = run_inference(ih.config("classify_objects", raster, model, tmp_path / "out.geojson", in_features=feats,
                                     class_label_field="Kind"))
    fc = ih.read_features(tmp_path / "out.geojson")
    props = [f["properties"] for f in fc["features"]]
    assert [p["id"] for p in props] == [1, 2, 3, 4, 5] and props[0]["name"] == "on a square"
    assert [p["Kind"] for p in props] == ["bright", "dark", "bright", None, "bright"]
    assert props[0]["Confidence"] > 50 and props[1]["Confidence"] > 50 and props[3]["Confidence"] is None
    # geometries come back as they went in
    assert shapely.geometry.shape(fc["features"][0]["geometry"]).equals(h.pix_box(44, 57, 56, 69))
    assert fc["features"][3]["geometry"] is None
    assert fc["crs_wkt"] == h.CRS_UTM.to_wkt() and result.features == 5


def test_blacken_around_feature_and_bounding_box_chips(raster, tmp_path):
    feats = features_file(tmp_path / "in.geojson", [(ring(), {"id": 1}), (h.pix_box(45, 58, 55, 68), {"id": 2})])
    blacken = ih.fake_package(tmp_path / "b", "FAKECLASSIFIER", CLASSES, chip=24,
                              emd_extra={"BlackenAroundFeature": 1})
    run_inference(ih.config("classify_objects", raster, blacken, tmp_path / "b.geojson", in_features=feats))
    labels = [f["properties"]["ClassLabel"] for f in ih.read_features(tmp_path / "b.geojson")["features"]]
    assert labels == ["dark", "bright"]  # the ring's hole (the bright square) is blackened
    # CropSizeFixed 0: the feature's extent resampled to the chip: the square fills it
    bbox = ih.fake_package(tmp_path / "x", "FAKECLASSIFIER", CLASSES, chip=24, emd_extra={"CropSizeFixed": 0})
    run_inference(ih.config("classify_objects", raster, bbox, tmp_path / "x.geojson", in_features=feats))
    feats_out = ih.read_features(tmp_path / "x.geojson")["features"]
    assert feats_out[1]["properties"]["ClassLabel"] == "bright"
    assert feats_out[1]["properties"]["Confidence"] > 90


def test_without_features_the_image_tiles_are_classified(raster, tmp_path):
    model = ih.fake_package(tmp_path / "m", "FAKECLASSIFIER", CLASSES, chip=32)
    result = run_inference(ih.config("classify_objects", raster, model, tmp_path / "tiles.geojson"))
    feats = ih.read_features(tmp_path / "tiles.geojson")["features"]
    assert len(feats) == 49 == result.features  # 7 x 7 tiles of 32 px over 200 px
    first = shapely.geometry.shape(feats[0]["geometry"])
    assert np.allclose(first.bounds, h.pix_box(0, 0, 32, 32).bounds)
    assert np.allclose(shapely.geometry.shape(feats[-1]["geometry"]).bounds, h.pix_box(192, 192, 200, 200).bounds)
    labels = [f["properties"]["ClassLabel"] for f in feats]
    assert labels[0] == "bright" and labels.count("bright") == 1  # only tile (0, 0) has a square at its centre
