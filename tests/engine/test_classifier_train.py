"""FEATURE_CLASSIFIER trained end to end on small synthetic exports (CPU, seconds): it
learns a visible class, trains on Imagenet and MultiLabeled_Tiles exports, writes the
FeatureClassifier emd and package (confusion_matrix.png), loads back from the emd alone,
and refuses exports of other model families with nothing written."""

import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

import classifier_helpers as ch  # noqa: E402
from dl_engine.errors import InputError  # noqa: E402
from dl_engine.data import DataConfig, prepare_data  # noqa: E402
from dl_engine.models.registry import build_from_emd, get_spec  # noqa: E402
from dl_engine.package.reader import open_package  # noqa: E402
from dl_engine.events import Events  # noqa: E402
from dl_engine.train.run import run_training  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These networks are tiny: one compute thread is faster than two fighting over a busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train(export, out, **kw):
    seen = []
    kw.setdefault("precision", "fp32")
    result = run_training(ch.config(export, out, **kw), Events(sink=seen.append))
    return result, seen


def valid_predictions(out, export):
    """The package read back (emd → network, strict .pth load) applied to the validation chips:
    (probabilities (N, K), the chips' labels)."""
    with open_package(Path(out) / f"{Path(out).name}.dlpk") as pkg:
        model = build_from_emd(pkg.emd)
        model.load_state_dict(pkg.load_state_dict(), strict=True)
        emd = pkg.emd
    model.eval()
    td = prepare_data(DataConfig(export, 25))
    items = [td.valid_dataset()[i] for i in range(len(td.valid))]
    x = torch.from_numpy(np.stack([it["image"] for it in items]))
    probs = get_spec("FEATURE_CLASSIFIER").predict(model, x).numpy()
    labels = [it.get("labels", it.get("label")) for it in items]
    return probs, labels, model, emd


# ---- Labeled_Tiles: learns, package, round trip ---------------------------------------------------

@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("labeled")
    export = ch.feature_export(folder, cells=12)
    out = folder / "roofs_pools"
    result, seen = train(export, out, max_epochs=6, monitor="ACCURACY")
    return export, out, result, seen


@pytest.mark.trains
def test_classifier_learns_a_visible_class(labeled):
    export, out, result, seen = labeled
    history = result.history
    assert len(history) == 6 and all(set(h) >= {"accuracy", "f1", "valid_loss"} for h in history)
    # two balanced classes: chance is 0.5
    assert result.metrics["accuracy"] > 0.8, history
    assert result.metrics["accuracy"] == pytest.approx(max(h["accuracy"] for h in history))
    assert result.metrics["f1"] > 0.8
    assert history[-1]["valid_loss"] < history[0]["valid_loss"]
    assert set(result.metrics["per_class"]) == {"Roof", "Pool"}
    matrix = np.array(result.metrics["confusion_matrix"])
    assert matrix.shape == (2, 2) and matrix.sum() == len(prepare_data(DataConfig(export, 25)).valid)
    assert np.trace(matrix) / matrix.sum() == pytest.approx(result.metrics["accuracy"])
    assert result.metrics["learned_nothing"] is False  # better than always one class (train/verdict.py)
    metric_events = [e for e in seen if e["event"] == "metric"]
    assert len(metric_events) == 6 and all(e["monitor"] == "ACCURACY" for e in metric_events)


@pytest.mark.trains
def test_feature_classifier_emd(labeled):
    _, out, result, _ = labeled
    emd = ch.read_emd(out)
    assert emd["ModelType"] == "ObjectClassification" and emd["ModelName"] == "FeatureClassifier"
    assert emd["ModelConfiguration"] == "_FeatureClassifier"
    # RESNET18: arcgis.learn's FeatureClassifier layout, so Pro's own inference function (none shipped)
    assert emd["Framework"] == "arcgis.learn.models._inferencing" and emd["Engine"]["network"] == "arcgis.learn"
    assert emd["InferenceFunction"] == "[Functions]System\\DeepLearning\\ArcGISLearn\\ArcGISObjectClassifier.py"
    assert not list(out.glob("*.py"))
    assert emd["MetaDataMode"] == emd["DatasetType"] == "Labeled_Tiles"
    assert emd["CropSizeFixed"] == 1 and emd["BlackenAroundFeature"] == 0 and emd["ImageSpaceUsed"] == "MAP_SPACE"
    # every class, no background
    assert [(c["Value"], c["Name"], c["Color"]) for c in emd["Classes"]] == [(3, "Roof", [200, 30, 30]),
                                                                           (7, "Pool", [30, 30, 220])]
    keys = list(emd)
    assert keys.index("ExtractBands") < keys.index("CropSizeFixed") < keys.index("Classes")
    assert "accuracy" not in emd and "per_class_metrics" not in emd  # a confusion_matrix.png instead
    assert emd["monitored_accuracy"] == pytest.approx(result.metrics["accuracy"])
    assert emd["ImageHeight"] == emd["ImageWidth"] == ch.TILE
    assert emd["ModelParameters"] == {"backbone": "resnet18", "backend": "pytorch"}  # as arcgis.learn's save()
    assert emd["Engine"]["model_type"] == "FEATURE_CLASSIFIER" and emd["Engine"]["num_classes"] == 2


@pytest.mark.trains
def test_package_has_the_confusion_matrix(labeled):
    _, out, _, _ = labeled
    for name in ("ModelCharacteristics/confusion_matrix.png", "ModelCharacteristics/show_results.png",
                 "ModelCharacteristics/loss_graph.png", "model_metrics.html", "roofs_pools.pth"):
        assert (out / name).is_file(), name
    assert (out / "ModelCharacteristics/confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with zipfile.ZipFile(out / "roofs_pools.dlpk") as z:
        names = z.namelist()
    assert "ModelCharacteristics/confusion_matrix.png" in names
    assert [n for n in names if n.endswith(".emd")] == ["roofs_pools.emd"]
    html = (out / "model_metrics.html").read_text()
    assert "Confusion matrix" in html and "F1 (macro)" in html and html.count("data:image/png;base64") == 3


@pytest.mark.trains
def test_package_round_trip_predicts_like_training(labeled):
    export, out, result, _ = labeled
    probs, labels, model, emd = valid_predictions(out, export)
    assert probs.shape == (len(labels), 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert not model.is_multi_label
    accuracy = float(np.mean(probs.argmax(1) == np.array(labels)))
    assert accuracy == pytest.approx(result.metrics["accuracy"])


# ---- other formats -------------------------------------------------------------------------------

@pytest.mark.trains
def test_imagenet_export_trains(tmp_path):
    export = ch.feature_export(tmp_path, "Imagenet", cells=8)
    assert sorted(p.name for p in (Path(export) / "images").iterdir()) == ["Pool", "Roof"]
    out = tmp_path / "imagenet_model"
    # default precision (bf16 autocast where the CPU has it) and MONITOR F1
    result, _ = train(export, out, max_epochs=2, monitor="F1", precision="auto")
    assert len(result.history) == 2 and all(h["f1"] is not None for h in result.history)
    emd = ch.read_emd(out)
    assert emd["MetaDataMode"] == "Imagenet" and [c["Name"] for c in emd["Classes"]] == ["Roof", "Pool"]
    assert "monitored_f1" in emd and (out / "ModelCharacteristics/confusion_matrix.png").is_file()


@pytest.mark.trains
def test_multilabeled_tiles_train_with_bce(tmp_path):
    export = ch.multilabel_export(tmp_path)
    out = tmp_path / "multi_model"
    # 20 epochs: arcgis.learn's head (RESNET18; BatchNorm, a hidden layer) starts slower than a linear one
    result, seen = train(export, out, max_epochs=20, monitor="F1")
    m = result.metrics
    assert m["multi_label"] is True and set(m["per_class"]) == {"Roof", "Pool"}
    # always answering "both" scores a sample accuracy of about 1/3 and a macro F1 of about 0.8
    assert m["accuracy"] > 0.7 and m["f1"] > 0.9 and m["label_accuracy"] > 0.85, result.history
    assert np.array(m["confusion_matrix"]).shape == (2, 2, 2)
    emd = ch.read_emd(out)
    assert emd["MetaDataMode"] == "MultiLabeled_Tiles"  # what makes the rebuilt network multi-label
    assert (out / "ModelCharacteristics/confusion_matrix.png").is_file()
    probs, labels, model, _ = valid_predictions(out, export)
    assert model.is_multi_label and probs.shape == (len(labels), 2)
    predicted = probs >= emd["Engine"]["arguments"]["threshold"]
    assert float(np.mean((predicted == (np.array(labels) >= 0.5)).all(1))) == pytest.approx(m["accuracy"])


@pytest.mark.trains
def test_bounding_box_chips_are_resized_to_the_chip_size(tmp_path):
    export = ch.feature_export(tmp_path, cells=5, crop_mode="BOUNDING_BOX", blacken_around_feature=True)
    td = prepare_data(DataConfig(export, 25))
    sizes = {td.train_dataset().sample(i).image.shape[1:] for i in range(len(td.train))}
    assert len(sizes) > 1  # the chips really differ in size
    out = tmp_path / "bbox_model"
    result, _ = train(export, out, max_epochs=1, batch_size=8,
                      arguments="oversample true;class_balancing true;mixup true;focal_loss true")
    assert len(result.history) == 1 and np.isfinite(result.history[0]["train_loss"])
    emd = ch.read_emd(out)
    assert emd["CropSizeFixed"] == 0 and emd["BlackenAroundFeature"] == 1
    assert emd["ImageHeight"] == ch.TILE


@pytest.mark.trains
def test_oversample_and_class_balancing_are_applied(tmp_path):
    export = ch.feature_export(tmp_path, cells=4)
    result, seen = train(export, tmp_path / "balanced", max_epochs=1, max_steps=1,
                         arguments="oversample true;class_balancing true")
    logs = [e["message"] for e in seen if e["event"] == "log"]
    assert any(m.startswith("class balancing: loss weights Roof") for m in logs), logs
    assert any(m.startswith("oversample: ") for m in logs), logs


# ---- refused input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["Classified_Tiles", "PASCAL_VOC_rectangles"])
def test_pixel_and_detection_exports_are_refused(tmp_path, fmt):
    export = ch.feature_export(tmp_path, fmt, cells=3)
    out = tmp_path / "never"
    with pytest.raises(InputError) as e:
        run_training(ch.config(export, out))
    assert e.value.parameter == "MODEL_TYPE"
    assert "FEATURE_CLASSIFIER trains on Labeled_Tiles, MultiLabeled_Tiles, Imagenet" in str(e.value)
    assert fmt in str(e.value)
    assert not out.exists()


def test_labeled_tiles_refused_by_pixel_models(tmp_path):
    export = ch.feature_export(tmp_path, cells=3)
    out = tmp_path / "never"
    with pytest.raises(InputError) as e:
        run_training(ch.config(export, out, model_type="UNET"))
    assert e.value.parameter == "MODEL_TYPE" and "FEATURE_CLASSIFIER" in str(e.value)
    assert not out.exists()


@pytest.mark.parametrize("arguments, words", [("backend tensorflow", "pytorch"), ("threshold 2", "threshold"),
                                              ("ignore_classes 5", "class values: 3, 7"),
                                              ("pyramid_sizes [1,2]", "valid arguments")])
def test_bad_arguments_are_refused(tmp_path, arguments, words):
    export = ch.feature_export(tmp_path, cells=3)
    out = tmp_path / "never"
    with pytest.raises(InputError) as e:
        run_training(ch.config(export, out, arguments=arguments))
    assert e.value.parameter == "ARGUMENTS" and words in str(e.value)
    assert not out.exists()


def test_monitor_of_other_families_is_refused(tmp_path):
    export = ch.feature_export(tmp_path, cells=3)
    with pytest.raises(InputError) as e:
        run_training(ch.config(export, tmp_path / "never", monitor="MIOU"))
    assert e.value.parameter == "MONITOR" and "ACCURACY" in str(e.value) and "F1" in str(e.value)
    assert not (tmp_path / "never").exists()
