"""Model configuration files that a package in arcgis.learn's ModelExtension layout ships
(FasterRCNN): the emd's ``ModelConfigurationFile`` names the package's copy and
``ModelFileConfigurationClass`` its class, which ArcGIS's ``_model_extension_inferencing``
imports. They are our own modules (torch and torchvision only), copied as text; our own loaders
never import or run a package's copy (package/reader.py)."""

import os

# ModelFileConfigurationClass -> the module (in this folder) that defines it
SOURCES = {"DLToolsFasterRCNN": "faster_rcnn.py"}


def source(class_name: str) -> str:
    """The text of the module defining ``class_name`` (KeyError for a class we do not ship)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), SOURCES[class_name])
    with open(path, encoding="utf-8") as f:
        return f.read()
