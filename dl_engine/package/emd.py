"""The trained model's .emd, keyed and ordered as arcgis.learn writes it
(shared/reference/esri-formats.md §2.1), with our own inference entry point.

``Framework`` is "PyTorch" and ``InferenceFunction`` our own .py file, except for networks
with arcgis.learn's module layout (models/arcgis_*.py: a spec's ``arcgis_backbones``), whose
weights arcgis.learn's ``_inferencing`` modules load: they get arcgis.learn's Framework and
Pro's built-in inference function, as arcgis.learn's save() writes them (a FasterRCNN also
names the configuration class the package ships: package/arcgis_configurations/). ``Engine``
says which engine made the package and holds what rebuilding the network needs beyond the
standard keys (the MODEL_TYPE keyword, the
BACKBONE_MODEL as given, the model arguments). ``PretrainedWeights`` (ours too) says which
weights training started from: "timm/resnet34.a1_in1k (Hugging Face hub)", "imported: <path>",
"model: <PRETRAINED_MODEL>" or "random".
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

import numpy as np

from .. import __version__ as ENGINE_VERSION
from ..models.spec import ARCGIS_LEARN, NETWORK_KEY, OWN_NETWORK
from .record import TrainedModel

ENGINE_NAME = "deeplearningtools"
# Compared as a string by ArcGIS (e.g. > "1.8.4" enables threshold parameters): keep it realistic.
ARCGIS_LEARN_VERSION = "2.0.1"
BACKEND = "pytorch"

# Our inference function per task family (the .py written beside the emd). Its class has the
# file's name, as ArcGIS's Python raster function loader expects.
INFERENCE_FUNCTIONS = {
    "pixel": "DeepLearningToolsClassifier.py",
    "detection": "DeepLearningToolsDetector.py",
    "instance": "DeepLearningToolsInstanceDetector.py",
    "classification": "DeepLearningToolsObjectClassifier.py",
    "tile": "DeepLearningToolsObjectClassifier.py",
}

# A network with arcgis.learn's layout (models/spec.py ARCGIS_LEARN) gets arcgis.learn's inferencing
# keys, as its save(save_inference_file=False) writes them: ArcGIS then loads it as one of
# arcgis.learn's own packages, with the inference function built into Pro (no Esri code shipped).
ARCGIS_FRAMEWORK = "arcgis.learn.models._inferencing"
BUILTIN_FUNCTIONS = "[Functions]System\\DeepLearning\\ArcGISLearn\\"
ARCGIS_INFERENCE_FUNCTIONS = {
    "pixel": "ArcGISImageClassifier.py",
    "detection": "ArcGISObjectDetector.py",
    "instance": "ArcGISInstanceDetector.py",
    "classification": "ArcGISObjectClassifier.py",
}

# A spec's emd_params keys that arcgis.learn's save() writes after the normalisation keys
# (FeatureClassifier's ExpMap: whether the package has Grad-CAM explainability maps).
_LAST = ("ExpMap",)
# arcgis.learn's ModelExtension (FasterRCNN): a spec's emd_params naming a ModelConfigurationFile
# (the configuration class the package ships) get ModelConfiguration after InferenceFunction and
# these keys after Classes (DatasetType, from the data, included), as its _get_emd_params writes them.
_EXTENSION_KEYS = ("ModelConfigurationFile", "ModelFileConfigurationClass", "DatasetType", "Kwargs")
# Keys we set ourselves: a spec's emd_params may not override them.
_OURS = ("Framework", "ModelType", "InferenceFunction", "ExtractBands", "Classes", "ModelName", "ModelFile",
         "ImageHeight", "ImageWidth", "PretrainedWeights", "Engine")


def inference_function_name(kind: str, network: str = OWN_NETWORK) -> str:
    if network == ARCGIS_LEARN:
        return BUILTIN_FUNCTIONS + ARCGIS_INFERENCE_FUNCTIONS.get(kind, ARCGIS_INFERENCE_FUNCTIONS["pixel"])
    return INFERENCE_FUNCTIONS.get(kind, INFERENCE_FUNCTIONS["pixel"])


def is_builtin_function(name: str) -> bool:
    """An InferenceFunction that names Pro's own copy, not a file of the package."""
    return str(name).startswith(BUILTIN_FUNCTIONS)


def sci(value: Optional[float]) -> Optional[str]:
    """arcgis.learn's number-as-string style: '8.3176e-04'."""
    return None if value is None else "{0:1.4e}".format(float(value))


def build_emd(record: TrainedModel) -> Dict[str, Any]:
    """The trained emd as a dict in arcgis.learn's key order (see module doc)."""
    from ..models.registry import get_spec

    spec = get_spec(record.model_type)
    norm = record.normalization
    params = dict(spec.emd_params(dict(record.arguments), record.backbone) or {})
    model_parameters = params.pop("ModelParameters", None) or {}
    network = str(params.pop(NETWORK_KEY, None) or OWN_NETWORK)

    extension = {key: params.pop(key) for key in _EXTENSION_KEYS if key in params} \
        if "ModelConfigurationFile" in params else {}
    emd: Dict[str, Any] = {"Framework": ARCGIS_FRAMEWORK if network == ARCGIS_LEARN else "PyTorch"}
    if "ModelConfiguration" in params and not extension:  # arcgis.learn's place for it; our function ignores it
        emd["ModelConfiguration"] = params.pop("ModelConfiguration")
    emd.update({
        "ModelType": spec.model_type,
        "InferenceFunction": inference_function_name(spec.kind, network),
    })
    if extension:
        emd["ModelConfiguration"] = params.pop("ModelConfiguration")
    if spec.kind == "classification":  # FeatureClassifier's data keys, where arcgis.learn writes them
        data_keys = _feature_classifier_keys(record)
        emd["MetaDataMode"] = data_keys.pop("MetaDataMode")
    emd["ExtractBands"] = list(norm.extract_bands)
    if spec.kind == "classification":
        emd.update(data_keys)
        if network != ARCGIS_LEARN:  # arcgis.learn's from_model passes ModelParameters on: its keys only
            model_parameters["multi_label"] = record.data.metadata_format == "MultiLabeled_Tiles"
    for key, value in params.items():  # the model's own keys (e.g. SupportsVariableTileSize)
        if key not in _OURS and key not in _LAST:
            emd[key] = value
    emd["Classes"] = record.class_map.emd_classes()
    for key in _EXTENSION_KEYS if extension else ():
        emd[key] = record.data.metadata_format if key == "DatasetType" else extension[key]

    first = record.data.folders[0].emd if record.data.folders else {}
    emd["ModelFormat"] = "NCHW"
    for key in ("MinCellSize", "MaxCellSize"):
        if isinstance(first.get(key), dict):
            emd[key] = first[key]
    emd.setdefault("SupportsVariableTileSize", False)
    emd["ArcGISLearnVersion"] = ARCGIS_LEARN_VERSION
    emd[f"monitored_{record.monitor.lower()}"] = None if record.best_value is None else float(record.best_value)
    emd["ModelFile"] = f"{record.name}.pth"
    emd["ImageHeight"] = int(record.chip_size)
    emd["ImageWidth"] = int(record.chip_size)
    emd["ImageSpaceUsed"] = record.data.image_space
    emd["LearningRate"] = sci(record.learning_rate)
    emd["ModelName"] = spec.model_name
    emd["backend"] = BACKEND
    emd["ModelParameters"] = {**model_parameters, "backbone": record.backbone, "backend": BACKEND}
    emd.update(_metrics(record, spec.kind, network))
    emd["resize_to"] = record.resize_to
    emd["IsMultispectral"] = norm.is_multispectral
    if network == ARCGIS_LEARN:  # arcgis.learn >= 2.3 reads it when it rebuilds the data (from_emd)
        emd["IsImageNetNormalization"] = not norm.is_multispectral
    if norm.is_multispectral:
        emd["Bands"] = list(record.data.band_names) or [""] * record.data.num_bands
        emd["ImageryType"] = _imagery_type(record)
        emd.update(norm.emd_keys())  # ExtractBands keeps its place; NormalizationStats, DoNormalize
    emd.update({key: params[key] for key in _LAST if key in params})
    if spec.kind == "pixel":
        emd["per_class_metrics"] = per_class_metrics_json(record)
    emd["DatasetType"] = record.data.metadata_format
    emd["PretrainedWeights"] = pretrained_weights(record)  # ours: the weights training started from
    emd["Engine"] = {
        "name": ENGINE_NAME,
        "version": ENGINE_VERSION,
        "model_type": spec.keyword,
        "backbone_keyword": record.backbone_keyword,
        "arguments": _plain(record.arguments),
        "num_classes": record.class_map.num_classes,
        "network": network,  # the module layout (registry.network_of_emd)
    }
    return _plain(emd)


def pretrained_weights(record: TrainedModel) -> str:
    """The weights training started from: the record's source, else "random" (or
    "pretrained" for a record that loaded weights without saying which)."""
    return record.pretrained_weights or ("pretrained" if record.pretrained_loaded else "random")


def write_emd(emd: Dict[str, Any], path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(emd, f, indent=4)


def _metrics(record: TrainedModel, kind: str, network: str = OWN_NETWORK) -> Dict[str, Any]:
    """The model's metrics keys (arcgis.learn's ``_model_metrics``): strings for pixel models."""
    m = record.metrics or {}
    out = {}
    if kind == "pixel":
        for key in ("accuracy", "miou"):
            if m.get(key) is not None:
                out[key] = sci(m[key])
    elif kind in ("detection", "instance"):
        # {class name: AP at IoU 0.5} for the classes with validation objects; our own RetinaNet
        # keeps it under "accuracy" (esri-formats.md §2.3); arcgis.learn 2.4.4's save() writes
        # average_precision_score for its RetinaNet, which the layout's packages follow.
        per_class = m.get("per_class") or {}
        ap = {name: float(v["average_precision"]) for name, v in per_class.items()
              if isinstance(v, dict) and v.get("average_precision") is not None}
        older = record.model_type == "RETINANET" and network != ARCGIS_LEARN
        out["accuracy" if older else "average_precision_score"] = ap
    return out


def _feature_classifier_keys(record: TrainedModel) -> Dict[str, Any]:
    """MetaDataMode, CropSizeFixed (1: chips of ImageHeight x ImageWidth centred on the
    feature; 0: its bounding box), BlackenAroundFeature (0/1) and ImageSpaceUsed, from the
    training export (esri-formats.md §2.3-2.4)."""
    first = record.data.folders[0].emd if record.data.folders else {}
    blacken = first.get("BlackenAroundFeature", False)
    if isinstance(blacken, str):
        blacken = blacken.strip().lower() in ("true", "1", "yes")
    return {"MetaDataMode": record.data.metadata_format,
            "CropSizeFixed": 1 if record.data.crop_tile_mode == "Fixed_Size" else 0,
            "BlackenAroundFeature": 1 if blacken else 0,
            "ImageSpaceUsed": record.data.image_space}


def per_class_metrics_json(record: TrainedModel) -> str:
    """``per_class_metrics``: a JSON string {"NoData": {precision, recall, f1}, "<class>": …}
    in index order, as arcgis.learn writes it for Classified_Tiles."""
    per_class = (record.metrics or {}).get("per_class") or {}
    out = {}
    for name in record.class_map.names:
        values = per_class.get(name) or {}
        out[name] = {k: round(float(values.get(k) or 0.0), 10) for k in ("precision", "recall", "f1")}
    return json.dumps(out, separators=(",", ":"))


def _imagery_type(record: TrainedModel) -> str:
    sensor = record.data.folders[0].sensor_name if record.data.folders else ""
    return sensor if sensor and sensor != "Undefined" else "ms"


def _plain(value: Any) -> Any:
    """JSON-safe copy: numpy scalars/arrays → Python numbers/lists, tuples → lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON has no NaN/inf; ArcGIS's parser would refuse the file
    return value
