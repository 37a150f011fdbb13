"""Esri class conventions (shared/reference/esri-formats.md §5.3-5.4).

- Pixel formats (Classified_Tiles, RCNN_Masks, Panoptic_Segmentation): label pixel 0 is
  background / NoData and never a class; the model's index 0 is "NoData" and the classes
  are indices 1..K in the order of the export's emd. Label values not in the class list
  become 0 (arcgis.learn's ``map_to_contiguous``).
- Detection formats (PASCAL_VOC_rectangles, KITTI_rectangles): index 0 is "background",
  the classes are 1..K.
- Tile classification (Labeled_Tiles, MultiLabeled_Tiles, Imagenet): every class is an
  index, 0..K-1, with no background.

``ClassMap`` holds that mapping both ways: label pixel values / names → contiguous
indices for training, and indices → class values for output (what a classified raster
or a detection's class holds).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..formats import family_of

BACKGROUND_NAME = {"pixel": "NoData", "detection": "background"}

_LUT_LIMIT = 1 << 20  # label values up to this use a lookup table, larger ones a search


@dataclass(frozen=True)
class ClassDef:
    """One class of an export: its value (label pixel / VOC name), name and colour
    (None where the export says [-1, -1, -1]: no colour)."""

    value: int
    name: str
    color: Optional[Tuple[int, int, int]] = None

    def emd(self, color: Optional[Sequence[int]] = None) -> dict:
        c = self.color if self.color is not None else color
        return {"Value": int(self.value), "Name": self.name, "Color": [int(v) for v in c] if c else [-1, -1, -1]}


@dataclass(frozen=True)
class ClassMap:
    """Contiguous training indices for the classes of an export.

    ``classes`` are the model's classes in index order; with ``background`` true they
    are indices 1..K and index 0 is background/NoData, else 0..K-1.
    """

    classes: Tuple[ClassDef, ...]
    background: bool
    kind: str = "pixel"

    @classmethod
    def for_format(cls, classes: Sequence[ClassDef], metadata_format: str) -> "ClassMap":
        kind = family_of(metadata_format)
        if kind == "pixel":
            classes = [c for c in classes if c.value != 0]  # 0 is NoData, not a class
        return cls(tuple(classes), background=kind in ("pixel", "detection"), kind=kind)

    # ---- sizes and names --------------------------------------------------------------------

    @property
    def offset(self) -> int:
        return 1 if self.background else 0

    @property
    def num_classes(self) -> int:
        """Number of model outputs: K, plus one for background where there is one."""
        return len(self.classes) + self.offset

    @property
    def names(self) -> List[str]:
        """Name of each index (index 0 "NoData"/"background" where there is one)."""
        head = [BACKGROUND_NAME.get(self.kind, "background")] if self.background else []
        return head + [c.name for c in self.classes]

    @property
    def values(self) -> List[int]:
        return [c.value for c in self.classes]

    @property
    def is_contiguous(self) -> bool:
        """True when index == class value for every class (no remapping needed on output)."""
        return self.values == list(range(self.offset, self.offset + len(self.classes)))

    # ---- lookups ----------------------------------------------------------------------------

    def _by_value(self) -> Dict[int, int]:
        return {c.value: i + self.offset for i, c in enumerate(self.classes)}

    def index_of_value(self, value: int) -> Optional[int]:
        return self._by_value().get(int(value))

    def index_of_name(self, text: str) -> Optional[int]:
        """Index of a class given by name or by value as text (VOC ``<name>`` holds either,
        Imagenet folders and MultiLabeled names hold names). The value wins when a text
        is both a value and some other class's name, as arcgis.learn's class_mapping does."""
        text = str(text).strip()
        try:
            index = self.index_of_value(int(text))
            if index is not None:
                return index
        except ValueError:
            pass
        for i, c in enumerate(self.classes):
            if c.name == text:
                return i + self.offset
        lowered = text.lower()
        for i, c in enumerate(self.classes):
            if c.name.lower() == lowered:
                return i + self.offset
        return None

    def value_of_index(self, index: int) -> int:
        """Class value of a training index (0 for background)."""
        index = int(index)
        if self.background and index == 0:
            return 0
        return self.classes[index - self.offset].value

    # ---- arrays -----------------------------------------------------------------------------

    def encode(self, label: np.ndarray) -> np.ndarray:
        """Label pixel values → int64 indices; 0 and values of no class → 0."""
        label = np.asarray(label)
        values = np.array(self.values, dtype=np.int64)
        indices = np.arange(self.offset, self.offset + len(values), dtype=np.int64)
        if len(values) == 0:
            return np.zeros(label.shape, np.int64)
        if label.dtype.kind == "f":
            label = np.where(np.isfinite(label), label, -1).astype(np.int64)
        vmax = int(values.max())
        if values.min() >= 0 and vmax < _LUT_LIMIT:
            lut = np.zeros(vmax + 1, np.int64)
            lut[values] = indices
            inside = (label >= 0) & (label <= vmax)
            return np.where(inside, lut[np.clip(label, 0, vmax)], 0).astype(np.int64, copy=False)
        order = np.argsort(values)
        sorted_values = values[order]
        pos = np.clip(np.searchsorted(sorted_values, label), 0, len(values) - 1)
        hit = sorted_values[pos] == label
        return np.where(hit, indices[order][pos], 0).astype(np.int64, copy=False)

    def decode(self, indices: np.ndarray, dtype=None) -> np.ndarray:
        """Training indices → class values (background 0 stays 0), for output rasters."""
        table = np.array(([0] if self.background else []) + self.values, dtype=np.int64)
        indices = np.asarray(indices)
        out = table[np.clip(indices, 0, len(table) - 1)]
        if dtype is None:  # the smallest type of a classified raster that holds every value
            lo, hi = table.min(initial=0), table.max(initial=0)
            dtype = np.uint8 if lo >= 0 and hi <= 255 else np.uint16 if lo >= 0 and hi <= 65535 else np.int64
        return out.astype(dtype)

    def emd_classes(self, seed: int = 0) -> List[dict]:
        """The trained emd's ``Classes``: every model class (background left out) with its
        export colour, or a random one where the export had none (as arcgis.learn does;
        seeded so a package is reproducible)."""
        rng = random.Random(seed)
        out = []
        for c in self.classes:
            color = [rng.randrange(256) for _ in range(3)]  # drawn for every class: stable per position
            out.append(c.emd(color))
        return out


def merge_classes(lists: Sequence[Sequence[ClassDef]]) -> Tuple[List[ClassDef], List[str]]:
    """Classes of several exports merged by value. One export: its own order. Several:
    sorted by value, as arcgis.learn's ``merge_emd_and_stats`` does. Returns the classes
    and notes about conflicting names (the first export's name is kept)."""
    by_value: Dict[int, ClassDef] = {}
    notes = []
    for classes in lists:
        for c in classes:
            have = by_value.get(c.value)
            if have is None:
                by_value[c.value] = c
            elif have.name != c.name:
                notes.append(f"class value {c.value} is named {have.name!r} in one folder and {c.name!r} in "
                             f"another; {have.name!r} is used")
            elif have.color is None and c.color is not None:
                by_value[c.value] = c
    if len(lists) == 1:
        return list(by_value.values()), notes
    return [by_value[v] for v in sorted(by_value)], notes
