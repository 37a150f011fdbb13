"""Configuration of Train Using AutoDL: the algorithm's parameters as one dataclass that
travels to the worker process as JSON (``python -m dl_engine autodl --config cfg.json``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional

AUTODL_MODES = ("BASIC", "ADVANCED")
FORMATS = ("Classified_Tiles", "PASCAL_VOC_rectangles", "KITTI_rectangles")  # what ArcGIS's AutoDL trains on


@dataclass
class AutoDLConfig:
    in_data: str  # IN_DATA: an export folder (Classified_Tiles, PASCAL_VOC_rectangles, KITTI_rectangles)
    out_model: str  # OUT_MODEL: the best model's .dlpk
    pretrained_model: Optional[str] = None  # PRETRAINED_MODEL (.emd/.dlpk): its network starts from it
    total_time_limit: float = 2.0  # TOTAL_TIME_LIMIT in hours (0.05 = 3 minutes)
    autodl_mode: str = "BASIC"  # AUTODL_MODE: BASIC or ADVANCED
    # NETWORKS: arcgis.learn class names (UnetClassifier, DeepLab, …) or MODEL_TYPE keywords
    # (UNET, DEEPLAB, …); empty = every network of this version that trains on the export's format
    networks: List[str] = field(default_factory=list)
    save_evaluated_models: bool = False  # SAVE_EVALUATED_MODELS: keep each trial's package beside OUT_MODEL
    # Engine settings with no arcpy parameter (CLI / tests / benchmarks):
    device: str = "auto"
    validation_percentage: float = 10.0
    num_workers: Optional[int] = None
    precision: str = "auto"
    seed: int = 42
    max_batch_size: int = 64  # the automatic batch size never goes above this
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "AutoDLConfig":
        raw = json.loads(text)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})


@dataclass
class AutoDLResult:
    out_model_file: str  # the best .dlpk (OUT_MODEL)
    leaderboard: str  # the leaderboard CSV
    best: Dict[str, Any]  # the best trial's row of the leaderboard
    trials: List[Dict[str, Any]] = field(default_factory=list)  # every row, ranked
    evaluated_folder: Optional[str] = None  # SAVE_EVALUATED_MODELS: the folder of each trial's package
