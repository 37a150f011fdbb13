"""Configuration of Train Deep Learning Model: the algorithm's parameters as one dataclass
that travels to the worker process as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, Optional

MONITORS = ("VALID_LOSS", "AVERAGE_PRECISION", "ACCURACY", "F1", "MIOU", "DICE")
WEIGHT_INIT_SCHEMES = ("RANDOM", "RED_BAND", "ALL_RANDOM")


@dataclass
class TrainConfig:
    in_folder: str  # IN_FOLDER: one export folder or several separated by ";"
    out_folder: str  # OUT_FOLDER: receives <name>.emd/.pth/.dlpk, model_metrics.html, ModelCharacteristics/
    model_type: str = "UNET"  # MODEL_TYPE (arcpy keyword)
    max_epochs: int = 20  # MAX_EPOCHS
    batch_size: int = 2  # BATCH_SIZE
    arguments: str = ""  # ARGUMENTS "name value;name value"
    learning_rate: Optional[float] = None  # LEARNING_RATE (None: learning-rate finder)
    backbone: str = "RESNET34"  # BACKBONE_MODEL
    pretrained_model: Optional[str] = None  # PRETRAINED_MODEL (.emd/.dlpk)
    validation_percentage: float = 10.0  # VALIDATION_PERCENTAGE
    stop_training: bool = True  # STOP_TRAINING: early stopping on MONITOR
    freeze: bool = True  # FREEZE
    augmentation: str = "DEFAULT"  # AUGMENTATION
    augmentation_parameters: Optional[str] = None  # AUGMENTATION_PARAMETERS
    chip_size: Optional[int] = None  # CHIP_SIZE (None: the export's tile size)
    resize_to: Optional[int] = None  # RESIZE_TO
    weight_init_scheme: str = "RANDOM"  # WEIGHT_INIT_SCHEME
    monitor: str = "VALID_LOSS"  # MONITOR
    tensorboard: bool = False  # TENSORBOARD
    device: str = "auto"  # DEVICE: auto, cpu, cuda, cuda:N
    # Engine settings with no arcpy parameter (CLI / tests / benchmarks):
    num_workers: Optional[int] = None  # DataLoader workers (None: chosen from the CPU count)
    precision: str = "auto"  # auto (bf16 where it pays), bf16, fp16, fp32
    seed: int = 42
    patience: int = 5  # epochs without improvement before STOP_TRAINING stops
    max_steps: Optional[int] = None  # stop after this many optimizer steps in all (tests, benchmarks)
    write_dlpk: bool = True  # False: the model folder without its .dlpk (AutoDL's trials)
    auto_batch_size: bool = False  # probe the largest batch that fits the device; batch_size is the upper limit
    extra: Dict[str, Any] = field(default_factory=dict)  # reserved for later issues

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "TrainConfig":
        raw = json.loads(text)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})
