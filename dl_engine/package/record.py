"""What a finished training run hands to the package writer (emd, .pth, model_metrics.html,
ModelCharacteristics/, training_validation_loss.json, .dlpk)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np

from ..data.classes import ClassMap
from ..data.folders import ExportData
from ..data.normalization import Normalization


@dataclass
class SampleResult:
    """One validation chip for show_results.png: what the user compares by eye."""

    image: np.ndarray  # (h, w, 3) uint8 display image (first three model bands stretched)
    truth: np.ndarray  # (h, w) int class indices (pixel models)
    prediction: np.ndarray  # (h, w) int class indices
    # Object classifiers (truth/prediction None): the true and predicted class names of the chip
    # (multi-label: names joined by ", "), the predicted probability and whether it was right.
    truth_label: Optional[str] = None
    predicted_label: Optional[str] = None
    score: Optional[float] = None
    correct: Optional[bool] = None
    # Detectors: boxes (n, 4) xmin, ymin, xmax, ymax in chip pixels with class indices 1..K,
    # drawn over the image (truth/prediction: None, or for instance models the chip's
    # instance masks as class indices).
    truth_boxes: Optional[np.ndarray] = None
    truth_box_classes: Optional[np.ndarray] = None
    predicted_boxes: Optional[np.ndarray] = None
    predicted_box_classes: Optional[np.ndarray] = None
    predicted_box_scores: Optional[np.ndarray] = None


@dataclass
class TrainedModel:
    name: str  # file stem: the OUT_FOLDER's name
    model_type: str  # arcpy keyword, e.g. "UNET" (dl_engine.models.registry.get_spec)
    backbone: str  # resolved backbone name for ModelParameters.backbone ("resnet34", "timm:convnext_tiny")
    backbone_keyword: str  # BACKBONE_MODEL as given ("RESNET34")
    arguments: Dict[str, Any]  # model arguments used (defaults filled in)
    class_map: ClassMap
    normalization: Normalization
    data: ExportData  # the training folders (export emd: MinCellSize, ImageSpaceUsed, format…)
    chip_size: int
    resize_to: Optional[int]
    learning_rate: float
    monitor: str  # MONITOR keyword, e.g. "VALID_LOSS"
    best_value: Optional[float]  # the monitored value of the kept (best) epoch
    best_epoch: int
    history: List[Dict[str, Any]]  # one dict per epoch: epoch, train_loss, valid_loss, accuracy, miou, dice, seconds, lr
    metrics: Dict[str, Any]  # final validation metrics of the kept weights: valid_loss, accuracy, miou, dice,
    #                          per_class {class name: {precision, recall, f1, iou}} (background included as "NoData")
    settings: Dict[str, Any]  # the run's parameters for model_metrics.html (TrainConfig as a dict + device)
    samples: List[SampleResult] = field(default_factory=list)
    pretrained_loaded: bool = False
    # what training started from (emd PretrainedWeights): "timm/resnet34.a1_in1k (Hugging Face hub)",
    # "imported: <path>", "model: <PRETRAINED_MODEL>", "random"; empty: "random" or not recorded
    pretrained_weights: str = ""
