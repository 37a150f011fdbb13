"""A trained model's outputs: the .emd (arcgis.learn's keys), the weights, the reports and
the .dlpk, and reading a .dlpk/.emd back safely. ``reader`` uses the standard library only
(QGIS's process reads a package's classes with it); the writer's modules load numpy, torch
and matplotlib, so this face imports them lazily."""

from .reader import ModelPackage, open_package

__all__ = ["build_emd", "ModelPackage", "open_package", "SampleResult", "TrainedModel", "PackagePaths",
           "write_model_package"]

_LAZY = {"build_emd": "emd", "SampleResult": "record", "TrainedModel": "record", "PackagePaths": "writer",
         "write_model_package": "writer"}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(name)
