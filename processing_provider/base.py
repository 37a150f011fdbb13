"""Shared pieces of the provider's algorithms.

- ``DeepLearningAlgorithm``: base class (names, groups, help, createInstance).
- Enumerations whose option labels start with the arcpy keyword
  (``keyword_enum`` / ``parameter_as_keyword``), as INTERFACE.md requires.
- ``run_guarded``: an engine run's bad input, cancel or fault as a QgsProcessingException.
  (Engine events reach a feedback through ``engine_process.feed_event``.)
- ``check_config`` / ``config_default``: the engine's configuration dataclasses hold every
  parameter's rules and defaults; the algorithms ask them instead of restating them.
- What the dialogs show, for every algorithm at once: refusals that name a parameter by its
  dialog label and id (``labelled``: "Input raster (IN_RASTER): …", applied to each subclass's
  processAlgorithm/checkParameterValues), spin-box bounds from the engine's rules
  (``NUMBER_BOUNDS``), the BACKBONE_MODEL drop-down (backbone_widget.py), OUT_FOLDER offered
  under deep_learning_tools/ (``dialog_out_folder``) and each help's Example paragraph (``EXAMPLES``).
"""

import dataclasses
import functools
import math
import os
import re
import traceback
from typing import Any, Callable, List, Optional, Sequence, Tuple

from dl_engine import checks
from dl_engine.errors import Canceled, InputError
from dl_engine.export import config as export_rules
from dl_engine.infer import config as infer_rules
from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from . import icons, layer_inputs

GROUPS = {
    "trainingdata": "Training data",
    "training": "Training",
    "inference": "Inference",
    "accuracy": "Accuracy",
    "setup": "Setup",
}

# Separates the arcpy keyword from its explanation in enum option labels.
KEYWORD_SEPARATOR = " — "


def keyword_label(keyword: str, explanation: str = "") -> str:
    return f"{keyword}{KEYWORD_SEPARATOR}{explanation}" if explanation else keyword


def label_keyword(label: str) -> str:
    """The arcpy keyword an option label starts with."""
    return label.split(KEYWORD_SEPARATOR, 1)[0].split(" ", 1)[0].strip()


class KeywordEnum:
    """An enumeration parameter whose labels start with arcpy keywords."""

    def __init__(self, name: str, description: str, options: Sequence[Tuple[str, str]], default: str):
        self.name = name
        self.description = description
        self.keywords: List[str] = [keyword for keyword, _ in options]
        self.labels: List[str] = [keyword_label(k, e) for k, e in options]
        self.default = default

    def parameter(self) -> QgsProcessingParameterEnum:
        return QgsProcessingParameterEnum(
            self.name,
            self.description,
            options=self.labels,
            allowMultiple=False,
            defaultValue=self.keywords.index(self.default),
        )

    def keyword(self, algorithm: QgsProcessingAlgorithm, parameters, context) -> str:
        index = algorithm.parameterAsEnum(parameters, self.name, context)
        if not 0 <= index < len(self.keywords):
            raise QgsProcessingException(
                f"{self.name}: option {index} does not exist; "
                f"use an index 0–{len(self.keywords) - 1}: {self.help_list()}"
            )
        return self.keywords[index]

    def help_list(self) -> str:
        return ", ".join(f"{i} = {k}" for i, k in enumerate(self.keywords))


def keyword_help(enum: KeywordEnum) -> str:
    """The enum for an algorithm's help text: its name and each index = keyword."""
    return f"<b>{enum.name}</b>: " + ", ".join(f"{i} = <code>{k}</code>" for i, k in enumerate(enum.keywords))


# Export and the inference tools take the same arcpy enumeration (dl_engine.export.config.PROCESSING_MODES).
PROCESSING_MODE = KeywordEnum(
    "PROCESSING_MODE",
    "Processing mode",
    [
        ("PROCESS_AS_MOSAICKED_IMAGE", "the raster as one mosaicked image"),
        ("PROCESS_ITEMS_SEPARATELY", "each file of a VRT/mosaic on its own"),
    ],
    "PROCESS_AS_MOSAICKED_IMAGE",
)


def config_default(config_class, name: str) -> Any:
    """The default of field ``name`` of an engine configuration dataclass (TrainConfig,
    AutoDLConfig, InferConfig, ExportConfig): a Processing parameter's default comes from there."""
    for f in dataclasses.fields(config_class):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise KeyError(f"{config_class.__name__}.{name} has no default")
    raise KeyError(f"{config_class.__name__} has no field {name!r}")


def check_config(config):
    """``config.check()`` in QGIS's process, before any worker starts; the engine's InputError
    becomes the QgsProcessingException "PARAMETER: message". Returns the config."""
    try:
        config.check()
    except InputError as error:
        raise QgsProcessingException(f"{error.parameter}: {error.message}") from None
    return config


# "PARAMETER: message", as InputError, check_config, run_worker and the algorithms word a refusal.
_NAMED_MESSAGE = re.compile(r"^([A-Z][A-Z0-9_]*): (.*)$", re.DOTALL)


def labelled(message: str, label: Callable[[str], Optional[str]]) -> str:
    """"PARAMETER: message" → "Dialog label (PARAMETER): message", as the dialog shows the
    parameter; ``label(name)`` is None for a name the algorithm does not have (message unchanged).
    The id stays in the message: scripts pass it."""
    match = _NAMED_MESSAGE.match(message)
    if not match:
        return message
    name, rest = match.groups()
    description = label(name)
    return f"{description} ({name}): {rest}" if description else message


# The spin boxes' bounds, from the engine's rules (None: no bound). A bound a rule excludes
# (CELL_SIZE "above 0", ROTATION_ANGLE "below 360") is the spin box's edge: the rule refuses it, naming it.
NUMBER_BOUNDS = {
    "TILE_SIZE_X": (export_rules.TILE_SIZE_MINIMUM, None),  # the largest is the memory check's (memory_budget)
    "TILE_SIZE_Y": (export_rules.TILE_SIZE_MINIMUM, None),
    "STRIDE_X": (export_rules.TILE_SIZE_MINIMUM, None),
    "STRIDE_Y": (export_rules.TILE_SIZE_MINIMUM, None),
    "START_INDEX": (export_rules.START_INDEX_MINIMUM, None),
    "BUFFER_RADIUS": (layer_inputs.MIN_BUFFER_RADIUS, None),
    "ROTATION_ANGLE": (0.0, export_rules.ROTATION_ANGLE_MAXIMUM),
    "MIN_POLYGON_OVERLAP_RATIO": export_rules.OVERLAP_RATIO_RANGE,
    "PARALLEL_PROCESSING_FACTOR": (export_rules.WORKERS_MINIMUM, None),
    "CELL_SIZE": (0.0, None),  # checks.positive_number
    "MAX_OVERLAP_RATIO": infer_rules.MAX_OVERLAP_RATIO_RANGE,
    "MAX_EPOCHS": (checks.WHOLE_NUMBER_MINIMUM, None),
    "BATCH_SIZE": (checks.WHOLE_NUMBER_MINIMUM, None),
    "CHIP_SIZE": (checks.WHOLE_NUMBER_MINIMUM, None),
    "RESIZE_TO": (checks.WHOLE_NUMBER_MINIMUM, None),
    "LEARNING_RATE": (0.0, None),  # checks.positive_number
    "VALIDATION_PERCENTAGE": (0.0, checks.VALIDATION_PERCENTAGE_MAXIMUM),
    "TOTAL_TIME_LIMIT": (0.0, None),  # checks.positive_number
}


def bounded(definition: QgsProcessingParameterDefinition) -> QgsProcessingParameterDefinition:
    """A number parameter with the bounds of its rule (``NUMBER_BOUNDS``); others unchanged."""
    bounds = NUMBER_BOUNDS.get(definition.name())
    if isinstance(definition, QgsProcessingParameterNumber) and bounds is not None:
        low, high = bounds
        definition.setMinimum(low)
        if high is not None:
            definition.setMaximum(high)
    return definition


# The dialog's widget for BACKBONE_MODEL (an editable drop-down), by path: the dialog imports it,
# qgis_process never does (it needs QGIS's GUI).
BACKBONE_WIDGET = f"{__package__}.backbone_widget.BackboneWidgetWrapper"


def with_dialog_widget(definition: QgsProcessingParameterDefinition) -> QgsProcessingParameterDefinition:
    """BACKBONE_MODEL (free text for scripts) gets the drop-down in the dialog; others unchanged."""
    if isinstance(definition, QgsProcessingParameterString) and definition.name() == "BACKBONE_MODEL":
        definition.setMetadata({**definition.metadata(), "widget_wrapper": {"class": BACKBONE_WIDGET}})
    return definition


# One example per algorithm, the last paragraph of its help: a workflow on the sample trees
# (tests/data/trees_osbs) and buildings (tests/data/elevation). An enumeration is written with its
# arcpy keyword here and shown as the index qgis_process takes.
EXAMPLES = {
    "exporttrainingdatafordeeplearning": "IN_RASTER=OSBS_029.tif IN_CLASS_DATA=trees.gpkg "
                                         "METADATA_FORMAT=PASCAL_VOC_rectangles TILE_SIZE_X=256 TILE_SIZE_Y=256 "
                                         "STRIDE_X=128 STRIDE_Y=128 OUT_FOLDER=trees_chips",
    "traindeeplearningmodel": "IN_FOLDER=trees_chips MODEL_TYPE=RETINANET BACKBONE_MODEL=RESNET50 MAX_EPOCHS=20 "
                              "BATCH_SIZE=4 OUT_FOLDER=trees_model",
    "trainusingautodl": "IN_DATA=trees_chips TOTAL_TIME_LIMIT=0.5 OUT_MODEL=trees_best.dlpk",
    "detectobjectsusingdeeplearning": "IN_RASTER=OSBS_030.tif IN_MODEL_DEFINITION=trees_model/trees_model.dlpk "
                                      "'ARGUMENTS=threshold 0.5' OUT_DETECTED_OBJECTS=trees.gpkg",
    "classifypixelsusingdeeplearning": "IN_RASTER=dsm.tif IN_MODEL_DEFINITION=buildings_model/buildings_model.dlpk "
                                       "OUT_CLASSIFIED_RASTER=buildings.tif",
    "classifyobjectsusingdeeplearning": "IN_RASTER=OSBS_030.tif IN_FEATURES=trees.gpkg "
                                        "IN_MODEL_DEFINITION=tree_health/tree_health.dlpk "
                                        "OUT_FEATURE_CLASS=trees_classified.gpkg",
    "computeaccuracyforobjectdetection": "DETECTED_FEATURES=trees.gpkg GROUND_TRUTH_FEATURES=trees_surveyed.gpkg "
                                         "MIN_IOU=0.5 OUT_ACCURACY_TABLE=trees_accuracy.csv",
    "computeaccuracyforpixelclassification": "IN_RASTER=buildings.tif IN_GROUND_TRUTH_DATA=buildings.geojson "
                                             "NUM_RANDOM_POINTS=500 SAMPLING=STRATIFIED_RANDOM "
                                             "OUT_CONFUSION_MATRIX=buildings_confusion.csv",
    "importpretrainedweights": "IN_WEIGHTS=resnet34-b627a593.pth BACKBONE_MODEL=RESNET34",
    "installdeeplearningframeworks": "DEVICE=CPU PACKAGE_INDEX=/mnt/share/wheels",
    "checkdeeplearningenvironment": "REPORT=/tmp/dlt-environment.txt",
}


def example_help(algorithm: QgsProcessingAlgorithm, provider_id: str = "deeplearningtools") -> str:
    """The help's last paragraph: the algorithm's ``EXAMPLES`` line for qgis_process and Python."""
    arguments = EXAMPLES.get(algorithm.name())
    if not arguments:
        return ""
    shown, values, enums = [], {}, []
    for token in re.findall(r"'[^']*'|\S+", arguments):
        name, value = token.strip("'").split("=", 1)
        definition = algorithm.parameterDefinition(name)
        if isinstance(definition, QgsProcessingParameterEnum) and not value.isdigit():
            keywords = [label_keyword(label) for label in definition.options()]
            enums.append(f"{name} {keywords.index(value)} = {value}")
            value = str(keywords.index(value))
        number = isinstance(definition, QgsProcessingParameterNumber) and not value.isdigit()
        values[name] = int(value) if value.isdigit() else float(value) if number else value
        shown.append(f"'{name}={value}'" if " " in value else f"{name}={value}")
    alg_id = f"{provider_id}:{algorithm.name()}"
    python = ", ".join(f"'{k}': {v!r}" for k, v in values.items())
    index_note = f"; an enumeration takes its option's index ({', '.join(enums)})" if enums else ""
    return (f"<p><b>Example</b>:<br><code>qgis_process run {alg_id} -- {' '.join(shown)}</code><br>"
            f"In Python: <code>processing.run('{alg_id}', {{{python}}})</code>{index_note}.</p>")


# The dialog's OUT_FOLDER: <place>/deep_learning_tools/<what>-<raster>, not a temporary folder
# that vanishes with the session. Scripts still pass OUT_FOLDER (INTERFACE.md: required).
DIALOG_FOLDER = "deep_learning_tools"
DIALOG_FOLDER_NAMES = {"exporttrainingdatafordeeplearning": "training_data", "traindeeplearningmodel": "model"}


def _file_name_part(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text).strip("._") or "raster"


def dialog_out_folder(algorithm_id: str, raster_name: str = "", project_home: str = "",
                      home: Optional[str] = None) -> str:
    """The OUT_FOLDER a dialog offers: beside the project (its folder) or in the user's home, under
    deep_learning_tools/, named after the tool and the raster; a free name (-2, -3…) when that folder
    already holds something, since both tools refuse such a folder."""
    place = os.path.join(project_home or home or os.path.expanduser("~"), DIALOG_FOLDER)
    what = DIALOG_FOLDER_NAMES.get(algorithm_id, algorithm_id)
    stem = os.path.join(place, f"{what}-{_file_name_part(raster_name)}" if raster_name else what)
    candidate, n = stem, 1
    while os.path.isdir(candidate) and os.listdir(candidate):
        n += 1
        candidate = f"{stem}-{n}"
    return candidate


def _dialog_raster_name() -> str:
    """The raster the dialog's IN_RASTER offers first: the active layer, else the project's first raster."""
    from qgis.core import QgsMapLayerType, QgsProject
    from qgis.utils import iface

    active = iface.activeLayer() if iface is not None and hasattr(iface, "activeLayer") else None
    if getattr(active, "type", None) and active.type() == QgsMapLayerType.RasterLayer:
        return active.name()
    rasters = [layer for layer in QgsProject.instance().mapLayers().values()
               if layer.type() == QgsMapLayerType.RasterLayer]
    return rasters[0].name() if rasters else ""


def _labelled_qgis(message: str, label: Callable[[str], Optional[str]]) -> str:
    """QGIS's own refusals ("Incorrect parameter value for OUT_FOLDER", "Could not load source layer for
    IN_RASTER: …") with the dialog's label too."""
    def named(match):
        description = label(match.group(1))
        return f"for {description} ({match.group(1)})" if description else match.group(0)
    return re.sub(r"\bfor ([A-Z][A-Z0-9_]*)\b(?!\))", named, message)


def _number_outside_bounds(definition: QgsProcessingParameterNumber, value: Any) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(number) and not definition.minimum() <= number <= definition.maximum()


def advanced(parameter: QgsProcessingParameterDefinition) -> QgsProcessingParameterDefinition:
    parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return parameter


def run_guarded(job, feedback, what: str):
    """``job()`` (an engine run, in a worker or in-process) → the algorithm's outputs. Bad input
    ("PARAMETER: message"), a cancel and any fault on our side become a QgsProcessingException
    with a message (QGIS shows a traceback for any other exception); the traceback of a fault
    goes to the log only."""

    try:
        return job()
    except InputError as bad:
        raise QgsProcessingException(f"{bad.parameter}: {bad.message}" if bad.parameter else bad.message) from None
    except Canceled as canceled:
        raise QgsProcessingException(str(canceled)) from None
    except QgsProcessingException:
        raise
    except Exception as error:
        if feedback is not None:
            feedback.pushDebugInfo(traceback.format_exc())
        raise QgsProcessingException(f"{what} failed: {type(error).__name__}: {error}") from None


class DeepLearningAlgorithm(QgsProcessingAlgorithm):
    """Base of the provider's algorithms: subclasses set the class attributes."""

    ALGORITHM_ID = ""
    DISPLAY_NAME = ""
    GROUP_ID = ""
    HELP = ""
    TAGS: Sequence[str] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Every refusal leaves through these two methods: name the parameter as the dialog does.
        if "processAlgorithm" in cls.__dict__:
            cls.processAlgorithm = _labelling_refusals(cls.__dict__["processAlgorithm"])
        if "checkParameterValues" in cls.__dict__:
            cls.checkParameterValues = _labelling_check(cls.__dict__["checkParameterValues"])

    def parameter_label(self, name: str) -> Optional[str]:
        """The label the dialog shows for parameter ``name`` (None: no such parameter)."""
        definition = self.parameterDefinition(name)
        return definition.description() if definition is not None else None

    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS API name)
        """QGIS answers a number outside a spin box's bounds with a bare "Incorrect parameter value
        for …"; such a number is left to the engine's rule (the bounds' source), whose message says
        what is accepted."""
        outside = {d.name() for d in self.parameterDefinitions()
                   if isinstance(d, QgsProcessingParameterNumber) and _number_outside_bounds(d, parameters.get(d.name()))}
        if outside:
            parameters = {k: v for k, v in parameters.items() if k not in outside}
        ok, message = super().checkParameterValues(parameters, context)
        return ok, _labelled_qgis(labelled(message, self.parameter_label), self.parameter_label) if message else message

    def addParameter(self, definition, createOutput=True):  # noqa: N802 (QGIS API name)
        return super().addParameter(with_dialog_widget(bounded(definition)), createOutput)

    def name(self):
        return self.ALGORITHM_ID

    def displayName(self):  # noqa: N802 (QGIS API name)
        return self.DISPLAY_NAME

    def group(self):
        return GROUPS[self.GROUP_ID]

    def groupId(self):  # noqa: N802 (QGIS API name)
        return self.GROUP_ID

    def tags(self):
        return list(self.TAGS)

    def shortHelpString(self):  # noqa: N802 (QGIS API name)
        return self.HELP.rstrip() + "\n" + example_help(self)

    def icon(self):
        return icons.icon(self.svgIconPath())

    def svgIconPath(self):  # noqa: N802 (QGIS API name)
        return icons.algorithm_icon_path(self)

    # Set by the desktop plugin (plugin/main.py): called with the algorithm when its dialog opens (Toolbox,
    # menu, locator), where the plugin offers the environment set-up on first use.
    dialog_opening = None

    def createCustomParametersWidget(self, parent=None):  # noqa: N802 (QGIS API name)
        self.offer_dialog_defaults()
        hook = DeepLearningAlgorithm.dialog_opening
        if hook is not None:
            try:
                hook(self)
            except Exception:  # an offer must never keep the dialog from opening
                pass
        return None  # Processing's own dialog

    def offer_dialog_defaults(self) -> None:
        """Defaults only the dialog shows (this instance is the dialog's): OUT_FOLDER named after the
        tool and the raster (``dialog_out_folder``)."""
        out_folder = self.parameterDefinition("OUT_FOLDER")
        if not isinstance(out_folder, QgsProcessingParameterFolderDestination) or out_folder.defaultValue():
            return
        try:
            from qgis.core import QgsProject

            out_folder.setDefaultValue(dialog_out_folder(self.name(), _dialog_raster_name(),
                                                         QgsProject.instance().homePath()))
        except Exception:  # a default must never keep the dialog from opening
            pass

    def createInstance(self):  # noqa: N802 (QGIS API name)
        return type(self)()

    @staticmethod
    def optional_number(algorithm_parameters, name: str) -> bool:
        """Whether an optional parameter was given a value (not None/empty)."""
        value = algorithm_parameters.get(name)
        return value is not None and not (isinstance(value, str) and not value.strip())



def _labelling_refusals(process):
    @functools.wraps(process)
    def wrapper(self, *args, **kwargs):
        try:
            return process(self, *args, **kwargs)
        except QgsProcessingException as refused:
            message = str(refused)
            relabelled = labelled(message, self.parameter_label)
            if relabelled == message:
                raise
            raise QgsProcessingException(relabelled) from None
    return wrapper


def _labelling_check(check):
    @functools.wraps(check)
    def wrapper(self, parameters, context):
        ok, message = check(self, parameters, context)
        return ok, labelled(message, self.parameter_label) if message else message
    return wrapper
