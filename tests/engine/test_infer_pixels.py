"""Classify Pixels Using Deep Learning, engine side: a trained U-Net classifies a new raster
well, tiles leave no seams, the output is georeferenced like the input (or the EXTENT /
CELL_SIZE grid), carries the model's class values and colours, and NoData; cancel leaves
nothing behind; the ArcGIS raster function's predict_tile agrees with the tool."""

import json
import os

import numpy as np
import pytest
import rasterio

torch = pytest.importorskip("torch")

import engine_helpers as h  # noqa: E402
import infer_helpers as ih  # noqa: E402
from dl_engine.errors import InputError  # noqa: E402
from dl_engine.errors import Canceled  # noqa: E402
from dl_engine.infer import run_inference  # noqa: E402
from dl_engine.events import Events  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return ih.trained_model(tmp_path_factory)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return ih.scene(tmp_path_factory.mktemp("scene"), seed=11, size=128)


@pytest.fixture(scope="module")
def classified(model, scene, tmp_path_factory):
    """The scene classified with the ArcGIS defaults (tile 32, padding 8, batch 4)."""
    out = tmp_path_factory.mktemp("classified") / "classes.tif"
    seen = []
    result = run_inference(ih.config("classify_pixels", scene[0], model.out_model_file, out), Events(sink=seen.append))
    return out, result, seen


@pytest.mark.trains
def test_classifies_a_new_raster_with_class_values_and_colours(model, scene, classified):
    out, result, seen = classified
    raster, truth = scene
    pred, profile, _ = ih.read(out)
    # learned: the foreground classes are found on an image the model never saw
    assert set(np.unique(pred)) <= {0, 3, 7}
    assert ih.iou(pred, truth, 3) > 0.5 and ih.iou(pred, truth, 7) > 0.5
    # georeferencing: the input's grid
    with rasterio.open(raster) as src:
        assert profile["transform"] == src.transform and profile["crs"] == src.crs
        assert (profile["width"], profile["height"]) == (src.width, src.height)
    # single band uint8, NoData 255 (0 is background), tiled and compressed
    assert profile["count"] == 1 and profile["dtype"] == "uint8" and profile["nodata"] == 255
    assert profile["tiled"] and profile["compress"] == "deflate"
    # the emd's colours as a colour table: QGIS shows the raster paletted
    emd = json.loads(open(model.emd).read())
    with rasterio.open(out) as ds:
        cmap = ds.colormap(1)
        names = json.loads(ds.tags(1)["CLASS_NAMES"])
    for c in emd["Classes"]:
        assert cmap[c["Value"]] == tuple(c["Color"]) + (255,)
    assert cmap[0][:3] == (0, 0, 0)  # background black (a TIFF colour table has no alpha)
    assert names == {"0": "background", "3": "Roof", "7": "Pool"}
    # result and events
    assert result.out_path == str(out) and result.tiles == 64 and result.width == 128
    assert sum(result.class_counts.values()) == 128 * 128
    assert result.class_counts["3"] == int((pred == 3).sum())
    progress = [e["percent"] for e in seen if e["event"] == "progress"]
    assert progress == sorted(progress) and progress[-1] == 100.0
    assert [e for e in seen if e["event"] == "result"][0]["out_path"] == str(out)
    assert not [p for p in os.listdir(out.parent) if p.startswith(".")]  # no temporary file left


@pytest.mark.trains
def test_two_tilings_agree_no_seams(model, scene, tmp_path):
    """The trained U-Net with two tile sizes and paddings: the same classes nearly everywhere
    (what differs are object borders, where the model itself is unsure with more or less context)."""
    outs = []
    for arguments in ("tile_size 64;padding 16", "tile_size 96;padding 24"):
        outs.append(tmp_path / f"{len(outs)}.tif")
        run_inference(ih.config("classify_pixels", scene[0], model.out_model_file, outs[-1], arguments=arguments))
    a, b = ih.read(outs[0])[0], ih.read(outs[1])[0]
    assert (a == b).mean() >= 0.99


@pytest.mark.usefixtures("fake_models")
def test_any_tiling_gives_the_same_raster_with_a_local_model(tmp_path):
    """A model that sees 5 x 5 pixels: with padding >= 2 every tiling must give the very same
    output, edges and odd sizes included (the stitching has no seam and no offset)."""
    raster = ih.squares_raster(tmp_path, [(5, 7, 9), (60, 30, 20), (101, 90, 15), (130, 3, 7)], size=150)
    model = ih.fake_package(tmp_path / "m", "FAKEPIXELS", [(1, "bright", (255, 255, 0)), (2, "dark", (0, 0, 90))])
    outs = []
    for arguments in ("", "tile_size 24;padding 2;batch_size 3", "tile_size 57;padding 9", "tile_size 200;padding 25"):
        outs.append(tmp_path / f"{len(outs)}.tif")
        run_inference(ih.config("classify_pixels", raster, model, outs[-1], arguments=arguments, precision="fp32"))
    first = ih.read(outs[0])[0]
    for out in outs[1:]:
        assert np.array_equal(ih.read(out)[0], first)
    # and what it shows is where the squares are
    assert (first[9:14, 7:12] == 1).all() and (first[32:48, 62:78] == 1).all()  # square interiors
    assert first[100, 50] in (0, 2)


@pytest.mark.trains
def test_extent_and_cell_size_give_the_output_grid(model, scene, tmp_path):
    raster = scene[0]
    t = h.T0
    # EXTENT: snapped outwards to whole input pixels, no resampling
    extent = [t.c + 10.2 * t.a, t.f + 90.7 * t.e, t.c + 70.4 * t.a, t.f + 20.1 * t.e]
    out = tmp_path / "extent.tif"
    run_inference(ih.config("classify_pixels", raster, model.out_model_file, out, extent=extent))
    pred, profile, _ = ih.read(out)
    assert profile["transform"] == t * rasterio.Affine.translation(10, 20)
    assert (profile["width"], profile["height"]) == (61, 71)
    # CELL_SIZE: the extent's top-left corner, square cells of that size
    out2 = tmp_path / "cell.tif"
    run_inference(ih.config("classify_pixels", raster, model.out_model_file, out2, extent=extent, cell_size=1.0))
    pred2, profile2, _ = ih.read(out2)
    assert profile2["transform"] == rasterio.Affine(1.0, 0, extent[0], 0, -1.0, extent[3])
    assert (profile2["width"], profile2["height"]) == (31, 36)
    assert profile2["crs"] == profile["crs"]
    assert set(np.unique(pred2)) <= {0, 3, 7, 255}


@pytest.mark.trains
def test_nodata_in_gives_nodata_out(model, tmp_path):
    raster, _ = ih.scene(tmp_path, seed=12, size=96)
    with rasterio.open(raster) as src:
        data = src.read()
    data[:, 10:40, 20:60] = 0  # every band NoData
    data[0, 60:70, 60:70] = 0  # one band only: still data
    path = h.write_raster(tmp_path / "nodata.tif", data, nodata=0)
    out = tmp_path / "out.tif"
    result = run_inference(ih.config("classify_pixels", path, model.out_model_file, out, arguments="batch_size 8"))
    pred = ih.read(out)[0]
    assert (pred[10:40, 20:60] == 255).all()
    assert (pred != 255).sum() == 96 * 96 - 30 * 40
    assert result.details["nodata_pixels"] == 30 * 40
    assert result.details["skipped_tiles"] >= 1  # a tile with no data never reaches the model


@pytest.mark.trains
def test_predict_background_false_and_tta(model, scene, tmp_path):
    t = h.T0
    extent = [t.c, t.f + 64 * t.e, t.c + 64 * t.a, t.f]  # the top-left 64 x 64 px: a quarter of the work
    out = tmp_path / "nobg.tif"
    run_inference(ih.config("classify_pixels", scene[0], model.out_model_file, out, extent=extent,
                            arguments="predict_background false;batch_size 16"))
    assert set(np.unique(ih.read(out)[0])) <= {3, 7}
    out2 = tmp_path / "tta.tif"
    run_inference(ih.config("classify_pixels", scene[0], model.out_model_file, out2, extent=extent,
                            arguments="test_time_augmentation true;batch_size 16"))
    pred = ih.read(out2)[0]
    plain = ih.read(classified_path(model, scene, tmp_path, extent))[0]
    assert pred.shape == (64, 64) and (pred == plain).mean() > 0.95  # flips averaged: about the same classes


def classified_path(model, scene, tmp_path, extent):
    out = tmp_path / "plain.tif"
    run_inference(ih.config("classify_pixels", scene[0], model.out_model_file, out, extent=extent,
                            arguments="batch_size 16"))
    return out


@pytest.mark.usefixtures("fake_models")
def test_ignore_mapped_class_is_never_predicted(tmp_path):
    """arcgis.learn's emd key ignore_mapped_class (output indices): Pro never predicts those
    outputs, and neither do we; indices outside the outputs are refused by name."""
    raster = ih.squares_raster(tmp_path, [(5, 7, 9), (60, 30, 20)], size=96)
    classes = [(1, "bright", (255, 255, 0)), (2, "dark", (0, 0, 90))]
    plain, ignored = tmp_path / "plain.tif", tmp_path / "ignored.tif"
    run_inference(ih.config("classify_pixels", raster, ih.fake_package(tmp_path / "a", "FAKEPIXELS", classes),
                            plain, precision="fp32"))
    model = ih.fake_package(tmp_path / "b", "FAKEPIXELS", classes, emd_extra={"ignore_mapped_class": [1]})
    run_inference(ih.config("classify_pixels", raster, model, ignored, precision="fp32"))
    before, after = ih.read(plain)[0], ih.read(ignored)[0]
    assert (before == 1).sum() > 300 and not (after == 1).any()  # the squares were "bright"
    assert np.array_equal(after[before != 1], before[before != 1])  # nothing else changes
    bad = ih.fake_package(tmp_path / "c", "FAKEPIXELS", classes, emd_extra={"ignore_mapped_class": [5]})
    with pytest.raises(InputError) as e:
        run_inference(ih.config("classify_pixels", raster, bad, tmp_path / "bad.tif"))
    assert e.value.parameter == "IN_MODEL_DEFINITION" and "ignore_mapped_class [5]" in e.value.message


@pytest.mark.trains
@pytest.mark.parametrize("arguments, words", [
    ("colour_balancing true", "valid arguments: batch_size, padding, predict_background, test_time_augmentation, "
                              "tile_size"),
    ("padding 16", "padding 16 leaves nothing"),
    ("batch_size 0", "batch_size"),
    ("predict_background maybe", "true or false"),
])
def test_bad_arguments_are_named(model, scene, tmp_path, arguments, words):
    out = tmp_path / "out.tif"
    with pytest.raises(InputError) as e:
        run_inference(ih.config("classify_pixels", scene[0], model.out_model_file, out, arguments=arguments))
    assert e.value.parameter == "ARGUMENTS" and words in e.value.message
    assert not os.listdir(tmp_path)


@pytest.mark.trains
def test_band_count_that_does_not_fit_is_refused(model, tmp_path):
    path = h.write_raster(tmp_path / "five.tif", h.random_image(5, 64, 64))
    with pytest.raises(InputError) as e:
        run_inference(ih.config("classify_pixels", path, model.out_model_file, tmp_path / "o.tif"))
    assert e.value.parameter == "IN_RASTER"
    assert "3-band 8-bit RGB" in e.value.message and "has 5 band(s)" in e.value.message
    assert not (tmp_path / "o.tif").exists()


@pytest.mark.trains
def test_an_alpha_band_is_a_mask(model, tmp_path):
    data = h.random_image(4, 48, 48)
    data[3] = 255
    data[3, :, :20] = 0  # transparent
    path = h.write_raster(tmp_path / "rgba.tif", data)  # GDAL makes 4 bands of Byte RGBA
    out = tmp_path / "o.tif"
    run_inference(ih.config("classify_pixels", path, model.out_model_file, out, arguments="batch_size 16"))
    pred = ih.read(out)[0]
    assert (pred[:, :20] == 255).all() and (pred[:, 20:] != 255).all()
    # resampled (CELL_SIZE: a warped VRT): the alpha band still masks
    out2 = tmp_path / "o2.tif"
    run_inference(ih.config("classify_pixels", path, model.out_model_file, out2, cell_size=1.0))
    pred2 = ih.read(out2)[0]
    assert pred2.shape == (24, 24) and (pred2[:, :10] == 255).all() and (pred2[:, 10:] != 255).all()


@pytest.mark.trains
def test_cancel_leaves_no_output(model, scene, tmp_path):
    out = tmp_path / "canceled.tif"
    seen = []

    def cancel():  # after the second progress event
        return sum(1 for e in seen if e["event"] == "progress") >= 2
    with pytest.raises(Canceled):
        run_inference(ih.config("classify_pixels", scene[0], model.out_model_file, out),
                      Events(sink=seen.append), cancel)
    assert os.listdir(tmp_path) == []


@pytest.mark.trains
def test_other_devices_are_named(model, scene, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(InputError) as e:
        run_inference(ih.config("classify_pixels", scene[0], model.out_model_file, tmp_path / "o.tif", device="cuda"))
    assert e.value.parameter == "DEVICE"


@pytest.mark.trains
def test_raster_function_predict_tile_matches_the_tool(model, scene, classified):
    from dl_engine.infer.raster_function import predict_tile
    emd = json.loads(open(model.emd).read())
    emd["_emd_path"] = model.emd
    with rasterio.open(scene[0]) as src:
        pixels = src.read(window=rasterio.windows.Window(40, 24, 32, 32))  # tile at 48, 32 with padding 8
    out = predict_tile(emd, pixels, shape=(1, 16, 16), padding=8, parameters={"device": "cpu"})
    assert out.shape == (1, 16, 16)
    tool = ih.read(classified[0])[0][32:48, 48:64]
    assert (out[0] == tool).mean() >= 0.95
    mask = np.ones_like(pixels)
    mask[:, 8:12, 8:12] = 0
    masked = predict_tile(emd, pixels, mask=mask, padding=8, parameters={"device": "cpu"})
    assert masked.shape == (1, 16, 16) and (masked[0, :4, :4] == 0).all()


@pytest.mark.usefixtures("fake_models")
def test_multispectral_model_normalises_with_its_emd_statistics(tmp_path):
    """16-bit, 4 bands, ExtractBands without band 2: the emd's NormalizationStats decide what
    the model sees (the local model calls "bright" a normalised first band above 1)."""
    rng = np.random.default_rng(3)
    data = rng.integers(900, 1100, size=(4, 80, 80)).astype("uint16")
    data[0, 20:40, 30:50] = 3000
    path = h.write_raster(tmp_path / "ms.tif", data)
    stats = {"band_min_values": [0, 0, 0, 0], "band_max_values": [4000] * 4, "band_mean_values": [1000] * 4,
             "band_std_values": [400] * 4, "scaled_min_values": [0] * 4, "scaled_max_values": [1] * 4,
             "scaled_mean_values": [0.25] * 4, "scaled_std_values": [0.1] * 4}
    model = ih.fake_package(tmp_path / "m", "FAKEPIXELS", [(1, "bright", (255, 255, 0)), (2, "dark", (0, 0, 90))],
                            emd_extra={"IsMultispectral": True, "ExtractBands": [0, 1, 3], "NormalizationStats": stats})
    out = tmp_path / "o.tif"
    run_inference(ih.config("classify_pixels", path, model, out, precision="fp32"))
    pred = ih.read(out)[0]
    # (3000 / 4000 - 0.25) / 0.1 = 5 > 1 inside the square; (1000 / 4000 - 0.25) / 0.1 = 0 outside
    assert (pred[22:38, 32:48] == 1).all() and (pred[60:, :] == 0).all()
    three = h.write_raster(tmp_path / "three.tif", data[:3])
    with pytest.raises(InputError) as e:
        run_inference(ih.config("classify_pixels", three, model, tmp_path / "x.tif"))
    assert e.value.parameter == "IN_RASTER" and "4-band imagery" in e.value.message
