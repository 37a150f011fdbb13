"""A trained model's outputs: the .emd (arcgis.learn's keys), the weights, the reports and
the .dlpk, and reading a .dlpk/.emd back safely. torch and matplotlib are imported only
where they are used, so opening this package stays cheap."""

from .emd import build_emd
from .reader import ModelPackage, open_package
from .record import SampleResult, TrainedModel
from .writer import PackagePaths, write_model_package

__all__ = ["build_emd", "ModelPackage", "open_package", "SampleResult", "TrainedModel", "PackagePaths",
           "write_model_package"]
