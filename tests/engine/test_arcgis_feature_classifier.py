"""FEATURE_CLASSIFIER on a ResNet has arcgis.learn's FeatureClassifier layout (issue 15): its state
dict is the one arcgis.learn 2.4.4 builds (recorded in tests/data/arcgis_layouts/featureclassifier_*),
its packages take arcgis.learn's emd keys in arcgis.learn's order, packages written before the
layout still load, and packages arcgis.learn trained run in Classify Objects.

Where the arcgis.learn oracle is installed (../shared/tools/arcgis-oracle/install.sh), the round
trips run against arcgis.learn itself (scripts/arcgis_compare.py, scripts/make_arcgis_fixtures.py);
elsewhere only those tests are skipped, saying why.
"""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import rasterio
import shapely.geometry
import torch

import classifier_helpers as ch
import engine_helpers as h
import infer_helpers as ih
from dl_engine.infer import run_inference
from dl_engine.errors import InputError
from dl_engine.infer.model import load_model
from dl_engine.models import arcgis_classifier, classification, registry
from dl_engine.models.classifier_net import FeatureClassifierNet
from dl_engine.models.spec import BuildContext
from dl_engine.package import write_model_package
from test_package_helpers import make_record
from arcgis_helpers import (arcgis_compare, as_written_before, assert_arcgis_learn_loads,  # noqa: F401
                            needs_oracle, train_with_arcgis_learn)

ROOT = Path(__file__).resolve().parents[2]
LAYOUTS = sorted((ROOT / "tests" / "data" / "arcgis_layouts").glob("featureclassifier_*.json"))

PRO_FUNCTION = "[Functions]System\\DeepLearning\\ArcGISLearn\\ArcGISObjectClassifier.py"
# The keys of FeatureClassifier.save() (save_inference_file=False) in its order, 8-bit RGB and multispectral
ARCGIS_KEYS = ["Framework", "ModelConfiguration", "ModelType", "InferenceFunction", "MetaDataMode", "ExtractBands",
               "CropSizeFixed", "BlackenAroundFeature", "ImageSpaceUsed", "Classes", "ModelFormat", "MinCellSize",
               "MaxCellSize", "SupportsVariableTileSize", "ArcGISLearnVersion", "monitored_accuracy", "ModelFile",
               "ImageHeight", "ImageWidth", "LearningRate", "ModelName", "backend", "ModelParameters", "resize_to",
               "IsMultispectral", "IsImageNetNormalization"]
MS_KEYS = ["Bands", "ImageryType", "NormalizationStats", "DoNormalize"]


def build(backbone="RESNET18", classes=2, bands=3, network=None, emd=None):
    spec = registry.get_spec("FEATURE_CLASSIFIER")
    ctx = BuildContext(backbone=backbone, in_channels=bands, num_classes=classes, chip_size=32,
                       arguments=dict(spec.arguments), pretrained=False, log=lambda m: None, network=network, emd=emd)
    return spec.build(ctx).module


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda p: p.stem)
def test_state_dict_is_arcgis_learns(layout):
    recorded = json.loads(layout.read_text())
    module = build(recorded["backbone"].upper(), recorded["classes"])
    assert isinstance(module, arcgis_classifier.ArcgisFeatureClassifier)
    ours = [[k, list(v.shape)] for k, v in module.state_dict().items()]
    assert ours == recorded["state_dict"]  # names, shapes and order


def test_layouts_were_recorded_for_every_resnet():
    assert {json.loads(p.read_text())["backbone"] for p in LAYOUTS} == set(classification.ARCGIS_CLASSIFIER_BACKBONES)


def test_chips_of_any_size_give_class_logits_and_the_body_is_the_encoder():
    built = classification.build_feature_classifier(BuildContext(
        backbone="RESNET18", in_channels=4, num_classes=3, chip_size=32, arguments={}, pretrained=False,
        log=lambda m: None))
    module = built.module.eval()
    assert {id(p) for p in built.encoder_parameters} == {id(p) for p in module[0].parameters()}
    assert module.state_dict()["0.0.weight"].shape == (64, 4, 7, 7)  # 4 bands in
    with torch.no_grad():
        for size in (32, 45, 70):
            out = module(torch.randn(2, 4, size, size))
            assert out.shape == (2, 3) and torch.isfinite(out).all()


def test_the_multi_label_flag_comes_from_the_emd_not_the_weights():
    emd = {"ModelName": "FeatureClassifier", "ModelParameters": {"backbone": "resnet18", "backend": "pytorch"},
           "ExtractBands": [0, 1, 2], "Classes": [{"Value": 3, "Name": "Roof"}, {"Value": 7, "Name": "Pool"}],
           "ImageHeight": 32}
    single = registry.build_from_emd({**emd, "MetaDataMode": "Labeled_Tiles"})
    multi = registry.build_from_emd({**emd, "MetaDataMode": "MultiLabeled_Tiles"})
    assert not single.is_multi_label and multi.is_multi_label
    assert set(single.state_dict()) == set(multi.state_dict())  # arcgis.learn's keys: no flag among them
    spec = registry.get_spec("FEATURE_CLASSIFIER")
    x = torch.randn(3, 3, 32, 32)
    multi.load_state_dict(single.state_dict())
    single.eval(), multi.eval()
    assert torch.allclose(spec.predict(single, x).sum(1), torch.ones(3))  # softmax
    assert torch.allclose(spec.predict(multi, x), torch.sigmoid(multi(x)))  # one sigmoid per class


def _emd(**engine):
    emd = {"ModelName": "FeatureClassifier", "ModelParameters": {"backbone": "resnet50", "backend": "pytorch"},
           "ExtractBands": [0, 1, 2], "Classes": [{"Value": 1, "Name": "Roof"}], "ImageHeight": 32}
    if engine:
        emd["Engine"] = {"name": "deeplearningtools", "model_type": "FEATURE_CLASSIFIER", **engine}
    return emd


@pytest.mark.heavy
def test_the_emd_says_which_network_to_rebuild():
    assert isinstance(registry.build_from_emd(_emd(network="arcgis.learn")), arcgis_classifier.ArcgisFeatureClassifier)
    assert isinstance(registry.build_from_emd(_emd(num_classes=1)), FeatureClassifierNet)  # ours from before
    assert isinstance(registry.build_from_emd(_emd()), arcgis_classifier.ArcgisFeatureClassifier)  # arcgis.learn's
    assert registry.rebuilds_arcgis_network(_emd())
    other = {**_emd(), "ModelParameters": {"backbone": "mobilenet_v2"}}
    assert not registry.rebuilds_arcgis_network(other)
    with pytest.raises(InputError, match="FeatureClassifier with the backbone mobilenet_v2"):
        registry.build_from_emd(other)


def test_other_backbones_keep_our_network():
    assert isinstance(build("MOBILENET_V2"), FeatureClassifierNet)
    assert isinstance(build("timm:resnet18"), FeatureClassifierNet)
    assert classification.feature_classifier_emd({}, "mobilenetv2_100")["Network"] == "deeplearningtools"
    assert classification.feature_classifier_emd({}, "resnet152")["Network"] == "arcgis.learn"


# ---- packages -------------------------------------------------------------------------------------

def labeled_export(folder, name, bands=3, scale=1):
    """(Labeled_Tiles export, its raster, a GeoJSON of its features): roofs and pools, one chip per
    feature; ``scale`` 10 with 4 bands: UInt16 multispectral (NormalizationStats in the emd)."""
    raster, geoms, values = ch.feature_raster(folder, 0, 6, bands=bands)
    if scale != 1:
        with rasterio.open(raster) as src:
            raster = h.write_raster(Path(folder) / f"{name}.tif", src.read().astype("uint16") * scale)
    out = Path(folder) / name
    h.export(raster, out, metadata_format="Labeled_Tiles", labels=h.vector_labels(geoms, values, ch.CLASSES),
             tile_size_x=ch.TILE, tile_size_y=ch.TILE, stride_x=ch.TILE, stride_y=ch.TILE, workers=1)
    features = Path(folder) / f"{name}.geojson"
    features.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": shapely.geometry.mapping(g), "properties": {"id": i}}
        for i, g in enumerate(geoms)]}))
    return str(out), raster, str(features)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("fc_exports")
    return {"rgb": labeled_export(root, "rgb"), "ms": labeled_export(root, "uint16", bands=4, scale=10),
            "multi": (ch.multilabel_export(root, cells=6), None, None)}


@pytest.fixture(scope="module")
def exports(exported):
    return {kind: folders[0] for kind, folders in exported.items()}


def _package(folder, export, module, tmp_path, name="fc"):
    record = make_record(export, name=name, model_type="FEATURE_CLASSIFIER", backbone="resnet18",
                         backbone_keyword="RESNET18", arguments=dict(classification.FEATURE_CLASSIFIER_ARGUMENTS),
                         monitor="ACCURACY", best_value=0.9, samples=[],
                         metrics={"accuracy": 0.9, "f1": 0.9, "per_class": {}, "confusion_matrix": [[3, 1], [0, 4]]})
    return write_model_package(record, module.state_dict(), tmp_path / folder, log=lambda m: None)


def _trained_looking(module):
    with torch.no_grad():  # trained-looking statistics, so that BatchNorm is not the identity
        for m in module.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return module


@pytest.mark.heavy
@pytest.mark.parametrize("kind, bands", [("rgb", 3), ("ms", 4)])
def test_package_takes_arcgis_learns_keys_in_its_order(tmp_path, exports, kind, bands):
    module = _trained_looking(build(bands=bands))
    paths = _package(kind, exports[kind], module, tmp_path)
    emd = json.loads(Path(paths.emd).read_text())
    expected = ARCGIS_KEYS + (MS_KEYS if bands == 4 else []) + ["ExpMap"]
    assert list(emd)[:len(expected)] == expected  # then ours: DatasetType, PretrainedWeights, Engine
    assert emd["Framework"] == "arcgis.learn.models._inferencing" and emd["ModelConfiguration"] == "_FeatureClassifier"
    assert emd["InferenceFunction"] == PRO_FUNCTION and emd["ExpMap"] is False
    assert emd["ModelParameters"] == {"backbone": "resnet18", "backend": "pytorch"}
    assert (emd["CropSizeFixed"], emd["BlackenAroundFeature"], emd["MetaDataMode"]) == (1, 0, "Labeled_Tiles")
    assert emd["IsImageNetNormalization"] is (bands == 3) and ("NormalizationStats" in emd) is (bands == 4)
    assert emd["Engine"]["network"] == "arcgis.learn"
    with zipfile.ZipFile(paths.dlpk) as z:
        assert not [n for n in z.namelist() if n.endswith(".py")]  # no inference code shipped
        assert list(torch.load(z.open("fc.pth"), weights_only=True)) == list(module.state_dict())
    loaded = load_model(paths.dlpk, "classify_objects")
    assert isinstance(loaded.module, arcgis_classifier.ArcgisFeatureClassifier) and not loaded.module.is_multi_label
    x = torch.randn(2, bands, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.module(x), module.eval()(x))


@pytest.mark.heavy
def test_packages_from_before_the_layout_still_load(tmp_path, exports):
    old = build(network="deeplearningtools")
    assert isinstance(old, FeatureClassifierNet)
    old.set_multi_label(True)
    paths = _package("old", exports["multi"], old, tmp_path)  # then made to look like an older package
    as_written_before(paths.emd, "DeepLearningToolsObjectClassifier.py", dropout=0.2, threshold=0.4, multi_label=True)
    loaded = load_model(paths.emd, "classify_objects")
    assert isinstance(loaded.module, FeatureClassifierNet) and loaded.module.is_multi_label


def _fine_tune(export, out, pretrained):
    from dl_engine.events import Events
    from dl_engine.train.run import run_training

    config = ch.config(export, out, pretrained_model=str(pretrained), max_epochs=1, precision="fp32")
    return run_training(config, Events(sink=lambda e: None))


@pytest.mark.trains
@pytest.mark.heavy
def test_an_old_resnet_package_fine_tunes_in_its_own_layout(tmp_path, exports):
    paths = _package("old", exports["rgb"], build(network="deeplearningtools"), tmp_path)
    as_written_before(paths.emd)  # as packages from before the layout was recorded
    _fine_tune(exports["rgb"], tmp_path / "tuned", paths.emd)
    tuned = ch.read_emd(tmp_path / "tuned")
    assert tuned["Engine"]["network"] == "deeplearningtools" and tuned["Framework"] == "PyTorch"
    loaded = load_model(str(tmp_path / "tuned" / "tuned.dlpk"), "classify_objects")
    assert isinstance(loaded.module, FeatureClassifierNet)


def test_foreign_packages_of_other_networks_are_still_refused(tmp_path):
    emd = {**_emd(), "ModelParameters": {"backbone": "timm:convnext_tiny"}, "ModelFile": "m.pth",
           "Framework": "arcgis.learn.models._inferencing", "ModelType": "ObjectClassification"}
    (tmp_path / "m.emd").write_text(json.dumps(emd))
    with pytest.raises(InputError, match="FeatureClassifier"):
        load_model(str(tmp_path / "m.emd"), "classify_objects")


# ---- against arcgis.learn itself (the oracle) --------------------------------------------------------

@pytest.mark.heavy
@needs_oracle
def test_arcgis_learn_builds_the_recorded_layout():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "arcgis_compare.py"), "layout", "--model",
                           "FeatureClassifier", "--backbone", "resnet50", "--classes", "2", "--chip", "32"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["same_as_ours"] is True


@pytest.mark.heavy
@needs_oracle
@pytest.mark.parametrize("kind, bands", [("rgb", 3), ("ms", 4), ("multi", 3)])  # 8-bit RGB; UInt16; multi-label
def test_our_package_loads_in_arcgis_learn_and_predicts_the_same(tmp_path, exports, kind, bands):
    module = _trained_looking(build(bands=bands))
    paths = _package(kind, exports[kind], module, tmp_path)
    assert_arcgis_learn_loads(paths.dlpk, timeout=600)
    result = arcgis_compare.compare(paths.dlpk, exports[kind], 8)
    assert result["arcgis_learn"]["multi_label"] is (kind == "multi")
    assert result["label_agreement"] == 1.0 and result["within_tolerance"], result


@pytest.mark.trains
@pytest.mark.heavy
@needs_oracle
@pytest.mark.parametrize("kind", ["rgb", "ms"])
def test_a_package_arcgis_learn_trained_runs_in_classify_objects(tmp_path, exported, exports, kind):
    out = tmp_path / "arcgis_fc"
    train_with_arcgis_learn(exports[kind], str(out), "--model", "FeatureClassifier", "--backbone", "resnet18",
                            "--epochs", "1", "--batch-size", "4")
    dlpk = out / "arcgis_fc.dlpk"
    emd = json.loads((out / "arcgis_fc.emd").read_text())
    assert "Engine" not in emd and emd["ModelName"] == "FeatureClassifier"
    assert emd["IsMultispectral"] is (kind == "ms")
    loaded = load_model(str(dlpk), "classify_objects")  # weights_only, the package's .py never run
    assert isinstance(loaded.module, arcgis_classifier.ArcgisFeatureClassifier)
    assert {c.value for c in loaded.classes} == {3, 7} and loaded.chip_size == ch.TILE
    result = arcgis_compare.compare(str(dlpk), exports[kind], 16)
    assert result["label_agreement"] == 1.0 and result["within_tolerance"], result
    _, raster, features = exported[kind]  # Classify Objects itself, on the features the export was made of
    done = run_inference(ih.config("classify_objects", raster, dlpk, tmp_path / "out.geojson", in_features=features))
    props = [f["properties"] for f in ih.read_features(tmp_path / "out.geojson")["features"]]
    assert done.features == len(props) == 36
    assert {p["ClassLabel"] for p in props} <= {"Roof", "Pool"} and all(0 < p["Confidence"] <= 100 for p in props)
    _fine_tune(exports[kind], tmp_path / "tuned", dlpk)  # and as PRETRAINED_MODEL: it stays arcgis.learn's layout
    tuned = ch.read_emd(tmp_path / "tuned")
    assert tuned["Engine"]["network"] == "arcgis.learn" and tuned["InferenceFunction"] == PRO_FUNCTION
    assert isinstance(load_model(str(tmp_path / "tuned" / "tuned.dlpk"), "classify_objects").module,
                      arcgis_classifier.ArcgisFeatureClassifier)
