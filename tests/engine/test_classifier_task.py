"""FEATURE_CLASSIFIER without training: registry entry, network for any band count,
predict, rebuilding from the emd, and the classification task's batches, losses and
metrics (single- and multi-label, ignored labels, oversample, class balancing)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from dl_engine.data.classes import ClassDef, ClassMap  # noqa: E402
from dl_engine.errors import InputError  # noqa: E402
from dl_engine.models.registry import BuildContext, build_from_emd, get_spec, model_types  # noqa: E402
from dl_engine.train.classification_task import ClassificationTask  # noqa: E402
from dl_engine.runtime import choose_runtime  # noqa: E402
from dl_engine.train.distributed import Dist  # noqa: E402
from dl_engine.train.families import task_for  # noqa: E402

CLASSES = ClassMap.for_format([ClassDef(3, "Roof"), ClassDef(7, "Pool"), ClassDef(9, "Tree")], "Labeled_Tiles")
_NETS = {}


def build(bands=3, classes=3, backbone="RESNET18", **arguments):
    spec = get_spec("FEATURE_CLASSIFIER")
    ctx = BuildContext(backbone=backbone, in_channels=bands, num_classes=classes, chip_size=32,
                       arguments={**spec.arguments, **arguments}, pretrained=False, log=lambda m: None)
    return spec.build(ctx)


def net(bands=3, classes=3):
    key = (bands, classes)
    if key not in _NETS:
        torch.manual_seed(0)
        _NETS[key] = build(bands, classes).module.eval()
    return _NETS[key]


def task(**arguments):
    spec = get_spec("FEATURE_CLASSIFIER")
    return ClassificationTask(CLASSES, {**spec.arguments, **arguments})


@pytest.fixture(scope="module")
def runtime():
    return choose_runtime("cpu", "fp32")


def test_registry_entry():
    spec = get_spec("feature_classifier")
    assert "FEATURE_CLASSIFIER" in model_types()
    assert (spec.model_name, spec.model_type, spec.kind) == ("FeatureClassifier", "ObjectClassification",
                                                              "classification")
    assert set(spec.formats) == {"Labeled_Tiles", "Imagenet", "MultiLabeled_Tiles"}
    assert {"oversample", "backend", "mixup", "class_balancing", "focal_loss", "ignore_classes"} <= set(spec.arguments)
    assert task_for("classification") is ClassificationTask
    assert ClassificationTask.metric_keys == ["accuracy", "f1"]
    emd = spec.emd_params(dict(spec.arguments), "resnet18")
    assert emd["ModelConfiguration"] == "_FeatureClassifier"
    assert emd["ModelParameters"]["backbone"] == "resnet18"


@pytest.mark.parametrize("bands", [1, 3, 4])
def test_any_band_count_gives_class_logits(bands):
    x = torch.randn(2, bands, 32, 32)
    with torch.no_grad():
        assert net(bands).forward(x).shape == (2, 3)
    # variable input size: global pooling
    with torch.no_grad():
        assert net(bands)(torch.randn(1, bands, 48, 40)).shape == (1, 3)


def test_timm_backbone():
    built = build(backbone="timm:resnet10t", classes=2)
    assert built.backbone_name == "timm:resnet10t" and not built.pretrained_loaded
    assert built.encoder_parameters and len(built.encoder_parameters) < len(list(built.module.parameters()))
    with torch.no_grad():
        assert built.module.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 2)


def test_predict_softmax_or_sigmoid():
    spec = get_spec("FEATURE_CLASSIFIER")
    model = build(classes=3).module.eval()
    x = torch.randn(4, 3, 32, 32)
    p = spec.predict(model, x)
    assert p.shape == (4, 3) and torch.allclose(p.sum(1), torch.ones(4), atol=1e-5)
    model.set_multi_label(True)
    q = spec.predict(model, x)
    assert q.shape == (4, 3) and ((q >= 0) & (q <= 1)).all()
    assert torch.allclose(q, torch.sigmoid(model(x)))


def test_build_from_emd_has_no_background_and_loads_strictly():
    model = build(bands=4, classes=3).module
    model.set_multi_label(True)
    emd = {"ModelName": "FeatureClassifier", "ModelType": "ObjectClassification", "ExtractBands": [0, 1, 2, 3],
           "Classes": [{"Value": v, "Name": n} for v, n in ((3, "Roof"), (7, "Pool"), (9, "Tree"))],
           "ImageHeight": 32, "ModelParameters": {"backbone": "resnet18", "backend": "pytorch", "dropout": 0.2,
                                                  "threshold": 0.5, "multi_label": True}}
    rebuilt = build_from_emd(emd)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    assert rebuilt.is_multi_label
    x = torch.randn(2, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), model.eval()(x))


def test_bad_arguments():
    with pytest.raises(InputError) as e:
        task(backend="tensorflow")
    assert e.value.parameter == "ARGUMENTS" and "pytorch" in str(e.value)
    for name, value in (("threshold", 1.5), ("dropout", 1.0), ("oversample", "maybe")):
        with pytest.raises(InputError) as e:
            task(**{name: value})
        assert e.value.parameter == "ARGUMENTS" and name in str(e.value)
    with pytest.raises(InputError) as e:
        task(ignore_classes=[5])
    assert "5" in str(e.value) and "3, 7, 9" in str(e.value)


def test_collate_resizes_variable_chips_and_stacks_labels():
    t = task()
    items = [{"key": "a", "image": np.ones((3, 12, 20), np.float32), "label": 1},
             {"key": "b", "image": np.zeros((3, 50, 41), np.float32), "label": -1}]
    t.chip_size = 32
    batch = t.collate(items)
    assert batch["image"].shape == (2, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert torch.allclose(batch["image"][0], torch.ones(3, 32, 32))
    assert batch["label"].tolist() == [1, -1] and batch["key"] == ["a", "b"]
    multi = t.collate([{"key": "c", "image": np.ones((3, 32, 32), np.float32),
                        "labels": np.array([1, 0, 1], np.float32)}])
    assert multi["labels"].tolist() == [[1.0, 0.0, 1.0]] and "label" not in multi


def test_loss_ignores_unknown_labels(runtime):
    t = task()
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
    both = t._ce(logits, torch.tensor([-1, 1]))
    only = torch.nn.functional.cross_entropy(logits[1:], torch.tensor([1]))
    assert torch.isclose(both, only)
    none = t._ce(logits.requires_grad_(), torch.tensor([-1, -1]))
    assert float(none.detach()) == 0.0
    none.backward()  # no NaN gradients
    assert torch.isfinite(logits.grad).all()
    # ignore_classes: their chips leave the loss, and they are never predicted
    t2 = task(ignore_classes=[9])
    assert t2.target(torch.tensor([0, 2, 1])).tolist() == [0, -1, 1]
    assert t2._predict(torch.tensor([[0.0, 0.0, 5.0]]), False).tolist() == [0]


@pytest.mark.parametrize("arguments", [{}, {"mixup": True}, {"focal_loss": True}, {"mixup": True, "focal_loss": True}])
@pytest.mark.parametrize("multi", [False, True])
def test_training_loss_and_gradients(runtime, arguments, multi):
    t = task(**arguments)
    t.multi_label = multi
    model = net(3, 3).train()
    batch = {"image": torch.randn(4, 3, 32, 32)}
    if multi:
        batch["labels"] = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 1], [0, 0, 1]], dtype=torch.float32)
    else:
        batch["label"] = torch.tensor([0, 1, 2, -1])
    model.zero_grad()
    loss = t.training_loss(model, batch, runtime)
    assert loss.dim() == 0 and torch.isfinite(loss) and float(loss.detach()) > 0
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()


def test_single_label_metrics(runtime):
    t = task()
    acc = t.accumulator("cpu")
    logits = torch.tensor([[5.0, 0, 0], [5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [0, 5.0, 0]])
    model = lambda x: logits  # noqa: E731
    batch = {"image": torch.zeros(5, 3, 8, 8), "label": torch.tensor([0, 1, 1, 2, -1])}
    loss_sum, n = t.validation_step(model, batch, runtime, acc)
    assert n == 4 and loss_sum > 0
    m = t.metrics(t.reduce(acc, Dist()))
    assert m["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert m["accuracy"] == pytest.approx(3 / 4)
    assert m["per_class"]["Roof"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["Pool"]["recall"] == pytest.approx(0.5)
    f1 = [2 * 0.5 * 1 / 1.5, 2 * 1 * 0.5 / 1.5, 1.0]
    assert m["f1"] == pytest.approx(np.mean(f1))
    assert "multi_label" not in m


def test_multi_label_metrics(runtime):
    t = task()
    t.multi_label = True
    acc = t.accumulator("cpu")
    probs_logits = torch.tensor([[3.0, -3, 3], [3.0, 3, -3], [-3.0, -3, 3]])
    batch = {"image": torch.zeros(3, 3, 8, 8),
             "labels": torch.tensor([[1, 0, 1], [1, 0, 0], [0, 0, 1]], dtype=torch.float32)}
    t.validation_step(lambda x: probs_logits, batch, runtime, acc)
    m = t.metrics(t.reduce(acc, Dist()))
    assert m["multi_label"] is True
    assert m["accuracy"] == pytest.approx(2 / 3)  # whole label set right on 2 of 3 chips
    assert m["label_accuracy"] == pytest.approx(8 / 9)
    assert m["per_class"]["Roof"]["f1"] == 1.0 and m["per_class"]["Tree"]["f1"] == 1.0
    assert m["per_class"]["Pool"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "iou": 0.0}
    assert m["f1"] == pytest.approx(2 / 3)  # Pool counted: predicted once, never true
    assert m["confusion_matrix"][1] == [[2, 1], [0, 0]]  # Pool: TN 2, FP 1, FN 0, TP 0


def test_oversample_and_class_balancing():
    t = task()
    refs = [f"r{i}" for i in range(10)]
    labels = [0] * 6 + [1] * 3 + [2] + []
    out = t.oversampled(refs, labels, seed=1)
    counts = {c: sum(1 for r in out if labels[refs.index(r)] == c) for c in range(3)}
    assert counts == {0: 6, 1: 6, 2: 6} and set(refs) <= set(out)
    weights = t.balance(labels)
    assert weights[0] < weights[1] < weights[2]
    assert torch.allclose(t.class_weights, torch.tensor(weights, dtype=torch.float32))
    t.multi_label = True
    w = t.balance([np.array([1, 0, 0]), np.array([1, 1, 0]), np.array([1, 0, 0]), np.array([0, 0, 0])])
    assert w[0] == pytest.approx(1 / 3) and w[1] == pytest.approx(3.0) and w[2] == 1.0  # never seen: 1


def test_sample_results_name_the_classes(runtime):
    t = task()
    items = [{"key": "a", "image": np.zeros((3, 32, 32), np.float32), "label": 2},
             {"key": "b", "image": np.zeros((3, 32, 32), np.float32), "label": -1}]
    out = t.sample_results(lambda x: torch.tensor([[0.0, 0, 4], [4.0, 0, 0]]), items, runtime,
                           lambda image: np.zeros((32, 32, 3), np.uint8))
    assert [(s.truth_label, s.predicted_label, s.correct) for s in out] == [("Tree", "Tree", True),
                                                                           ("(unknown class)", "Roof", False)]
    assert out[0].score == pytest.approx(np.exp(4) / (np.exp(4) + 2))
