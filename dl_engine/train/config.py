"""Configuration of Train Deep Learning Model: the algorithm's parameters as one dataclass
that travels to the worker process as JSON, with their defaults and their value rules
(``TrainConfig.check``). Standard library only: QGIS's process imports it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from .. import checks
from ..devices import check_device
from ..errors import InputError
from ..json_config import JsonConfig
from ..memory_budget import batch_bytes, check_fits

MONITORS = ("VALID_LOSS", "AVERAGE_PRECISION", "ACCURACY", "F1", "MIOU", "DICE")
WEIGHT_INIT_SCHEMES = ("RANDOM", "RED_BAND", "ALL_RANDOM")
MODEL_EXTENSIONS = (".emd", ".dlpk")  # PRETRAINED_MODEL
MIN_CHECKED_CHIP = 64  # the chip side BATCH_SIZE is checked with before the export's tile size is known


def monitor_keyword(value: Any, parameter: str = "MONITOR") -> str:
    """MONITOR (or ARGUMENTS' ``monitor``) as its keyword, any case; empty is VALID_LOSS."""
    keyword = str(value or "VALID_LOSS").strip().upper()
    if keyword not in MONITORS:
        raise InputError(parameter, f"{value!r} is not a metric; accepted: {', '.join(MONITORS)}")
    return keyword


def check_in_folders(value: Any, parameter: str = "IN_FOLDER") -> None:
    """IN_FOLDER names at least one folder (whether each is an export is the data layer's check)."""
    folders = [p for p in str(value or "").split(";") if p.strip().strip("\"'")]
    if not folders:
        raise InputError(parameter, "no folder given; give the OUT_FOLDER of Export Training Data For Deep "
                                    "Learning, or several separated by ';'")


def check_pretrained_extension(value: Optional[str], parameter: str = "PRETRAINED_MODEL") -> None:
    """PRETRAINED_MODEL, when given, is a .emd or .dlpk (whether it exists is checked where it is read)."""
    if value and os.path.splitext(str(value))[1].lower() not in MODEL_EXTENSIONS:
        raise InputError(parameter, f"{value!r} is not a model; give a .emd or .dlpk file, or leave it empty")


@dataclass
class TrainConfig(JsonConfig):
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

    def check(self) -> None:
        """Every rule on a single value, before anything is read or written; raises
        InputError(PARAMETER, message). What needs the data (the export's format, chips and
        classes, CHIP_SIZE against the tile size, ARGUMENTS against MODEL_TYPE) is checked by
        ``run_training``."""
        check_in_folders(self.in_folder)
        checks.text_given("OUT_FOLDER", self.out_folder, "give the folder to write the model to")
        out = os.path.normcase(os.path.abspath(os.path.expanduser(self.out_folder.strip())))
        if any(out == os.path.normcase(os.path.abspath(os.path.expanduser(p.strip().strip("\"'"))))
               for p in self.in_folder.split(";") if p.strip().strip("\"'")):
            raise InputError("OUT_FOLDER", "must not be the training data folder (IN_FOLDER); give another folder")
        checks.text_given("MODEL_TYPE", self.model_type, "give a model type keyword such as UNET")
        checks.whole_number("MAX_EPOCHS", self.max_epochs)
        checks.whole_number("BATCH_SIZE", self.batch_size)
        checks.positive_number("LEARNING_RATE", self.learning_rate, "e.g. 0.001, or empty to run the learning-rate "
                                                                    "finder", optional=True)
        checks.text_given("BACKBONE_MODEL", self.backbone,
                          "give a backbone, e.g. RESNET34, RESNET18, DENSENET121 or timm:<name>")
        check_pretrained_extension(self.pretrained_model)
        checks.validation_percentage(self.validation_percentage)
        checks.whole_number("CHIP_SIZE", self.chip_size, what="the export's tile size", optional=True)
        checks.whole_number("RESIZE_TO", self.resize_to, what="no resizing", optional=True)
        self.check_memory()
        checks.one_of("WEIGHT_INIT_SCHEME", self.weight_init_scheme, WEIGHT_INIT_SCHEMES)
        monitor_keyword(self.monitor)
        check_device(self.device)
        checks.whole_number("num_workers", self.num_workers, minimum=0, what="chosen from the CPU count",
                            optional=True)
        checks.whole_number("patience", self.patience, minimum=1)
        checks.whole_number("max_steps", self.max_steps, what="no limit", optional=True)

    def check_memory(self, chip: Optional[int] = None, bands: int = 3, device_bytes: Optional[int] = None) -> None:
        """BATCH_SIZE chips of CHIP_SIZE (RESIZE_TO) pixels fit in memory (``batch_bytes``); before the
        data is read, ``chip`` defaults to CHIP_SIZE, else MIN_CHECKED_CHIP (only sizes no machine
        could train are refused); ``device_bytes``: the GPU's memory, where the caller knows it."""
        side = int(self.resize_to or self.chip_size or chip or MIN_CHECKED_CHIP)
        batch = int(self.batch_size)
        name = "RESIZE_TO" if self.resize_to else "CHIP_SIZE"
        if self.resize_to or self.chip_size or chip:  # a chip too big on its own is the size's fault
            check_fits(name if (self.resize_to or self.chip_size) else "IN_FOLDER", side,
                       lambda s: batch_bytes(1, s, bands), f"one {bands}-band chip as the network's input",
                       device_bytes, shown=None if (self.resize_to or self.chip_size) else f"a tile size of {side}")
        check_fits("BATCH_SIZE", batch, lambda b: batch_bytes(b, side, bands),
                   f"a batch of {side} x {side} px chips of {bands} bands as the network's input", device_bytes)

