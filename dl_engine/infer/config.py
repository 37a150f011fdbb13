"""Configuration of the inference tools (Classify Pixels / Detect Objects / Classify Objects
Using Deep Learning): the algorithms' parameters as one dataclass that travels to the worker
process as JSON (``python -m dl_engine infer --config cfg.json``), with their defaults and
their value rules (``InferConfig.check``). Standard library only: QGIS's process imports it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional

from .. import checks
from ..arguments import parse_arguments
from ..devices import check_device
from ..errors import InputError
from ..json_config import JsonConfig
from ..memory_budget import batch_bytes, check_fits
from ..export.config import PROCESSING_MODES  # the same arcpy enumeration as the export's
from .arguments import TOOL_ARGUMENTS, TOOL_NAMES

TOOLS = ("classify_pixels", "detect_objects", "classify_objects")
MIN_CHECKED_TILE = 64  # the tile side batch_size is checked with before the model's ImageHeight is known
MODEL_EXTENSIONS = (".emd", ".dlpk")  # IN_MODEL_DEFINITION
MAX_OVERLAP_RATIO_RANGE = (0.0, 1.0)  # detections overlapping more are one object
# Output fields the engine writes besides the ones the user names: Detect Objects' integer class
# value, Classify Objects' confidence.
CLASS_VALUE_NUMBER_FIELD = "ClassValue"
CONFIDENCE_FIELD = "Confidence"
OUT_PARAMETERS = {"classify_pixels": "OUT_CLASSIFIED_RASTER", "detect_objects": "OUT_DETECTED_OBJECTS",
                  "classify_objects": "OUT_FEATURE_CLASS"}


def check_field_name(parameter: str, name, default: str) -> str:
    """An output field name: not empty, no quotes or line breaks."""
    text = name.strip() if isinstance(name, str) else ""
    if not text:
        raise InputError(parameter, f"give a field name (default {default})")
    if any(c in text for c in "\"'\n\r\t"):
        raise InputError(parameter, f"{text!r} is not a usable field name (quotes or line breaks); give a plain "
                                    f"name (default {default})")
    return text


@dataclass
class InferConfig(JsonConfig):
    tool: str  # one of TOOLS
    in_raster: str  # IN_RASTER as a GDAL-readable path (the QGIS side makes one for non-file layers)
    model: str  # IN_MODEL_DEFINITION: .emd or .dlpk
    out_path: str  # classify_pixels: the GeoTIFF to write; detect/classify objects: a GeoJSON file
    #                (features in the raster's CRS; the QGIS side copies them into the output sink)
    arguments: str = ""  # ARGUMENTS "name value;name value" (padding, batch_size, tile_size, threshold, …)
    processing_mode: str = "PROCESS_AS_MOSAICKED_IMAGE"  # PROCESSING_MODE
    extent: Optional[List[float]] = None  # EXTENT [xmin, ymin, xmax, ymax] in the raster's CRS
    cell_size: Optional[float] = None  # CELL_SIZE in the raster's CRS units
    device: str = "auto"  # DEVICE: auto, cpu, cuda, cuda:N
    # Detect Objects
    run_nms: bool = False  # RUN_NMS
    confidence_score_field: str = "Confidence"  # CONFIDENCE_SCORE_FIELD
    class_value_field: str = "Class"  # CLASS_VALUE_FIELD
    max_overlap_ratio: float = 0.0  # MAX_OVERLAP_RATIO
    # Classify Objects
    in_features: Optional[str] = None  # IN_FEATURES as GeoJSON in the raster's CRS (None: image tiles)
    class_label_field: str = "ClassLabel"  # CLASS_LABEL_FIELD
    # engine settings with no arcpy parameter
    precision: str = "auto"
    num_workers: Optional[int] = None

    def check(self) -> None:
        """Every rule on a single value, before anything is read or written; raises
        InputError(PARAMETER, message). ARGUMENTS' names and types are checked here, their
        ranges against the model's tile size (and everything about the model and the raster)
        by ``run_inference``."""
        checks.one_of("tool", self.tool, TOOLS)
        checks.text_given("IN_RASTER", self.in_raster, "give a raster file GDAL can read")
        accepted = "give the .dlpk or .emd written by Train Deep Learning Model (or ArcGIS Pro)"
        checks.text_given("IN_MODEL_DEFINITION", self.model, accepted)
        if os.path.splitext(self.model.strip())[1].lower() not in MODEL_EXTENSIONS:
            raise InputError("IN_MODEL_DEFINITION", f"{self.model!r} is not a model definition; {accepted}")
        out = OUT_PARAMETERS[self.tool]
        checks.text_given(out, self.out_path, "give the file to write the output to")
        if os.path.abspath(self.out_path) == os.path.abspath(self.in_raster):
            raise InputError(out, "the output would overwrite the input raster; give another file")
        values = parse_arguments(self.arguments, TOOL_ARGUMENTS[self.tool], TOOL_NAMES[self.tool])
        self.check_memory(values)
        checks.one_of("PROCESSING_MODE", self.processing_mode, PROCESSING_MODES)
        checks.extent(self.extent)
        checks.positive_number("CELL_SIZE", self.cell_size, "in the raster's CRS units, or empty for the raster's "
                                                            "own cell size", optional=True)
        check_device(self.device)
        if self.tool == "detect_objects":
            checks.number_between("MAX_OVERLAP_RATIO", self.max_overlap_ratio, *MAX_OVERLAP_RATIO_RANGE,
                                  "the share of overlap above which two detections are one object")
            confidence = check_field_name("CONFIDENCE_SCORE_FIELD", self.confidence_score_field, "Confidence")
            value = check_field_name("CLASS_VALUE_FIELD", self.class_value_field, "Class")
            if value.lower() == CLASS_VALUE_NUMBER_FIELD.lower():
                raise InputError("CLASS_VALUE_FIELD", f"{value!r} is taken by the class value field "
                                                      f"{CLASS_VALUE_NUMBER_FIELD}; choose another name "
                                                      f"(default Class)")
            if confidence.lower() in (value.lower(), CLASS_VALUE_NUMBER_FIELD.lower()):
                raise InputError("CONFIDENCE_SCORE_FIELD", f"{confidence!r} is already the name of another output "
                                                           f"field (CLASS_VALUE_FIELD {value!r}, "
                                                           f"{CLASS_VALUE_NUMBER_FIELD}); choose another name "
                                                           f"(default Confidence)")
        if self.tool == "classify_objects":
            label = check_field_name("CLASS_LABEL_FIELD", self.class_label_field, "ClassLabel")
            if label.lower() == CONFIDENCE_FIELD.lower():
                raise InputError("CLASS_LABEL_FIELD", f"{label!r} is the confidence field's name; choose another "
                                                      f"(default ClassLabel)")
        checks.whole_number("num_workers", self.num_workers, minimum=0, what="chosen from the device",
                            optional=True)

    def check_memory(self, values: Optional[dict] = None, tile: Optional[int] = None, bands: int = 3,
                     device_bytes: Optional[int] = None) -> None:
        """ARGUMENTS' batch_size tiles of tile_size pixels (else ``tile``: the model's ImageHeight,
        else MIN_CHECKED_TILE) fit in memory (``batch_bytes``); ``device_bytes``: the GPU's, where known."""
        values = values if values is not None else parse_arguments(self.arguments, TOOL_ARGUMENTS[self.tool],
                                                                   TOOL_NAMES[self.tool])
        side, batch = _whole(values.get("tile_size")) or tile or MIN_CHECKED_TILE, _whole(values.get("batch_size"))
        if values.get("tile_size") is not None and _whole(values.get("tile_size")):
            check_fits("ARGUMENTS", side, lambda s: batch_bytes(1, s, bands), f"one {bands}-band tile",
                       device_bytes, shown=f"tile_size {side}")
        if batch:
            check_fits("ARGUMENTS", batch, lambda b: batch_bytes(b, side, bands),
                       f"{bands}-band tiles of {side} x {side} px as the network's input", device_bytes,
                       shown=f"batch_size {batch}")


def _whole(value) -> Optional[int]:
    """A whole number given in ARGUMENTS (their ranges are run_inference's check), else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() and number >= 1 else None

