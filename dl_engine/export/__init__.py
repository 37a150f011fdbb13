"""Export Training Data For Deep Learning (the engine; no QGIS).

The configuration imports with the standard library only; rasterio and the chip writer
load when ``run_export`` is first used."""

from .config import (CROP_MODES, IMAGE_FORMATS, METADATA_FORMATS, PROCESSING_MODES, REFERENCE_SYSTEMS, ClassInfo,
                     ExportConfig, ExportResult, RasterLabels, VectorLabels)

__all__ = ["run_export", "ExportConfig", "ExportResult", "ClassInfo", "VectorLabels", "RasterLabels",
           "METADATA_FORMATS", "IMAGE_FORMATS", "REFERENCE_SYSTEMS", "PROCESSING_MODES", "CROP_MODES"]


def __getattr__(name):  # lazy: rasterio loads with the run, not with the config
    if name == "run_export":
        from .exporter import run_export
        return run_export
    raise AttributeError(name)
