"""The metadata formats of Export Training Data For Deep Learning, and the layout of an
export folder, as one table (shared/reference/esri-formats.md §1, §4, §5). The export
writer, the training reader, the model registry and the QGIS side all read this; a new
metadata format is one row here plus its label writer and reader. Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from .errors import InputError

# Label files that are rasters: the reader tries the chip's own extension first, then these.
RASTER_LABEL_EXTENSIONS = ("tif", "png", "tiff", "mrf")
IMAGE_EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".mrf")

# Training families: how classes map to model outputs (data/classes.py) and which models train.
PIXEL = "pixel"  # a class mask per chip; index 0 is NoData
DETECTION = "detection"  # boxes; index 0 is background
TILE = "tile"  # one or more classes per chip; no background
NONE = "none"  # no labels


@dataclass(frozen=True)
class MetadataFormat:
    """One METADATA_FORMAT and what it means for the writer and the reader."""

    keyword: str  # arcpy METADATA_FORMAT keyword, also the export's MetaDataMode
    family: str  # PIXEL, DETECTION, TILE or NONE
    label_kind: Optional[str] = None  # the export's label writer (export/label_formats.py); None: no labels
    feature_chips: bool = False  # one chip per feature, centred on it
    raster_labels: bool = False  # label files are rasters on the chip's grid
    label_extensions: Tuple[str, ...] = ()  # text label files; raster labels use RASTER_LABEL_EXTENSIONS
    needs_label: bool = False  # a sample without its label file is dropped on reading
    multi_label: bool = False  # a chip may hold several classes at once (tile family)
    instances: bool = False  # one mask per object in labels/<class folder>/

    @property
    def labelled(self) -> bool:
        return self.label_kind is not None

    def label_file_extensions(self, image_ext: str = "") -> Tuple[str, ...]:
        """The label file extensions to try for a chip with this image extension."""
        return raster_label_extensions(image_ext) if self.raster_labels else self.label_extensions


def raster_label_extensions(image_ext: str) -> Tuple[str, ...]:
    """Raster label (and instance mask) extensions to try: the chip's own first."""
    ext = image_ext.lower().lstrip(".")
    return tuple(dict.fromkeys(([ext] if ext in RASTER_LABEL_EXTENSIONS else []) + list(RASTER_LABEL_EXTENSIONS)))


# In the order of the arcpy enumeration (INTERFACE.md).
_TABLE = (
    MetadataFormat("KITTI_rectangles", DETECTION, "kitti", label_extensions=("txt",), needs_label=True),
    MetadataFormat("PASCAL_VOC_rectangles", DETECTION, "voc", label_extensions=("xml",), needs_label=True),
    MetadataFormat("Classified_Tiles", PIXEL, "classified", raster_labels=True, needs_label=True),
    MetadataFormat("RCNN_Masks", PIXEL, "rcnn", raster_labels=True, instances=True),
    MetadataFormat("Labeled_Tiles", TILE, "labeled", feature_chips=True, label_extensions=("xml",), needs_label=True),
    MetadataFormat("MultiLabeled_Tiles", TILE, "multilabeled", label_extensions=("xml",), needs_label=True,
                   multi_label=True),
    MetadataFormat("Export_Tiles", NONE),
    MetadataFormat("CycleGAN", NONE),
    MetadataFormat("Imagenet", TILE, "imagenet", feature_chips=True),  # the label is the image's folder
    MetadataFormat("Panoptic_Segmentation", PIXEL, "panoptic", raster_labels=True, needs_label=True, instances=True),
)
FORMATS: Dict[str, MetadataFormat] = {f.keyword: f for f in _TABLE}
METADATA_FORMATS = tuple(FORMATS)


def formats_where(**properties) -> Tuple[str, ...]:
    """The keywords of the formats whose attributes equal ``properties``, in table order:
    ``formats_where(family=PIXEL)``."""
    return tuple(f.keyword for f in _TABLE if all(getattr(f, k) == v for k, v in properties.items()))


def get_format(keyword: str, parameter: str = "METADATA_FORMAT") -> MetadataFormat:
    fmt = FORMATS.get(str(keyword))
    if fmt is None:
        raise InputError(parameter, f"unknown format {keyword!r}; use one of {', '.join(METADATA_FORMATS)}")
    return fmt


def family_of(keyword: str) -> str:
    """PIXEL, DETECTION, TILE, or NONE for a format without labels or not in the table."""
    fmt = FORMATS.get(str(keyword))
    return fmt.family if fmt is not None else NONE


# The layout of an export folder (what ArcGIS Pro writes and arcgis.learn reads).
EMD = "esri_model_definition.emd"
MAP_TXT = "map.txt"
STATS_JSON = "esri_accumulated_stats.json"
STATS_TXT = "stats.txt"
ESRI_FILES = (EMD, MAP_TXT, STATS_JSON)  # the three that mark a folder as an export
IMAGES, LABELS = "images", "labels"
IMAGES2, LABELS2 = "images2", "labels2"  # second raster (CycleGAN, change detection), panoptic instances
INDEX_DIGITS = 12  # Pro 3.x names chips with 12 digits; arcgis.learn pairs files by stem

_FOLDER_CHARS = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


def folder_key(name: str) -> str:
    """A class name as a folder name (Imagenet's images/<class>/, RCNN_Masks' labels/<class>/):
    the writer names folders with it and the reader matches them with it."""
    return _FOLDER_CHARS.sub("_", name).strip().strip(".") or "class"
