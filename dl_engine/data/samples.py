"""Read one training sample (image and labels) of an export, as plain numpy arrays.

- image: (bands, h, w) float32, raw pixel values (normalisation comes later);
- pixel formats: ``mask`` (h, w) int64 class indices through ``ClassMap`` (0 where no class);
  RCNN_Masks / Panoptic also ``instance_masks`` (n, h, w) bool with their class indices
  and boxes;
- PASCAL_VOC_rectangles / KITTI_rectangles: ``boxes`` (n, 4) float32 xmin, ymin, xmax, ymax in
  chip pixels and ``box_classes`` (n,) int64 (1..K); ``<name>`` may be the class value (ArcGIS)
  or its name; objects of unknown classes are skipped; a chip without objects gives empty
  arrays (a negative sample);
- Labeled_Tiles: ``label`` = the first object's class index; Imagenet: the folder's class;
  MultiLabeled_Tiles: ``labels`` multi-hot (K,) float32 from the comma-separated names.
  A class that the export does not declare gives ``label`` = -1 (to be ignored by the loss).

``chip_size`` crops chips larger than it (at random with an rng — training —, else in the
centre) and pads smaller ones (variable-size chips) with 0 / background; ``resize_to``
resizes instead (bilinear image, nearest labels).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from typing import List, Optional, Tuple

import numpy as np

from .classes import ClassMap
from ..errors import InputError
from .folders import ExportData, SampleRef, folder_key
from .warp import affine_resample, resize_matrix, transform_boxes


@dataclass
class Sample:
    key: str
    image: np.ndarray  # (bands, h, w) float32
    image2: Optional[np.ndarray] = None  # IN_RASTER2 chip, same grid
    mask: Optional[np.ndarray] = None  # (h, w) int64 class indices
    boxes: Optional[np.ndarray] = None  # (n, 4) float32 xmin, ymin, xmax, ymax
    box_classes: Optional[np.ndarray] = None  # (n,) int64
    instance_masks: Optional[np.ndarray] = None  # (n, h, w) bool
    label: Optional[int] = None  # Labeled_Tiles / Imagenet
    labels: Optional[np.ndarray] = None  # MultiLabeled_Tiles multi-hot (K,)

    @property
    def height(self) -> int:
        return self.image.shape[1]

    @property
    def width(self) -> int:
        return self.image.shape[2]

    # ---- geometry (used by crop/pad, resize and augment) ---------------------------------

    def window(self, row: int, col: int, height: int, width: int) -> "Sample":
        """The part of the chip at (row, col) of size height x width; outside the chip
        (padding) image 0 and label 0 / background. Boxes are shifted and clipped, and
        boxes left empty are dropped."""
        def cut(a: Optional[np.ndarray], fill=0) -> Optional[np.ndarray]:
            if a is None:
                return None
            out = np.full(a.shape[:-2] + (height, width), fill, dtype=a.dtype)
            r0, c0 = max(row, 0), max(col, 0)
            r1, c1 = min(row + height, a.shape[-2]), min(col + width, a.shape[-1])
            if r1 > r0 and c1 > c0:
                out[..., r0 - row:r1 - row, c0 - col:c1 - col] = a[..., r0:r1, c0:c1]
            return out
        forward = np.array([[1.0, 0.0, -col], [0.0, 1.0, -row]])
        return self.with_geometry(cut(self.image), cut(self.image2), cut(self.mask), cut(self.instance_masks),
                                   forward, width, height)

    def resampled(self, matrix: np.ndarray, out_shape: Tuple[int, int], forward: np.ndarray) -> "Sample":
        """Resampled through ``matrix`` (output → input point); ``forward`` is its inverse."""
        def img(a):
            return None if a is None else affine_resample(a, matrix, out_shape)

        def lab(a):
            return None if a is None else affine_resample(a, matrix, out_shape, nearest=True)
        return self.with_geometry(img(self.image), img(self.image2), lab(self.mask), lab(self.instance_masks),
                                   forward, out_shape[1], out_shape[0])

    def with_geometry(self, image, image2, mask, instance_masks, forward, width, height) -> "Sample":
        """A copy with new pixel arrays (already transformed) and the boxes mapped by
        ``forward`` (input → output point) onto a width x height chip."""
        boxes, classes = self.boxes, self.box_classes
        if instance_masks is not None:
            instance_masks, boxes, classes = _instance_boxes(instance_masks, self.box_classes)
        elif boxes is not None:
            boxes, keep = transform_boxes(boxes, forward, width, height)
            boxes, classes = boxes[keep], classes[keep]
        return replace(self, image=image, image2=image2, mask=mask, instance_masks=instance_masks, boxes=boxes,
                       box_classes=classes)


def _instance_boxes(masks: np.ndarray, classes: np.ndarray):
    """Boxes of instance masks (bounds of their pixels); instances left without pixels dropped."""
    keep = masks.reshape(len(masks), -1).any(1) if len(masks) else np.zeros(0, bool)
    masks, classes = masks[keep], classes[keep]
    boxes = np.zeros((len(masks), 4), np.float32)
    for i, m in enumerate(masks):
        rows = np.flatnonzero(m.any(1))
        cols = np.flatnonzero(m.any(0))
        boxes[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return masks, boxes, classes.astype(np.int64)


# ---- files --------------------------------------------------------------------------------------

def read_image(path: str) -> np.ndarray:
    """(bands, h, w) float32; the chip's NoData pixels (padding at raster edges, gaps) are NaN,
    so normalisation can put them at the band mean instead of letting a value such as -9999
    swamp the statistics the network sees."""
    import rasterio

    try:
        with rasterio.open(path) as src:
            image = src.read(out_dtype="float32")
            for band, nodata in enumerate(src.nodatavals):
                if nodata is not None and not np.isnan(nodata):
                    image[band][image[band] == np.float32(nodata)] = np.nan
            return image
    except Exception as e:  # RasterioIOError and GDAL's own
        raise InputError("IN_FOLDER", f"the chip {path} cannot be read: {e}") from None


def read_label_raster(path: str) -> np.ndarray:
    """(bands, h, w) label values as stored (first band: the class map)."""
    import rasterio

    try:
        with rasterio.open(path) as src:
            return src.read()
    except Exception as e:
        raise InputError("IN_FOLDER", f"the label {path} cannot be read: {e}") from None


def read_voc(path: str) -> List[Tuple[str, Optional[Tuple[float, float, float, float]]]]:
    """(name text, box or None) of every ``<object>`` of a PASCAL VOC file."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        raise InputError("IN_FOLDER", f"the label {path} is not a PASCAL VOC xml file: {e}") from None
    out = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        box = None
        b = obj.find("bndbox")
        if b is not None:
            try:
                box = tuple(float(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            except (TypeError, ValueError):
                raise InputError("IN_FOLDER", f"the label {path} has an object whose <bndbox> is not four "
                                             "numbers xmin, ymin, xmax, ymax") from None
        out.append((name, box))
    return out


def read_kitti(path: str) -> List[Tuple[str, Tuple[float, float, float, float]]]:
    """(class text, box) of every line of a KITTI label file: 15 fields, class in field 0,
    left top right bottom in fields 4..7 (as arcgis.learn reads them)."""
    out = []
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise InputError("IN_FOLDER", f"the label {path} cannot be read: {e}") from None
    for i, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 15:
            raise InputError("IN_FOLDER", f"the KITTI label {path}, line {i}, has {len(fields)} fields; KITTI lines "
                                         "have 15 (class, truncated, occluded, alpha, left, top, right, bottom, "
                                         "3 dimensions, 3 location, rotation_y)")
        try:
            box = tuple(float(v) for v in fields[4:8])
        except ValueError:
            raise InputError("IN_FOLDER", f"the KITTI label {path}, line {i}: fields 5 to 8 must be the numbers "
                                         "left, top, right, bottom") from None
        out.append((fields[0], box))
    return out


# ---- the reader ---------------------------------------------------------------------------------

def read_box_label(fmt: str, path: Optional[str]) -> List[Tuple[str, Optional[Tuple[float, float, float, float]]]]:
    """(class text, box) of every object of a PASCAL_VOC_rectangles or KITTI_rectangles label file
    (none for a chip without one)."""
    if path is None:
        return []
    return read_voc(path) if fmt == "PASCAL_VOC_rectangles" else read_kitti(path)


def check_chip_size(data: ExportData, chip_size: Optional[int]) -> Optional[int]:
    """CHIP_SIZE must be a positive integer no larger than the exported chips."""
    if chip_size is None:
        return None
    try:
        size = int(chip_size)
        if size != float(chip_size):
            raise ValueError
    except (TypeError, ValueError):
        raise InputError("CHIP_SIZE", f"the chip size must be a whole number of pixels, not {chip_size!r}") from None
    if size <= 0:
        raise InputError("CHIP_SIZE", f"the chip size must be positive, not {size}")
    tile = min(data.tile_size_x, data.tile_size_y)
    if size > tile and data.crop_tile_mode != "Variable_Size":
        raise InputError("CHIP_SIZE", f"the chip size {size} is larger than the exported chips "
                                     f"({data.tile_size_x} x {data.tile_size_y} pixels in {data.paths[0]}); use "
                                     f"{tile} or less, or export larger chips")
    return size


@dataclass
class SampleReader:
    """Reads samples of one metadata format into ``Sample`` arrays."""

    metadata_format: str
    class_map: ClassMap
    instance_class_map: Optional[ClassMap] = None  # Panoptic instance classes
    chip_size: Optional[int] = None
    resize_to: Optional[int] = None
    objects_skipped: int = field(default=0, compare=False)  # VOC/KITTI objects of unknown classes

    @classmethod
    def for_data(cls, data: ExportData, chip_size: Optional[int] = None,
                 resize_to: Optional[int] = None) -> "SampleReader":
        chip_size = check_chip_size(data, chip_size)
        if resize_to is not None:
            try:
                resize_to = int(resize_to)
            except (TypeError, ValueError):
                raise InputError("RESIZE_TO", f"RESIZE_TO must be a whole number of pixels, not {resize_to!r}") \
                    from None
            if resize_to <= 0:
                raise InputError("RESIZE_TO", f"RESIZE_TO must be positive, not {resize_to}")
        instance_map = None
        if data.metadata_format == "Panoptic_Segmentation":
            instance_map = ClassMap.for_format(data.instance_classes, "PASCAL_VOC_rectangles")
        return cls(data.metadata_format, data.class_map(), instance_map, chip_size, resize_to)

    def read(self, ref: SampleRef, rng: Optional[np.random.Generator] = None) -> Sample:
        """One sample; ``rng`` places a random crop (training), None crops the centre."""
        image = read_image(ref.image)
        sample = Sample(ref.key, image, read_image(ref.image2) if ref.image2 else None)
        h, w = image.shape[1:]
        fmt = self.metadata_format
        if fmt in ("Classified_Tiles", "Panoptic_Segmentation"):
            sample.mask = self._mask(ref.label, h, w)
        if fmt == "RCNN_Masks":
            sample.instance_masks, sample.box_classes = self._instances(ref, self.class_map, h, w)
            sample.mask = _semantic(sample.instance_masks, sample.box_classes, h, w)
        elif fmt == "Panoptic_Segmentation":
            sample.instance_masks, sample.box_classes = self._instances(ref, self.instance_class_map, h, w)
        if sample.instance_masks is not None:
            sample.instance_masks, sample.boxes, sample.box_classes = _instance_boxes(sample.instance_masks,
                                                                                     sample.box_classes)
        elif fmt in ("PASCAL_VOC_rectangles", "KITTI_rectangles"):
            objects = read_box_label(fmt, ref.label)
            sample.boxes, sample.box_classes = self._boxes(objects)
        elif fmt == "Labeled_Tiles":
            objects = read_voc(ref.label)
            index = self.class_map.index_of_name(objects[0][0]) if objects else None
            sample.label = -1 if index is None else index
        elif fmt == "Imagenet":
            sample.label = self._folder_class(ref.class_name)
        elif fmt == "MultiLabeled_Tiles":
            sample.labels = self._multi_hot(read_voc(ref.label))
        return self._sized(sample, rng)

    # ---- labels ---------------------------------------------------------------------------

    def _mask(self, path: Optional[str], h: int, w: int) -> np.ndarray:
        if path is None:
            return np.zeros((h, w), np.int64)
        label = read_label_raster(path)[0]
        if label.shape != (h, w):
            raise InputError("IN_FOLDER", f"the label {path} is {label.shape[1]} x {label.shape[0]} pixels, its chip "
                                         f"{w} x {h}")
        return self.class_map.encode(label)

    def _instances(self, ref: SampleRef, class_map: Optional[ClassMap], h: int, w: int):
        masks, classes = [], []
        for folder, path in ref.instances:
            index = _class_of_folder(class_map, folder) if class_map is not None else None
            if index is None:
                continue
            ids = read_label_raster(path)  # (bands, h, w): overlapping instances in further bands
            for i in np.unique(ids):
                if i == 0:
                    continue
                masks.append((ids == i).any(0))
                classes.append(index)
        if not masks:
            return np.zeros((0, h, w), bool), np.zeros(0, np.int64)
        return np.stack(masks), np.asarray(classes, np.int64)

    def _boxes(self, objects) -> Tuple[np.ndarray, np.ndarray]:
        boxes, classes = [], []
        for name, box in objects:
            index = self.class_map.index_of_name(name)
            if index is None or box is None or not (box[2] > box[0] and box[3] > box[1]):
                self.objects_skipped += 1
                continue
            boxes.append(box)
            classes.append(index)
        return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int64))

    def _folder_class(self, name: Optional[str]) -> int:
        index = _class_of_folder(self.class_map, name) if name else None
        return -1 if index is None else index

    def _multi_hot(self, objects) -> np.ndarray:
        hot = np.zeros(self.class_map.num_classes, np.float32)
        for name, _ in objects:
            for part in name.split(","):
                index = self.class_map.index_of_name(part) if part.strip() else None
                if index is not None:
                    hot[index] = 1.0
        return hot

    # ---- size ------------------------------------------------------------------------------

    def _sized(self, sample: Sample, rng: Optional[np.random.Generator]) -> Sample:
        if self.resize_to:
            size = (self.resize_to, self.resize_to)
            if (sample.height, sample.width) != size:
                m = resize_matrix((sample.height, sample.width), size)
                fwd = resize_matrix(size, (sample.height, sample.width))
                sample = sample.resampled(m, size, fwd)
            return sample
        size = self.chip_size
        if not size or (sample.height, sample.width) == (size, size):
            return sample
        row = _offset(sample.height, size, rng)
        col = _offset(sample.width, size, rng)
        return sample.window(row, col, size, size)


def _offset(length: int, size: int, rng: Optional[np.random.Generator]) -> int:
    """Start of a window of ``size`` along ``length``: random (rng) or centred when the chip is
    larger; 0 (pad at the end) when it is smaller."""
    if length <= size:
        return 0
    if rng is None:
        return (length - size) // 2
    return int(rng.integers(0, length - size + 1))


def _class_of_folder(class_map: ClassMap, folder: str) -> Optional[int]:
    """Class index of a class folder name (labels/<name>/ or images/<name>/)."""
    index = class_map.index_of_name(folder)
    if index is not None:
        return index
    for i, c in enumerate(class_map.classes):
        if folder_key(c.name) == folder:
            return i + class_map.offset
    return None


def _semantic(masks: np.ndarray, classes: np.ndarray, h: int, w: int) -> np.ndarray:
    out = np.zeros((h, w), np.int64)
    for m, c in zip(masks, classes):
        out[m] = c
    return out


__all__ = ["Sample", "SampleReader", "check_chip_size", "read_image", "read_label_raster", "read_voc", "read_kitti"]
