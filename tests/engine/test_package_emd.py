"""dl_engine.package.emd: the trained emd has arcgis.learn's keys in arcgis.learn's order
(esri-formats.md §2.1), its number formats, and our own framework and inference function."""

import json
import re

import pytest

import engine_helpers as h
from dl_engine.models import registry
from dl_engine.package.emd import build_emd, write_emd
from test_package_helpers import exports, fake_spec, make_record, make_spec  # noqa: F401 (fixtures)

SCI = re.compile(r"^\d\.\d{4}e[+-]\d{2}$")

HEAD = ["Framework", "ModelType", "InferenceFunction", "ExtractBands", "ignore_mapped_class",
        "SupportsVariableTileSize", "Classes", "ModelFormat", "MinCellSize", "MaxCellSize", "ArcGISLearnVersion",
        "monitored_valid_loss", "ModelFile", "ImageHeight", "ImageWidth", "ImageSpaceUsed", "LearningRate",
        "ModelName", "backend", "ModelParameters", "accuracy", "miou", "resize_to", "IsMultispectral"]
TAIL = ["per_class_metrics", "DatasetType", "PretrainedWeights", "Engine"]  # PretrainedWeights: ours


def test_rgb_pixel_model_keys_order_and_values(exports, fake_spec, tmp_path):
    record = make_record(exports["rgb"])
    emd = build_emd(record)
    assert list(emd) == HEAD + TAIL
    assert emd["Framework"] == "PyTorch" and "arcgis.learn" not in json.dumps(emd)
    assert emd["InferenceFunction"] == "DeepLearningToolsClassifier.py"
    assert emd["ModelType"] == "ImageClassification" and emd["ModelName"] == "TestUnetClassifier"
    assert emd["ExtractBands"] == [0, 1, 2] and emd["IsMultispectral"] is False
    assert emd["ModelFormat"] == "NCHW" and emd["backend"] == "pytorch"
    assert emd["ModelFile"] == "mymodel.pth" and emd["ImageHeight"] == emd["ImageWidth"] == 32
    assert emd["ImageSpaceUsed"] == "MAP_SPACE" and emd["resize_to"] is None
    assert emd["SupportsVariableTileSize"] is True  # the model's own value wins over the default
    export_emd = h.emd(exports["rgb"])
    assert emd["MinCellSize"] == export_emd["MinCellSize"] and emd["MaxCellSize"] == export_emd["MaxCellSize"]
    assert emd["ArcGISLearnVersion"] == "2.0.1"
    assert emd["monitored_valid_loss"] == 0.4
    assert emd["LearningRate"] == "8.3176e-04"
    assert emd["accuracy"] == "9.5355e-01" and SCI.match(emd["miou"])
    assert emd["ModelParameters"] == {"backbone": "resnet34", "backend": "pytorch"}
    assert emd["DatasetType"] == "Classified_Tiles"
    # Classes: values from the export, its colour where it had one, a valid colour otherwise.
    oak, pine = emd["Classes"]
    assert oak == {"Value": 3, "Name": "Oak", "Color": [10, 200, 30]}
    assert pine["Value"] == 7 and pine["Name"] == "Pine" and all(0 <= c <= 255 for c in pine["Color"])
    # What rebuilding the network needs.
    assert emd["Engine"]["name"] == "deeplearningtools" and emd["Engine"]["model_type"] == "TESTUNET"
    assert emd["Engine"]["backbone_keyword"] == "RESNET34" and emd["Engine"]["arguments"] == {"depth": 4}
    assert emd["Engine"]["num_classes"] == 3
    assert emd["PretrainedWeights"] == "random"
    # Written with indent=4 and read back unchanged.
    path = tmp_path / "m.emd"
    write_emd(emd, str(path))
    text = path.read_text()
    assert text.startswith('{\n    "Framework": "PyTorch",') and json.loads(text) == emd


def test_per_class_metrics_is_a_json_string(exports, fake_spec):
    emd = build_emd(make_record(exports["rgb"]))
    text = emd["per_class_metrics"]
    assert isinstance(text, str) and " " not in text
    per = json.loads(text)
    assert list(per) == ["NoData", "Oak", "Pine"]
    assert per["Oak"] == {"precision": 0.7, "recall": 0.6, "f1": 0.646}
    assert all(list(v) == ["precision", "recall", "f1"] for v in per.values())


def test_missing_metrics_are_zero_or_absent(exports, fake_spec):
    emd = build_emd(make_record(exports["rgb"], metrics={}, best_value=None))
    assert "accuracy" not in emd and "miou" not in emd and emd["monitored_valid_loss"] is None
    assert json.loads(emd["per_class_metrics"])["Pine"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    json.dumps(emd, allow_nan=False)


def test_multispectral_keys(exports, fake_spec):
    record = make_record(exports["ms"])
    emd = build_emd(record)
    assert list(emd) == HEAD + ["Bands", "ImageryType", "NormalizationStats", "DoNormalize"] + TAIL
    assert emd["IsMultispectral"] is True and emd["DoNormalize"] is True
    assert emd["ExtractBands"] == [0, 1, 2, 3]  # 4 bands, kept at its arcgis.learn position
    assert len(emd["Bands"]) == 4 and emd["ImageryType"] == "MultiSpectral"
    stats = emd["NormalizationStats"]
    assert list(stats) == ["band_min_values", "band_max_values", "band_mean_values", "band_std_values",
                           "scaled_min_values", "scaled_max_values", "scaled_mean_values", "scaled_std_values"]
    assert stats == record.normalization.normalization_stats()
    assert all(len(v) == 4 for v in stats.values())
    json.dumps(emd, allow_nan=False)


def test_model_parameters_merge_and_protected_keys(exports):
    spec = make_spec(emd_params=lambda a, b: {"Framework": "arcgis.learn.models._inferencing",
                                              "ModelParameters": {"pyramid_sizes": a["depth"], "backbone": "x"},
                                              "Kwargs": {"k": 1}})
    with registry.registered(spec):
        emd = build_emd(make_record(exports["rgb"], monitor="MIOU", best_value=0.61))
    assert emd["Framework"] == "PyTorch"
    assert emd["ModelParameters"] == {"pyramid_sizes": 4, "backbone": "resnet34", "backend": "pytorch"}
    assert list(emd)[:5] == ["Framework", "ModelType", "InferenceFunction", "ExtractBands", "Kwargs"]
    assert emd["SupportsVariableTileSize"] is False  # the default when the model says nothing
    assert emd["monitored_miou"] == 0.61 and "monitored_valid_loss" not in emd


def test_real_unet_spec(exports):
    pytest.importorskip("dl_engine.models.pixel")
    emd = build_emd(make_record(exports["rgb"], model_type="UNET"))
    assert emd["ModelName"] == "UnetClassifier" and emd["ModelType"] == "ImageClassification"
    assert emd["Engine"]["model_type"] == "UNET" and emd["ModelParameters"]["backbone"] == "resnet34"
    # arcgis.learn 2.4.4's UnetClassifier order (IsImageNetNormalization: with arcgis.learn's layout)
    assert list(emd) == HEAD[:1] + ["ModelConfiguration"] + HEAD[1:] + ["IsImageNetNormalization"] + TAIL
    assert emd["IsImageNetNormalization"] is True
    # On a ResNet the network has arcgis.learn's layout: arcgis.learn's inferencing keys, Pro's own
    # inference function (tests/engine/test_arcgis_unet.py checks the network itself).
    assert emd["Framework"] == "arcgis.learn.models._inferencing"
    assert emd["InferenceFunction"] == "[Functions]System\\DeepLearning\\ArcGISLearn\\ArcGISImageClassifier.py"
    assert emd["Engine"]["network"] == "arcgis.learn"


def test_pretrained_weights_say_where_training_started(exports, fake_spec):
    source = "timm/resnet34.a1_in1k (Hugging Face hub)"
    emd = build_emd(make_record(exports["rgb"], pretrained_loaded=True, pretrained_weights=source))
    assert emd["PretrainedWeights"] == source
    assert build_emd(make_record(exports["rgb"], pretrained_loaded=True))["PretrainedWeights"] == "pretrained"
