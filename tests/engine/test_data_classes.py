"""dl_engine.data.classes: Esri class conventions — 0 is background/NoData for pixel
formats, non-contiguous class values remapped to 1..K for training and back on output."""

import numpy as np
import pytest

import data_helpers as dh
from dl_engine.data import ClassDef, ClassMap, SampleReader, open_folders
from dl_engine.data.classes import merge_classes

OAK_PINE = [ClassDef(3, "Oak", (10, 200, 30)), ClassDef(7, "Pine")]


def test_non_contiguous_values_remapped_and_back():
    cm = ClassMap.for_format(OAK_PINE, "Classified_Tiles")
    assert cm.names == ["NoData", "Oak", "Pine"] and cm.num_classes == 3 and not cm.is_contiguous
    label = np.array([[0, 3, 7], [5, 255, 3]], np.uint8)
    assert cm.encode(label).tolist() == [[0, 1, 2], [0, 0, 1]]  # unknown values → 0
    assert cm.encode(label).dtype == np.int64
    out = cm.decode(np.array([[0, 1, 2], [2, 1, 0]]))
    assert out.tolist() == [[0, 3, 7], [7, 3, 0]] and out.dtype == np.uint8
    assert [cm.value_of_index(i) for i in range(3)] == [0, 3, 7]
    assert cm.index_of_value(7) == 2 and cm.index_of_value(4) is None


def test_export_labels_round_trip(tmp_path):
    """Classes 3 and 7 exported, read as indices 1 and 2, decoded back equal the label files."""
    path, _ = dh.raster(tmp_path)
    out = dh.export(path, tmp_path / "c", "Classified_Tiles")
    data = open_folders(out)
    reader = SampleReader.for_data(data)
    cm = reader.class_map
    for ref in data.samples:
        mask = reader.read(ref).mask
        assert set(np.unique(mask).tolist()) <= {0, 1, 2}
        assert np.array_equal(cm.decode(mask), dh.read_array(ref.label)[0])


def test_class_zero_is_not_a_class_for_pixel_formats():
    classes = [ClassDef(0, "Nothing"), ClassDef(1, "Water"), ClassDef(2, "Land")]
    for fmt in ("Classified_Tiles", "RCNN_Masks", "Panoptic_Segmentation"):
        cm = ClassMap.for_format(classes, fmt)
        assert cm.values == [1, 2] and cm.is_contiguous and cm.names == ["NoData", "Water", "Land"]
    tiles = ClassMap.for_format(classes, "Labeled_Tiles")
    assert tiles.values == [0, 1, 2] and tiles.names == ["Nothing", "Water", "Land"] and tiles.num_classes == 3
    assert tiles.index_of_value(0) == 0 and tiles.value_of_index(2) == 2


def test_detection_has_a_background_index():
    cm = ClassMap.for_format(OAK_PINE, "PASCAL_VOC_rectangles")
    assert cm.names == ["background", "Oak", "Pine"] and cm.num_classes == 3
    assert cm.index_of_name("7") == 2 and cm.index_of_name("Oak") == 1 and cm.index_of_name("pine") == 2
    assert cm.index_of_name("Birch") is None and cm.index_of_name("4") is None


def test_emd_order_is_kept():
    cm = ClassMap.for_format([ClassDef(7, "Pine"), ClassDef(3, "Oak")], "Classified_Tiles")
    assert cm.names == ["NoData", "Pine", "Oak"]
    assert cm.encode(np.array([3, 7])).tolist() == [2, 1]
    assert cm.decode(np.array([1, 2])).tolist() == [7, 3]


@pytest.mark.parametrize("values", [[300, 1000], [5, 2_000_000]])
def test_large_values(values):
    cm = ClassMap.for_format([ClassDef(v, str(v)) for v in values], "Classified_Tiles")
    label = np.array([0, values[0], values[1], 17, -3], np.int64)
    assert cm.encode(label).tolist() == [0, 1, 2, 0, 0]
    decoded = cm.decode(np.array([0, 1, 2]))
    assert decoded.tolist() == [0] + values and decoded.dtype.itemsize >= 2


def test_emd_classes_keep_export_colours():
    cm = ClassMap.for_format(OAK_PINE, "Classified_Tiles")
    emd = cm.emd_classes()
    assert emd[0] == {"Value": 3, "Name": "Oak", "Color": [10, 200, 30]}
    assert emd[1]["Value"] == 7 and emd[1]["Name"] == "Pine"
    assert all(0 <= c <= 255 for c in emd[1]["Color"]) and emd == cm.emd_classes()  # reproducible


def test_merge_classes_by_value():
    a = [ClassDef(3, "Oak"), ClassDef(7, "Pine")]
    b = [ClassDef(9, "Birch"), ClassDef(3, "Quercus"), ClassDef(7, "Pine", (1, 2, 3))]
    merged, notes = merge_classes([a, b])
    assert [(c.value, c.name, c.color) for c in merged] == [(3, "Oak", None), (7, "Pine", (1, 2, 3)),
                                                             (9, "Birch", None)]
    assert len(notes) == 1 and "Quercus" in notes[0]
