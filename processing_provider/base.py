"""Shared pieces of the provider's algorithms.

- ``DeepLearningAlgorithm``: base class (names, groups, help, createInstance).
- Enumerations whose option labels start with the arcpy keyword
  (``keyword_enum`` / ``parameter_as_keyword``), as INTERFACE.md requires.
- ``run_guarded``: an engine run's bad input, cancel or fault as a QgsProcessingException.
  (Engine events reach a feedback through ``engine_process.feed_event``.)
- ``check_config`` / ``config_default``: the engine's configuration dataclasses hold every
  parameter's rules and defaults; the algorithms ask them instead of restating them.
"""

import dataclasses
import traceback
from typing import Any, List, Sequence, Tuple

from dl_engine.errors import Canceled, InputError
from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
)

from . import icons

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
        return self.HELP

    def icon(self):
        return icons.icon(self.svgIconPath())

    def svgIconPath(self):  # noqa: N802 (QGIS API name)
        return icons.algorithm_icon_path(self)

    # Set by the desktop plugin (plugin/main.py): called with the algorithm when its dialog opens (Toolbox,
    # menu, locator), where the plugin offers the environment set-up on first use.
    dialog_opening = None

    def createCustomParametersWidget(self, parent=None):  # noqa: N802 (QGIS API name)
        hook = DeepLearningAlgorithm.dialog_opening
        if hook is not None:
            try:
                hook(self)
            except Exception:  # an offer must never keep the dialog from opening
                pass
        return None  # Processing's own dialog

    def createInstance(self):  # noqa: N802 (QGIS API name)
        return type(self)()

    @staticmethod
    def optional_number(algorithm_parameters, name: str) -> bool:
        """Whether an optional parameter was given a value (not None/empty)."""
        value = algorithm_parameters.get(name)
        return value is not None and not (isinstance(value, str) and not value.strip())

