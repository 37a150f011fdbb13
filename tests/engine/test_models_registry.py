"""The model registry drives these tests, as timm's tests/test_models.py does from
``list_models()``: every registered type is built (64 px chips, random weights), trains a
step (forward and backward) and predicts on 1-, 3- and 4-band input, and the network its
trained emd describes has its exact state dict. A type added to the registry is tested
here without a line of this file changing.

Also: the registry imports and lists its types without torch (QGIS's Python reads it for
the MODEL_TYPE and NETWORKS enums), its declarations are complete and consistent, and
``registered`` puts the registry back."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dl_engine.formats import METADATA_FORMATS
from dl_engine.models import registry
from dl_engine.models.registry import BuildContext, BuiltModel, ModelSpec, build_from_emd, get_spec, model_types

REPO = Path(__file__).resolve().parents[2]
MODEL_TYPES = model_types()  # at collection: listing needs no torch
# INTERFACE.md's MODEL_TYPE enumeration, in order (later types are appended).
INTERFACE_ORDER = ["UNET", "PSPNET", "DEEPLAB", "SSD", "RETINANET", "FASTERRCNN", "MASKRCNN", "YOLOV3",
                   "FEATURE_CLASSIFIER"]
CHIP = 64
# Fewer region proposals and detections: the R-CNNs' defaults (2000 proposals, 100 detections
# per image) only cost time on a 64 px chip.
SMALL_RCNN = {"rpn_pre_nms_top_n_train": 200, "rpn_post_nms_top_n_train": 50, "rpn_pre_nms_top_n_test": 100,
              "rpn_post_nms_top_n_test": 50, "box_batch_size_per_image": 32, "rpn_batch_size_per_image": 64,
              "box_detections_per_img": 10}
CLASSES = [{"Value": 3, "Name": "Roof"}, {"Value": 7, "Name": "Pool"}]


def num_classes(spec: ModelSpec) -> int:
    """Model outputs for CLASSES: a background output except for classifiers."""
    return len(CLASSES) + (0 if spec.kind == "classification" else 1)


def build(keyword: str, bands: int, backbone: str = "RESNET18"):
    """(spec, BuiltModel, the arguments it was built with) with random weights."""
    spec = get_spec(keyword)
    arguments = dict(spec.arguments)
    arguments.update({k: v for k, v in SMALL_RCNN.items() if k in arguments})
    ctx = BuildContext(backbone=backbone, in_channels=bands, num_classes=num_classes(spec), chip_size=CHIP,
                       arguments=arguments, pretrained=False, log=lambda message: None)
    return spec, spec.build(ctx), arguments


def targets(torch, kind: str):
    """Two objects per chip, classes 1 and 2 (and their masks for instance models)."""
    boxes = torch.tensor([[8.0, 8.0, 30.0, 28.0], [34.0, 20.0, 60.0, 50.0]])
    out = []
    for _ in range(2):
        target = {"boxes": boxes.clone(), "labels": torch.tensor([1, 2])}
        if kind == "instance":
            masks = torch.zeros((2, CHIP, CHIP), dtype=torch.uint8)
            for i, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
                masks[i, y0:y1, x0:x1] = 1
            target["masks"] = masks
        out.append(target)
    return out


# ---- the registry, without torch ----------------------------------------------------------------

LISTING = r"""
import json, sys
from dl_engine.models import registry
listing = [(s.keyword, s.model_name, s.model_type, s.kind, list(s.formats), sorted(s.arguments), s.default_backbone,
            s.description, s.order, s.autodl_order) for s in registry.specs()]
heavy = [m for m in ("torch", "timm", "torchvision", "numpy", "rasterio", "shapely") if m in sys.modules]
print(json.dumps({"types": registry.model_types(), "listed": len(listing), "heavy": heavy}))
"""


def test_registry_imports_and_lists_types_without_torch():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, "-c", LISTING], cwd=str(REPO), env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert report["types"] == MODEL_TYPES and report["listed"] == len(MODEL_TYPES)


def test_types_in_interface_order():
    assert MODEL_TYPES == INTERFACE_ORDER
    assert [spec.keyword for spec in registry.specs()] == MODEL_TYPES


def test_declarations_are_complete_and_unique():
    specs = registry.specs()
    for spec in specs:
        assert spec.keyword == spec.keyword.upper() and spec.model_name and spec.model_type
        assert spec.description and not spec.description.startswith(spec.keyword), spec.keyword
        assert spec.formats and set(spec.formats) <= set(METADATA_FORMATS), spec.keyword
        assert callable(spec.build) and callable(spec.emd_params)
        assert spec.default_backbone
    for attribute in ("keyword", "model_name", "order"):
        values = [getattr(spec, attribute) for spec in specs]
        assert len(set(values)) == len(values), attribute
    autodl = [spec.autodl_order for spec in specs if spec.autodl_order is not None]
    assert sorted(autodl) == list(range(len(autodl)))


def test_autodl_networks_are_the_types_with_an_autodl_order():
    """The NETWORKS enum lists the specs with an autodl_order; the engine's AutoDL trains
    the types of the kinds it ranks: the same set."""
    from dl_engine.autodl.plan import autodl_networks

    assert {s.keyword for s in autodl_networks()} == {s.keyword for s in registry.specs() if s.autodl_order is not None}


def test_every_kind_has_a_trainer():
    pytest.importorskip("torch")
    from dl_engine.train.families import TASKS

    assert {spec.kind for spec in registry.specs()} <= set(TASKS)


def test_registered_puts_the_registry_back():
    def fail(ctx):
        raise AssertionError("not built")

    spec = ModelSpec(keyword="TESTREGISTRY", model_name="TestRegistry", model_type="ImageClassification",
                     kind="pixel", formats=("Classified_Tiles",), arguments={}, build=fail,
                     emd_params=lambda arguments, backbone: {})
    with registry.registered(spec) as added:
        assert added == (spec,)
        assert model_types() == MODEL_TYPES + ["TESTREGISTRY"]  # no order: after the built-in types
        assert get_spec("testregistry") is spec and registry.spec_for_model_name("TestRegistry") is spec
        with pytest.raises(ValueError, match="already registered"):
            registry.register(spec)
        with pytest.raises(ValueError, match="UnetClassifier is already registered for UNET"):
            registry.register(ModelSpec(**{**spec.__dict__, "keyword": "OTHER", "model_name": "UnetClassifier"}))
    assert model_types() == MODEL_TYPES and registry.spec_for_model_name("TestRegistry") is None
    with pytest.raises(RuntimeError):
        with registry.registered(spec):
            registry.register(ModelSpec(**{**spec.__dict__, "keyword": "ANOTHER", "model_name": "Another"}))
            raise RuntimeError("the test failed")
    assert model_types() == MODEL_TYPES  # what the block registered is gone too
    with pytest.raises(ValueError, match="UNET is already registered"):
        with registry.registered(get_spec("UNET")):
            pass
    assert model_types() == MODEL_TYPES


# ---- every registered type -------------------------------------------------------------------------

# make test-fast builds every type on 3 bands; 1 and 4 bands are left to make test (heavy), and so are the
# networks whose step takes several seconds on a CPU (arcgis.learn's layouts on their default backbones).
SLOW_STEP = ("FASTERRCNN", "MASKRCNN", "UNET", "YOLOV3")


@pytest.mark.parametrize("bands", [pytest.param(1, marks=pytest.mark.heavy), 3, pytest.param(4, marks=pytest.mark.heavy)])
@pytest.mark.parametrize("keyword", [pytest.param(k, marks=pytest.mark.heavy) if k in SLOW_STEP else k
                                     for k in MODEL_TYPES])
def test_forward_backward_predict(keyword, bands):
    """A training step's forward and backward (the loss reaches the first layer, which has
    ``bands`` inputs) and ``predict``'s output contract, for any band count."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("timm")
    torch.manual_seed(0)
    spec, built, _ = build(keyword, bands)
    assert isinstance(built, BuiltModel) and built.backbone_name == "resnet18" and not built.pretrained_loaded
    model = built.module.train()
    assert built.encoder_parameters
    assert all(any(p is q for q in model.parameters()) for p in built.encoder_parameters)
    x = torch.randn(2, bands, CHIP, CHIP)
    k = num_classes(spec)
    if spec.kind in ("detection", "instance"):
        losses = model(x, targets(torch, spec.kind))
        assert isinstance(losses, dict) and losses
        loss = sum(losses.values())
    else:
        logits = model(x)
        if spec.kind == "pixel":
            assert logits.shape == (2, k, CHIP, CHIP)
            loss = torch.nn.functional.cross_entropy(logits, torch.randint(0, k, (2, CHIP, CHIP)))
        else:
            assert logits.shape == (2, k)
            loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1]))
    assert torch.isfinite(loss)
    loss.backward()
    first = next(p for p in built.encoder_parameters if p.dim() == 4)  # the stem convolution
    assert first.shape[1] == bands
    assert first.grad is not None and torch.isfinite(first.grad).all() and first.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        if spec.predict is None:  # pixel models: logits
            assert model(x).shape == (2, k, CHIP, CHIP)
            return
        out = spec.predict(model, x)
    if spec.kind == "classification":
        assert out.shape == (2, k) and torch.allclose(out.sum(1), torch.ones(2), atol=1e-5)
        return
    assert isinstance(out, list) and len(out) == 2
    for det in out:
        n = len(det["scores"])
        assert det["boxes"].shape == (n, 4) and det["labels"].shape == (n,)
        assert ("masks" in det) == (spec.kind == "instance")
        if spec.kind == "instance":
            assert det["masks"].shape == (n, CHIP, CHIP)


@pytest.mark.parametrize("keyword", MODEL_TYPES)
def test_emd_round_trip(keyword):
    """The emd the trainer writes (spec.emd_params under ModelParameters, with the resolved
    backbone; through JSON) rebuilds a network with the same state dict keys and shapes,
    which loads the trained weights strictly."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("timm")
    torch.manual_seed(0)
    spec, built, arguments = build(keyword, bands=4)
    keys = spec.emd_params(dict(arguments), built.backbone_name)
    # package/emd.py build_emd: the model's ModelParameters, then backbone and backend
    parameters = {**keys.get("ModelParameters", {}), "backbone": built.backbone_name, "backend": "pytorch"}
    # and its Engine block, which records the module layout the spec built (spec.NETWORK_KEY)
    engine = {"name": "deeplearningtools", "model_type": keyword, "network": keys.get("Network", "deeplearningtools")}
    emd = json.loads(json.dumps({"ModelName": spec.model_name, "ModelType": spec.model_type, "ImageHeight": CHIP,
                                 "ImageWidth": CHIP, "ExtractBands": [0, 1, 2, 3], "Classes": CLASSES,
                                 "ModelParameters": parameters, "Engine": engine}))
    rebuilt = build_from_emd(emd)
    trained = built.module.state_dict()
    assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == \
        {k: tuple(v.shape) for k, v in trained.items()}
    rebuilt.load_state_dict(trained, strict=True)


@pytest.mark.heavy  # the default backbones: RESNET34, RESNET50, DARKNET53
@pytest.mark.parametrize("keyword", MODEL_TYPES)
def test_default_backbone_builds(keyword):
    """Every type builds with its default BACKBONE_MODEL (RESNET34, RESNET50, DARKNET53)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("timm")
    spec = get_spec(keyword)
    spec, built, _ = build(keyword, bands=3, backbone=spec.default_backbone)
    assert built.backbone_name == spec.default_backbone.lower()
    with torch.no_grad():
        built.module.eval()(torch.randn(1, 3, CHIP, CHIP))
