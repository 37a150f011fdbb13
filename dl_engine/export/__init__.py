"""Export Training Data For Deep Learning (the engine; no QGIS)."""

from .config import (IMAGE_FORMATS, METADATA_FORMATS, REFERENCE_SYSTEMS, SUPPORTED_FORMATS, ClassInfo,
                     ExportCanceled, ExportConfig, ExportError, ExportResult, RasterLabels, VectorLabels)
from .exporter import run_export

__all__ = ["run_export", "ExportConfig", "ExportResult", "ExportError", "ExportCanceled", "ClassInfo",
           "VectorLabels", "RasterLabels", "METADATA_FORMATS", "SUPPORTED_FORMATS", "IMAGE_FORMATS",
           "REFERENCE_SYSTEMS"]
