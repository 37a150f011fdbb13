"""The dataset layer in one call: export folders → classes, normalisation, split, reader,
augmentation, and a numpy dataset per side that a torch Dataset can wrap unchanged."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from .augment import Augmentation, make_augmentation
from .classes import ClassMap
from .folders import ExportData, SampleRef, open_folders
from .normalization import Normalization, normalization_for
from .samples import Sample, SampleReader
from .split import DEFAULT_SEED, split_samples


@dataclass
class DataConfig:
    """The training parameters the dataset layer reads."""

    in_folder: Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]  # IN_FOLDER: "a;b" or a list
    validation_percentage: float = 10.0  # VALIDATION_PERCENTAGE
    chip_size: Optional[int] = None  # CHIP_SIZE (default: the export's tile size)
    resize_to: Optional[int] = None  # RESIZE_TO
    augmentation: str = "DEFAULT"  # AUGMENTATION: DEFAULT, NONE, CUSTOM
    augmentation_parameters: Optional[str] = None  # AUGMENTATION_PARAMETERS (CUSTOM)
    seed: int = DEFAULT_SEED


class ChipDataset:
    """Samples of one side (training or validation) as dicts of numpy arrays.

    ``item["image"]`` is the normalised (bands, h, w) float32 model input; the labels are
    those of ``Sample`` (mask, boxes, box_classes, instance_masks, label, labels) where the
    format has them. Random choices (augmentation, crop position) come from a generator
    seeded by (seed, epoch, index): the same on every run and in any DataLoader worker.
    """

    def __init__(self, refs: Sequence[SampleRef], reader: SampleReader, normalization: Normalization,
                 augmentation: Optional[Augmentation] = None, seed: int = DEFAULT_SEED):
        self.refs = list(refs)
        self.reader = reader
        self.normalization = normalization
        self.augmentation = augmentation
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.refs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def sample(self, index: int) -> Sample:
        """The raw (augmented, not normalised) sample."""
        train = self.augmentation is not None
        rng = np.random.default_rng([self.seed, self.epoch, index]) if train else None
        sample = self.reader.read(self.refs[index], rng)
        if train and not self.augmentation.is_identity:
            sample = self.augmentation(sample, rng)
        return sample

    def __getitem__(self, index: int) -> Dict[str, object]:
        s = self.sample(index)
        item: Dict[str, object] = {"key": s.key, "image": self.normalization.normalize(s.image)}
        for name in ("image2", "mask", "boxes", "box_classes", "instance_masks", "labels"):
            value = getattr(s, name)
            if value is not None:
                item[name] = value
        if s.label is not None:
            item["label"] = s.label
        return item


@dataclass
class TrainingData:
    data: ExportData
    class_map: ClassMap
    normalization: Normalization
    reader: SampleReader
    augmentation: Augmentation
    train: List[SampleRef]
    valid: List[SampleRef]
    seed: int = DEFAULT_SEED

    @property
    def warnings(self) -> List[str]:
        return self.data.warnings

    def train_dataset(self) -> ChipDataset:
        return ChipDataset(self.train, self.reader, self.normalization, self.augmentation, self.seed)

    def valid_dataset(self) -> ChipDataset:
        return ChipDataset(self.valid, self.reader, self.normalization, None, self.seed)


def prepare_data(config: DataConfig, warn: bool = True) -> TrainingData:
    """Open the folders and set everything up; every bad input is a InputError naming its parameter."""
    data = open_folders(config.in_folder, warn=warn)
    reader = SampleReader.for_data(data, config.chip_size, config.resize_to)
    train, valid = split_samples(data.samples, config.validation_percentage, config.seed)
    augmentation = make_augmentation(config.augmentation, config.augmentation_parameters, data.image_space)
    normalization = normalization_for(data)
    if normalization.is_multispectral:
        augmentation.value_range = (normalization.band_min, normalization.band_max)
    else:  # 8-bit RGB
        augmentation.value_range = (np.zeros(data.num_bands), np.full(data.num_bands, 255.0))
    return TrainingData(data, data.class_map(), normalization, reader, augmentation, train, valid, config.seed)
