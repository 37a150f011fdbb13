"""dl_engine.data.folders: export folders written by our engine and by ArcGIS Pro read
back as training samples; several folders merged; every bad folder a named InputError."""

import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from pytest import approx

import data_helpers as dh
import engine_helpers as h
from dl_engine.errors import DataWarning, InputError
from dl_engine.data import open_folders, split_folder_list
from dl_engine.data.folders import map_tokens

FORMATS = ["Classified_Tiles", "PASCAL_VOC_rectangles", "KITTI_rectangles", "Labeled_Tiles",
           "MultiLabeled_Tiles", "Imagenet", "RCNN_Masks"]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """One export per format of the same raster and rectangles (classes 3 'Oak' and 7 'Pine')."""
    base = tmp_path_factory.mktemp("exports")
    path, _ = dh.raster(base)
    return {fmt: dh.export(path, base / fmt, fmt) for fmt in FORMATS}


@pytest.mark.parametrize("fmt", FORMATS)
def test_our_exports_list_every_chip_of_map_txt(exports, fmt):
    out = exports[fmt]
    data = open_folders(out)
    lines = dh.map_lines(out)
    assert data.metadata_format == fmt
    assert (data.num_bands, data.tile_size_x, data.tile_size_y) == (3, dh.TILE, dh.TILE)
    assert data.image_space == "MAP_SPACE" and data.dtype == "uint8"
    assert data.warnings == []
    # Every map.txt line is a sample, in order, with its image and label files.
    assert [Path(s.image) for s in data.samples] == [dh.local(out, t[0]) for t in lines]
    for s, tokens in zip(data.samples, lines):
        assert s.stem == Path(tokens[0]).stem.split("\\")[-1] and len(s.stem) == 12
        if fmt == "Imagenet":
            assert s.label is None and s.class_name == tokens[0].split("\\")[1]
        elif fmt == "RCNN_Masks":
            # every class folder holding this chip's instances (map.txt names only the first)
            expected = sorted(d.name for d in Path(out, "labels").iterdir() if (d / f"{s.stem}.tif").is_file())
            assert sorted(c for c, _ in s.instances) == expected and expected
            assert Path(s.instances[0][1]) == dh.local(out, tokens[-1])
        else:
            assert Path(s.label) == dh.local(out, tokens[-1]) and Path(s.label).is_file()
    # Classes from the emd: value, name and colour ([-1, -1, -1] = none).
    assert [(c.value, c.name, c.color) for c in data.classes] == [(3, "Oak", (10, 200, 30)), (7, "Pine", None)]


def test_band_stats_are_the_exports(exports):
    out = exports["Classified_Tiles"]
    data = open_folders(out)
    state = h.stats_json(out)["BandStatsState"]
    assert list(data.band_stats.num) == [b["Num"] for b in state]
    assert list(data.band_stats.mean) == [b["M1"] for b in state]
    values = h.band_values(out, width=dh.SIZE, height=dh.SIZE)
    for b, v in enumerate(values):
        assert data.band_stats.std[b] == approx(v.std(), rel=1e-9)
        assert (data.band_stats.min[b], data.band_stats.max[b]) == (v.min(), v.max())


# ---- an ArcGIS Pro 2.x export ------------------------------------------------------------------

def test_pro2_voc_export(tmp_path):
    out, _ = dh.pro2_voc_export(tmp_path / "pro2")
    assert Path(out, "map.txt").read_bytes().startswith(b"images\\000000000.jpg  labels\\000000000.xml \r\n")
    with pytest.warns(DataWarning, match=r"1 of 4 chip\(s\) .* have no label file"):
        data = open_folders(out)
    assert data.metadata_format == "PASCAL_VOC_rectangles"
    assert [s.stem for s in data.samples] == ["000000000", "000000001", "000000003"]
    assert all(s.image.endswith(".jpg") and os.sep + "images" + os.sep in s.image for s in data.samples)
    assert all(s.label.endswith(".xml") and Path(s.label).is_file() for s in data.samples)
    # 2.x emd: placeholders for the size, so the stats JSON's tile size is used.
    assert (data.num_bands, data.tile_size_x, data.tile_size_y) == (3, 32, 32)
    # Classes from the emd (colour [-1, -1, -1] = none); no BandStatsState in old-style stats.
    assert [(c.value, c.name, c.color) for c in data.classes] == [(1, "Palm", (255, 0, 0)), (2, "Shrub", None)]
    assert data.band_stats is None
    assert len(data.warnings) == 1 and "skipped" in data.warnings[0]


def test_classes_fall_back_to_the_stats_json(tmp_path):
    out, _ = dh.pro2_voc_export(tmp_path / "pro2")
    emd = dict(dh.PRO2_EMD)
    del emd["Classes"]
    Path(out, "esri_model_definition.emd").write_text(dh.pro_json(emd))
    data = open_folders(out, warn=False)
    assert [(c.value, c.name, c.color) for c in data.classes] == [(1, "Palm", None), (2, "Shrub", None)]


def test_lf_map_txt_slashes_and_png_chips(tmp_path):
    out, _ = dh.pro2_voc_export(tmp_path / "pro2")
    text = Path(out, "map.txt").read_bytes().decode().replace("\r\n", "\n").replace("\\", "/")
    Path(out, "map.txt").write_text(text)
    data = open_folders(out, warn=False)
    assert [s.stem for s in data.samples] == ["000000000", "000000001", "000000003"]


def test_empty_map_txt_lists_images_folder(tmp_path):
    """An ArcGIS export whose map.txt lists nothing: the chips in images/ are read, as arcgis.learn does."""
    out, _ = dh.pro2_voc_export(tmp_path / "pro2", map_lines_count=0)
    with pytest.warns(DataWarning, match="no label file"):
        data = open_folders(out)
    assert [s.stem for s in data.samples] == ["000000000", "000000001", "000000003"]
    assert all(Path(s.label).name == s.stem + ".xml" for s in data.samples)


def test_chips_missing_from_map_txt_are_read_too(tmp_path):
    out, _ = dh.pro2_voc_export(tmp_path / "pro2", map_lines_count=2)
    with pytest.warns(DataWarning) as record:
        data = open_folders(out)
    assert [s.stem for s in data.samples] == ["000000000", "000000001", "000000003"]
    messages = " ".join(str(w.message) for w in record)
    assert "2 chip(s)" in messages and "not listed in map.txt" in messages


def test_map_line_with_spaces_in_a_class_folder():
    assert map_tokens("images\\Oak tree\\000000000001.tif \r\n") == ["images\\Oak tree\\000000000001.tif"]
    assert map_tokens("images\\000000038400.tif images2\\000000038400.tif  labels\\000000038400.tif") == \
        ["images\\000000038400.tif", "images2\\000000038400.tif", "labels\\000000038400.tif"]
    assert map_tokens("a.tif b.xml") == ["a.tif", "b.xml"]
    assert map_tokens("   \r\n") == []


def test_imagenet_class_folder_with_a_space(tmp_path):
    path, _ = dh.raster(tmp_path)
    out = dh.export(path, tmp_path / "imnet", "Imagenet",
                    labels=dh.labels(classes=[dh.ClassInfo(3, "Oak tree"), dh.ClassInfo(7, "Pine")]))
    data = open_folders(out)
    assert sorted({s.class_name for s in data.samples}) == ["Oak tree", "Pine"]
    assert len(data.samples) == len(dh.RECTS)


def test_export_with_images2(tmp_path):
    path, _ = dh.raster(tmp_path)
    path2, _ = dh.raster(tmp_path, bands=1, seed=9)
    out = dh.export(path, tmp_path / "two", "Classified_Tiles", raster2=path2)
    data = open_folders(out)
    assert data.has_images2
    for s in data.samples:
        assert Path(s.image2) == Path(out, "images2", Path(s.image).name)


# ---- several folders ---------------------------------------------------------------------------

def test_two_folders_merged(tmp_path):
    """Classes are the union by value; band statistics equal those of every chip of both
    exports computed with numpy; samples of both are listed."""
    a_path, _ = dh.raster(tmp_path, bands=4, dtype="uint16", seed=1, low=100, high=4000)
    b_path, _ = dh.raster(tmp_path, bands=4, dtype="uint16", seed=2, low=2000, high=9000)
    a = dh.export(a_path, tmp_path / "a", "Classified_Tiles")
    b = dh.export(b_path, tmp_path / "b", "Classified_Tiles",
                  labels=dh.labels([((5.2, 5.3, 30.1, 30.2), 7), ((40.1, 40.2, 70.3, 70.4), 9)],
                                   [dh.ClassInfo(7, "Pine"), dh.ClassInfo(9, "Birch", (1, 2, 3))]))
    data = open_folders(f"{a};{b}")
    assert data.paths == [str(Path(a)), str(Path(b))]
    assert [(c.value, c.name) for c in data.classes] == [(3, "Oak"), (7, "Pine"), (9, "Birch")]
    assert len(data.samples) == len(dh.map_lines(a)) + len(dh.map_lines(b))
    assert {s.folder for s in data.samples} == {0, 1}
    values = [np.concatenate([va, vb]) for va, vb in zip(h.band_values(a, width=dh.SIZE, height=dh.SIZE),
                                                         h.band_values(b, width=dh.SIZE, height=dh.SIZE))]
    st = data.band_stats
    for band, v in enumerate(values):
        assert st.num[band] == v.size
        assert st.mean[band] == approx(v.mean(), rel=1e-9)
        assert st.std[band] == approx(v.std(), rel=1e-9)
        assert (st.min[band], st.max[band]) == (v.min(), v.max())
    # The same through a list, and a folder given twice counts once.
    assert len(open_folders([a, b, a]).samples) == len(data.samples)


def test_folders_of_the_same_name_keep_distinct_keys(tmp_path):
    path, _ = dh.raster(tmp_path)
    a = dh.export(path, tmp_path / "x" / "chips", "Classified_Tiles")
    b = dh.export(path, tmp_path / "y" / "chips", "Classified_Tiles")
    keys = [s.key for s in open_folders([a, b]).samples]
    assert len(set(keys)) == len(keys)


def test_split_folder_list():
    assert split_folder_list(' "/a/b" ; /c ;') == ["/a/b", "/c"]
    assert split_folder_list(["/a", Path("/b")]) == ["/a", "/b"]
    with pytest.raises(InputError) as e:
        split_folder_list(" ; ")
    assert e.value.parameter == "IN_FOLDER"


# ---- bad folders -------------------------------------------------------------------------------

def _error(spec) -> InputError:
    with pytest.raises(InputError) as e:
        open_folders(spec, warn=False)
    assert e.value.parameter == "IN_FOLDER"
    return e.value


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    err = _error(tmp_path / "empty")
    assert "is empty" in err.message and "esri_model_definition.emd" in err.message


def test_missing_folder(tmp_path):
    assert "does not exist" in _error(tmp_path / "nope").message


def test_folder_without_esri_files(tmp_path):
    (tmp_path / "f").mkdir()
    h.write_raster(tmp_path / "f" / "x.tif", np.zeros((1, 4, 4), "uint8"))
    Path(tmp_path / "f" / "map.txt").write_text("")
    err = _error(tmp_path / "f")
    assert "not an export folder" in err.message
    assert "esri_model_definition.emd" in err.message and "esri_accumulated_stats.json" in err.message
    assert "map.txt," not in err.message.split("missing")[0]  # map.txt is there


def test_images_subfolder_given(exports):
    err = _error(Path(exports["Classified_Tiles"]) / "images")
    assert "give the export folder itself" in err.message


def test_cyclegan_root(tmp_path):
    path, _ = dh.raster(tmp_path)
    path2, _ = dh.raster(tmp_path, seed=4)
    out = dh.export(path, tmp_path / "cg", "CycleGAN", raster2=path2)
    assert "CycleGAN" in _error(out).message


def test_map_txt_without_samples(tmp_path):
    out, _ = dh.pro2_voc_export(tmp_path / "pro2", map_lines_count=0)
    shutil.rmtree(Path(out, "images"))
    Path(out, "images").mkdir()
    err = _error(out)
    assert "lists no chips" in err.message and ".tif" in err.message


def test_bad_json(tmp_path):
    out, _ = dh.pro2_voc_export(tmp_path / "pro2")
    Path(out, "esri_accumulated_stats.json").write_text("{ not json")
    assert "esri_accumulated_stats.json" in _error(out).message


def test_unknown_metadata_mode(tmp_path):
    dh.write_esri_files(tmp_path / "u", {"MetaDataMode": "Pictures"}, {}, "images\\0.tif\r\n")
    err = _error(tmp_path / "u")
    assert "Pictures" in err.message and "Classified_Tiles" in err.message


def test_folders_that_disagree(exports, tmp_path):
    voc, cls = exports["PASCAL_VOC_rectangles"], exports["Classified_Tiles"]
    err = _error(f"{cls};{voc}")
    assert "MetaDataMode" in err.message and "Classified_Tiles" in err.message and "PASCAL_VOC" in err.message
    path, _ = dh.raster(tmp_path, bands=1, seed=3)
    one_band = dh.export(path, tmp_path / "one", "Classified_Tiles")
    err = _error([cls, one_band])
    assert "NumBands is 3" in err.message and "1 in" in err.message
    path, _ = dh.raster(tmp_path, seed=5)
    big = dh.export(path, tmp_path / "big", "Classified_Tiles", tile=48)
    assert "tile size is 32 x 32" in _error([cls, big]).message


def test_data_error_pickles():
    e = pickle.loads(pickle.dumps(InputError("IN_FOLDER", "bad")))
    assert (e.parameter, e.message, str(e)) == ("IN_FOLDER", "bad", "IN_FOLDER: bad")
