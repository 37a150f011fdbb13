"""Configuration of the inference tools (Classify Pixels / Detect Objects / Classify Objects
Using Deep Learning): the algorithms' parameters as one dataclass that travels to the worker
process as JSON (``python -m dl_engine infer --config cfg.json``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import List, Optional

TOOLS = ("classify_pixels", "detect_objects", "classify_objects")


@dataclass
class InferConfig:
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

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "InferConfig":
        raw = json.loads(text)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})
