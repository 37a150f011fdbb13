"""An icon per algorithm: SVG files in the plugin's ``icons/`` folder.

``DeepLearningAlgorithm.icon()`` / ``svgIconPath()`` (base.py) ask ``algorithm_icon_path``; the plugin menu
(``plugin/main.py``) shows the same icons, and the environment dialog ``ENVIRONMENT_ICON``.
"""

import os
from functools import lru_cache
from typing import Dict

from qgis.PyQt.QtGui import QIcon

PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ICONS_DIR = os.path.join(PLUGIN_DIR, "icons")
PLUGIN_ICON = os.path.join(PLUGIN_DIR, "icon.svg")
ENVIRONMENT_ICON = os.path.join(ICONS_DIR, "environment.svg")

@lru_cache(maxsize=1)
def _table() -> Dict[str, str]:
    """ALGORITHM_ID → file name under icons/."""
    # Imported here, not at the top: the algorithm modules import base.py, which imports this module.
    from .check_deep_learning_environment import CheckDeepLearningEnvironment
    from .classify_objects import ClassifyObjectsUsingDeepLearning
    from .classify_pixels import ClassifyPixelsUsingDeepLearning
    from .compute_accuracy_for_object_detection import ComputeAccuracyForObjectDetection
    from .compute_accuracy_for_pixel_classification import ComputeAccuracyForPixelClassification
    from .detect_objects import DetectObjectsUsingDeepLearning
    from .export_training_data import ExportTrainingDataForDeepLearning
    from .import_pretrained_weights import ImportPretrainedWeights
    from .install_deep_learning_frameworks import InstallDeepLearningFrameworks
    from .train_deep_learning_model import TrainDeepLearningModel
    from .train_using_autodl import TrainUsingAutoDL

    table = {
        ExportTrainingDataForDeepLearning: "export_chips.svg",        # image chips
        TrainDeepLearningModel: "train_model.svg",                     # a falling loss curve
        TrainUsingAutoDL: "autodl.svg",                                # a magic wand
        ClassifyPixelsUsingDeepLearning: "classify_pixels.svg",        # pixels in class colours
        DetectObjectsUsingDeepLearning: "detect_objects.svg",          # boxes
        ClassifyObjectsUsingDeepLearning: "classify_objects.svg",      # a tag
        ComputeAccuracyForPixelClassification: "accuracy_pixels.svg",  # pixels and a check mark
        ComputeAccuracyForObjectDetection: "accuracy_objects.svg",     # a box and a check mark
        ImportPretrainedWeights: "import_weights.svg",                 # a download arrow
        InstallDeepLearningFrameworks: "environment.svg",              # a gear (as the environment dialog)
        CheckDeepLearningEnvironment: "check_environment.svg",         # a gear and a check mark
    }
    return {cls.ALGORITHM_ID: name for cls, name in table.items()}


def algorithm_icon_path(algorithm) -> str:
    """The SVG of an algorithm (an instance or class with ``ALGORITHM_ID``); the plugin's icon when it has none."""
    name = _table().get(getattr(algorithm, "ALGORITHM_ID", ""), "")
    path = os.path.join(ICONS_DIR, name) if name else ""
    return path if path and os.path.isfile(path) else PLUGIN_ICON


def icon(path: str) -> QIcon:
    return QIcon(path)
