"""Label files of each metadata format (shared/reference/esri-formats.md §1.6, §4).

Each writer takes one chip and writes its labels into the staging folder; it
returns the label path that map.txt lists (or None).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import numpy as np
from affine import Affine

from ..formats import folder_key
from . import esri_files as ef
from .frames import Frame
from .labels import ChipFeatures, instance_masks, pixel_boxes, rasterize_chip
from .raster_io import CHIP_FORMATS, LABEL_FORMAT_FOR, chip_profile, write_chip

@dataclass
class Chip:
    """One chip being written: where it is, its pixels and its labels."""

    staging: str
    stem: str
    frame: Frame
    out_transform: Affine  # georeferencing written into the files (pixel space or map)
    crs: object
    image_format: str
    band_count: int
    features: Optional[ChipFeatures] = None  # IN_CLASS_DATA features clipped to the chip
    label: Optional[np.ndarray] = None  # class raster (classified-raster input), 0 = none
    instances: Optional[ChipFeatures] = None  # IN_INSTANCE_DATA features (panoptic)

    @property
    def image_ext(self) -> str:
        return CHIP_FORMATS[self.image_format][0]

    @property
    def raster_label_ext(self) -> str:
        return CHIP_FORMATS[LABEL_FORMAT_FOR[self.image_format]][0]

    def write_raster_label(self, rel: str, data: np.ndarray) -> str:
        path = os.path.join(self.staging, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        f = self.frame
        write_chip(path, data, chip_profile(LABEL_FORMAT_FOR[self.image_format], data.dtype.name, data.shape[0],
                                            f.width, f.height, self.crs, self.out_transform, None))
        return rel

    def write_text(self, rel: str, text: str) -> str:
        with open(os.path.join(self.staging, rel), "w", newline="", encoding="utf-8") as fh:
            fh.write(text)
        return rel


@dataclass
class LabelContext:
    """What the writers need to know about the whole export."""

    label_dtype: str
    class_name: Callable[[int], str]
    instance_class_name: Callable[[int], str]


def _classified(chip: Chip, ctx: LabelContext, inside: np.ndarray) -> str:
    label = chip.label
    if label is None:
        f = chip.frame
        label = rasterize_chip(chip.features, f.transform, f.width, f.height, ctx.label_dtype)
    label[~inside] = 0
    return chip.write_raster_label(f"labels/{chip.stem}.{chip.raster_label_ext}", label[np.newaxis])


def _boxes(chip: Chip, features: ChipFeatures) -> np.ndarray:
    f = chip.frame
    return pixel_boxes(features, f.transform, f.width, f.height)


def _voc(chip: Chip, ctx: LabelContext, inside) -> str:
    f = chip.frame
    text = ef.voc_xml(f"{chip.stem}.{chip.image_ext}", f.width, f.height, chip.band_count,
                      _boxes(chip, chip.features), chip.features.values)
    return chip.write_text(f"labels/{chip.stem}.xml", text)


def _kitti(chip: Chip, ctx: LabelContext, inside) -> str:
    return chip.write_text(f"labels/{chip.stem}.txt", ef.kitti_txt(_boxes(chip, chip.features), chip.features.values))


def _write_instances(chip: Chip, features: ChipFeatures, folder: str, name_of) -> Optional[str]:
    """labels*/<class name>/<n>.tif per class present: one id per instance."""
    f = chip.frame
    first = None
    for value in np.unique(features.values):
        geoms = features.geometries[features.values == value]
        masks = instance_masks(geoms, f.transform, f.width, f.height)
        rel = chip.write_raster_label(f"{folder}/{folder_key(name_of(int(value)))}/{chip.stem}.{chip.raster_label_ext}",
                                      masks)
        first = first or rel
    return first


def _rcnn(chip: Chip, ctx: LabelContext, inside) -> Optional[str]:
    return _write_instances(chip, chip.features, "labels", ctx.class_name)


def _panoptic(chip: Chip, ctx: LabelContext, inside) -> str:
    rel = _classified(chip, ctx, inside)
    if chip.instances is not None and len(chip.instances.values):
        _write_instances(chip, chip.instances, "labels2", ctx.instance_class_name)
    return rel


def _labeled(chip: Chip, ctx: LabelContext, inside) -> str:
    """One object: the feature the chip is centred on, named by its class value."""
    own = chip.features.subset(chip.features.ids == chip.frame.feature)
    f = chip.frame
    text = ef.voc_xml(f"{chip.stem}.{chip.image_ext}", f.width, f.height, chip.band_count,
                      _boxes(chip, own), own.values)
    return chip.write_text(f"labels/{chip.stem}.xml", text)


def _multilabeled(chip: Chip, ctx: LabelContext, inside) -> str:
    """One object whose name lists every class in the chip, comma-separated class names."""
    f = chip.frame
    values = np.unique(chip.features.values)
    names = ",".join(ctx.class_name(int(v)) for v in values)
    boxes = _boxes(chip, chip.features)
    union = (np.array([[boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()]])
             if len(boxes) else np.array([[0, 0, f.width, f.height]]))
    xml = ef.voc_xml(f"{chip.stem}.{chip.image_ext}", f.width, f.height, chip.band_count, union, [0])
    xml = xml.replace("<name>0</name>", f"<name>{_xml_escape(names)}</name>", 1)
    return chip.write_text(f"labels/{chip.stem}.xml", xml)


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


WRITERS: Dict[str, Callable] = {
    "classified": _classified,
    "voc": _voc,
    "kitti": _kitti,
    "rcnn": _rcnn,
    "panoptic": _panoptic,
    "labeled": _labeled,
    "multilabeled": _multilabeled,
    "imagenet": lambda chip, ctx, inside: None,  # the label is the image's folder
}


def image_rel(kind: Optional[str], chip: Chip, ctx: LabelContext, folder: str = "images") -> str:
    """Where the image chip goes: images/<n>.ext, or images/<class name>/<n>.ext for Imagenet."""
    if kind == "imagenet":
        own = chip.features.values[chip.features.ids == chip.frame.feature]
        return f"{folder}/{folder_key(ctx.class_name(int(own[0])))}/{chip.stem}.{chip.image_ext}"
    return f"{folder}/{chip.stem}.{chip.image_ext}"


def blacken_outside(data: np.ndarray, chip: Chip) -> None:
    """BLACKEN_AROUND_FEATURE: pixels outside the chip's own feature become 0."""
    own = chip.features.subset(chip.features.ids == chip.frame.feature)
    f = chip.frame
    inside = rasterize_chip(own, f.transform, f.width, f.height, "uint8") > 0
    data[:, ~inside] = 0

