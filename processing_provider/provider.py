"""The Processing provider ``deeplearningtools`` ("Deep learning tools")."""

import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .check_deep_learning_environment import CheckDeepLearningEnvironment
from .classify_objects import ClassifyObjectsUsingDeepLearning
from .classify_pixels import ClassifyPixelsUsingDeepLearning
from .compute_accuracy_for_object_detection import ComputeAccuracyForObjectDetection
from .compute_accuracy_for_pixel_classification import ComputeAccuracyForPixelClassification
from .detect_objects import DetectObjectsUsingDeepLearning
from .engine_process import WEIGHTS_DIR_ENV_VAR, WEIGHTS_DIR_SETTING
from .export_training_data import ExportTrainingDataForDeepLearning
from .import_pretrained_weights import ImportPretrainedWeights
from .install_deep_learning_frameworks import InstallDeepLearningFrameworks
from .train_deep_learning_model import TrainDeepLearningModel
from .train_using_autodl import TrainUsingAutoDL

PROVIDER_ID = "deeplearningtools"
PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def plugin_version():
    """``version`` from metadata.txt (no configparser interpolation surprises)."""
    try:
        with open(os.path.join(PLUGIN_DIR, "metadata.txt"), encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition("=")
                if key.strip() == "version":
                    return value.strip()
    except OSError:
        pass
    return ""


class DeepLearningToolsProvider(QgsProcessingProvider):
    # One class per algorithm module. TOOLS in the order a project uses them (the plugin menu lists them in
    # this order; the Toolbox sorts by group): export, train, apply, check the accuracy, then weights for
    # sites without internet. The environment's set-up comes last (the menu has its dialog instead).
    TOOLS = (
        ExportTrainingDataForDeepLearning,
        TrainDeepLearningModel,
        TrainUsingAutoDL,
        ClassifyPixelsUsingDeepLearning,
        DetectObjectsUsingDeepLearning,
        ClassifyObjectsUsingDeepLearning,
        ComputeAccuracyForPixelClassification,
        ComputeAccuracyForObjectDetection,
        ImportPretrainedWeights,
    )
    SETUP = (InstallDeepLearningFrameworks, CheckDeepLearningEnvironment)
    ALGORITHMS = TOOLS + SETUP

    def id(self):
        return PROVIDER_ID

    def name(self):
        return "Deep learning tools"

    def longName(self):  # noqa: N802 (QGIS API name)
        return f"Deep learning tools {plugin_version()}".strip()

    def versionInfo(self):  # noqa: N802 (QGIS API name)
        return plugin_version()

    def icon(self):
        return QIcon(os.path.join(PLUGIN_DIR, "icon.svg"))

    def svgIconPath(self):  # noqa: N802 (QGIS API name)
        return os.path.join(PLUGIN_DIR, "icon.svg")

    def load(self):
        """The provider's settings in Settings ▸ Options ▸ Processing ▸ Providers, then the algorithms."""
        add_settings(self.name(), self.icon())
        self.refreshAlgorithms()
        return True

    def unload(self):
        remove_settings()

    def loadAlgorithms(self):  # noqa: N802 (QGIS API name)
        for algorithm_class in self.ALGORITHMS:
            self.addAlgorithm(algorithm_class())


# ---- settings in Settings ▸ Options ▸ Processing ▸ Providers ▸ Deep learning tools ---------------------------

WEIGHTS_DIR_DESCRIPTION = (f"Pretrained weights folder (empty: the Hugging Face and torch hub caches; "
                           f"the environment variable {WEIGHTS_DIR_ENV_VAR} wins)")


def add_settings(group, icon=None):
    """The pretrained weights folder as a Processing setting, stored under the plugin's own QgsSettings key
    (``deep_learning_tools/weights_dir``, which the worker runner reads). Without the Processing plugin
    (``processing`` not importable) there is no Options page; the key still works."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig, Setting
    except ImportError:
        return
    setting = Setting(group, WEIGHTS_DIR_ENV_VAR, WEIGHTS_DIR_DESCRIPTION, "", valuetype=Setting.FOLDER)
    setting.qname = WEIGHTS_DIR_SETTING  # not Processing/Configuration/…: one key for the dialog and the runner
    if icon is not None:
        ProcessingConfig.settingIcons[group] = icon
    ProcessingConfig.addSetting(setting)
    setting.read()


def remove_settings():
    try:
        from processing.core.ProcessingConfig import ProcessingConfig
    except ImportError:
        return
    ProcessingConfig.settings.pop(WEIGHTS_DIR_ENV_VAR, None)
