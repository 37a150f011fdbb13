"""The dataset layer of training: export folders (ours and ArcGIS Pro's) read into numpy
samples, with Esri class conventions, normalisation, split and augmentation. No QGIS here, and
torch only inside augmentation's transforms (torchvision.transforms.v2); the trainer wraps
``ChipDataset`` in a torch Dataset."""

from .augment import AUGMENTATION_MODES, Augmentation, make_augmentation, parse_augmentation_parameters
from .band_stats import BandStats
from .classes import ClassDef, ClassMap
from .dataset import ChipDataset, DataConfig, TrainingData, prepare_data
from .folders import ExportData, ExportFolder, SampleRef, open_folder, open_folders, split_folder_list
from .normalization import Normalization, normalization_for
from .samples import Sample, SampleReader, check_chip_size
from .split import split_samples

__all__ = ["AUGMENTATION_MODES", "Augmentation", "make_augmentation", "parse_augmentation_parameters", "BandStats",
           "ClassDef", "ClassMap", "ChipDataset", "DataConfig", "TrainingData", "prepare_data",
           "ExportData", "ExportFolder", "SampleRef", "open_folder", "open_folders",
           "split_folder_list", "Normalization", "normalization_for", "Sample", "SampleReader", "check_chip_size",
           "split_samples"]
