"""Configuration of Train Using AutoDL: the algorithm's parameters as one dataclass that
travels to the worker process as JSON (``python -m dl_engine autodl --config cfg.json``), with
their defaults and their value rules (``AutoDLConfig.check``). Standard library only: QGIS's
process imports it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .. import checks
from ..devices import check_device
from ..errors import InputError
from ..json_config import JsonConfig
from ..train.config import check_pretrained_extension

AUTODL_MODES = ("BASIC", "ADVANCED")
MODEL_EXTENSION = ".dlpk"  # OUT_MODEL
FORMATS = ("Classified_Tiles", "PASCAL_VOC_rectangles", "KITTI_rectangles")  # what ArcGIS's AutoDL trains on


@dataclass
class AutoDLConfig(JsonConfig):
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

    def check(self) -> None:
        """Every rule on a single value, before anything is read or written; raises
        InputError(PARAMETER, message). What needs the data (the export's format, which
        NETWORKS fit it, the pretrained model) is checked by ``run_autodl`` (plan.py)."""
        checks.text_given("IN_DATA", self.in_data, "give the folder of a training data export (Export Training "
                                                   "Data For Deep Learning)")
        checks.text_given("OUT_MODEL", self.out_model, "give the .dlpk file to write the best model to, e.g. "
                                                       "/data/best.dlpk")
        if os.path.isdir(os.path.expanduser(self.out_model.strip())):  # not <folder>.dlpk beside it
            folder = os.path.abspath(os.path.expanduser(self.out_model.strip()))
            raise InputError("OUT_MODEL", f"{folder} is a folder; give a file name ending in {MODEL_EXTENSION} "
                                          f"(e.g. {os.path.join(folder, 'best' + MODEL_EXTENSION)})")
        extension = os.path.splitext(self.out_model.strip())[1]
        if extension and extension.lower() != MODEL_EXTENSION:
            raise InputError("OUT_MODEL", f"{os.path.basename(self.out_model.strip())!r} is not a deep learning "
                                          f"package; give a file name ending in {MODEL_EXTENSION} (or no extension, "
                                          f"and {MODEL_EXTENSION} is added)")
        check_pretrained_extension(self.pretrained_model)
        checks.positive_number("TOTAL_TIME_LIMIT", self.total_time_limit,
                               "hours; fractions work: 0.05 = 3 minutes, 2 = two hours")
        if str(self.autodl_mode or "BASIC").strip().upper() not in AUTODL_MODES:
            raise InputError("AUTODL_MODE", f"{self.autodl_mode!r} is not a mode; accepted: {', '.join(AUTODL_MODES)}")
        if not isinstance(self.networks, (list, tuple)) or not all(isinstance(n, str) for n in self.networks):
            raise InputError("NETWORKS", f"must be a list of network names (e.g. UnetClassifier, DeepLab) or empty "
                                         f"for every network that fits the data; got {self.networks!r}")
        check_device(self.device)
        checks.validation_percentage(self.validation_percentage)
        checks.whole_number("num_workers", self.num_workers, minimum=0, what="chosen from the CPU count",
                            optional=True)
        checks.whole_number("max_batch_size", self.max_batch_size)



@dataclass
class AutoDLResult:
    out_model_file: str  # the best .dlpk (OUT_MODEL)
    leaderboard: str  # the leaderboard CSV
    best: Dict[str, Any]  # the best trial's row of the leaderboard
    trials: List[Dict[str, Any]] = field(default_factory=list)  # every row, ranked
    evaluated_folder: Optional[str] = None  # SAVE_EVALUATED_MODELS: the folder of each trial's package
