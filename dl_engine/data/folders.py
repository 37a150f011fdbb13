"""Open export folders written by Export Training Data For Deep Learning — ours or
ArcGIS Pro's — the way arcgis.learn's ``prepare_data`` reads them
(shared/reference/esri-formats.md §1 and §5).

- An export is recognised by its three Esri files: ``esri_model_definition.emd``,
  ``map.txt`` and ``esri_accumulated_stats.json``.
- Samples come from ``map.txt`` (tokens split on whitespace before ``images``/``labels``
  prefixes, backslashes or slashes, CRLF or LF, 9- or 12-digit stems, any image
  extension). Like arcgis.learn, chips found in ``images/`` that map.txt does not list
  are read too, so a Pro export whose map.txt lists fewer lines (or none) still trains.
- A chip whose label file is missing is skipped, with a warning giving the count.
- Several folders (``"a;b"`` or a list) must share MetaDataMode, NumBands and tile size;
  their classes are merged by value and their band statistics merged exactly.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

import numpy as np

from .band_stats import BandStats
from ..formats import (EMD, ESRI_FILES, FORMATS, IMAGE_EXTENSIONS, IMAGES, IMAGES2, LABELS, LABELS2, MAP_TXT,
                       METADATA_FORMATS, STATS_JSON, folder_key, raster_label_extensions)
from .classes import ClassDef, ClassMap, merge_classes
from ..errors import DataWarning, InputError

ACCEPTED = ("IN_FOLDER takes a folder written by Export Training Data For Deep Learning (QGIS or ArcGIS Pro): "
            "it holds images/, labels/ (for labelled formats), map.txt, esri_accumulated_stats.json and "
            "esri_model_definition.emd; several folders are separated by ';'")

_PREFIX = re.compile(r"^(images2?|labels2?)[\\/]", re.IGNORECASE)
_SPLIT = re.compile(r"\s+(?=(?:images2?|labels2?)[\\/])", re.IGNORECASE)
@dataclass(frozen=True)
class SampleRef:
    """Where one sample's files are. Paths are absolute."""

    key: str  # "<export folder name>/<image path in the export>": stable for the split
    stem: str
    image: str
    image2: Optional[str] = None
    label: Optional[str] = None  # label file (Classified/Panoptic semantic, VOC, KITTI, Labeled…)
    class_name: Optional[str] = None  # Imagenet: the image's folder name
    instances: Tuple[Tuple[str, str], ...] = ()  # RCNN_Masks / Panoptic: (class folder, mask file)
    folder: int = 0  # index of its export in ExportData.folders


@dataclass
class ExportFolder:
    """One export folder as read from its Esri files."""

    path: str
    metadata_format: str
    num_bands: int
    tile_size_x: int
    tile_size_y: int
    image_space: str  # MAP_SPACE / PIXEL_SPACE
    crop_tile_mode: str  # Fixed_Size / Variable_Size
    classes: List[ClassDef]
    instance_classes: List[ClassDef]  # Panoptic_Segmentation_Instance_Classes
    band_names: List[str]
    sensor_name: str
    band_stats: Optional[BandStats]  # None: the export has none (Pro 2.x)
    dtype: str  # data type of the chips (first chip)
    samples: List[SampleRef]
    warnings: List[str] = field(default_factory=list)
    emd: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)


@dataclass
class ExportData:
    """One or several export folders read as one training set."""

    folders: List[ExportFolder]
    metadata_format: str
    num_bands: int
    tile_size_x: int
    tile_size_y: int
    image_space: str
    crop_tile_mode: str
    classes: List[ClassDef]
    instance_classes: List[ClassDef]
    band_names: List[str]
    band_stats: Optional[BandStats]
    dtype: str
    samples: List[SampleRef]
    warnings: List[str] = field(default_factory=list)

    @property
    def paths(self) -> List[str]:
        return [f.path for f in self.folders]

    def class_map(self) -> ClassMap:
        return ClassMap.for_format(self.classes, self.metadata_format)

    @property
    def has_images2(self) -> bool:
        return any(s.image2 for s in self.samples)


# ---- entry points -------------------------------------------------------------------------------

def split_folder_list(spec: Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]) -> List[str]:
    """IN_FOLDER as a list: ``"a;b"``, a list of paths, or one path. Quotes and blanks are dropped."""
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec or [])
    out = []
    for item in items:
        for part in str(os.fspath(item)).split(";"):
            part = part.strip().strip('"').strip("'").strip()
            if part:
                out.append(part)
    if not out:
        raise InputError("IN_FOLDER", "no folder given. " + ACCEPTED)
    return out


def open_folders(spec: Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]],
                 warn: bool = True) -> ExportData:
    """Open one export folder or several (``"a;b"`` or a list) as one training set."""
    paths = []
    seen = set()
    for p in split_folder_list(spec):
        real = os.path.realpath(p)
        if real not in seen:
            seen.add(real)
            paths.append(p)
    folders = [open_folder(p, warn=warn) for p in paths]
    return merge_folders(folders, warn=warn)


def open_folder(path: Union[str, os.PathLike], warn: bool = True) -> ExportFolder:
    """Read one export folder: its Esri files and the list of its samples."""
    path = _check_folder(os.fspath(path))
    emd = _read_json(path, EMD)
    stats = _read_json(path, STATS_JSON)
    fmt = stats.get("MetaDataMode") or emd.get("MetaDataMode")
    if fmt not in FORMATS:
        raise InputError("IN_FOLDER", f"{path}: unknown MetaDataMode {fmt!r} in {STATS_JSON}; known: "
                                     f"{', '.join(METADATA_FORMATS)}")
    if fmt == "CycleGAN":
        raise InputError("IN_FOLDER", f"{path} is a CycleGAN export's half; this training reads labelled exports")

    notes: List[str] = []
    classes = _classes(emd.get("Classes") or stats.get("Classes") or [])
    instance_classes = _classes(emd.get("Panoptic_Segmentation_Instance_Classes") or [])
    samples = _samples(path, fmt, classes, notes)
    if not samples:
        raise InputError("IN_FOLDER", f"{path}: {MAP_TXT} lists no chips and images/ holds none"
                                     f" (image files {', '.join(IMAGE_EXTENSIONS)} are read). " + ACCEPTED)
    if fmt == "Imagenet" and not classes:
        names = sorted({s.class_name for s in samples if s.class_name})
        classes = [ClassDef(i + 1, n) for i, n in enumerate(names)]  # arcgis.learn: {1..n} from folder names

    count, dtype, width, height = _first_chip(samples[0].image)
    num_bands = _int(stats.get("NumBands")) or count
    tile_x = _int(stats.get("TileSizeX")) or _int(emd.get("ImageWidth")) or width
    tile_y = _int(stats.get("TileSizeY")) or _int(emd.get("ImageHeight")) or height
    props = emd.get("InputRastersProps") or stats.get("InputRastersProps") or {}
    band_names = [str(b) for b in props.get("BandNames", [])] or [""] * num_bands

    folder = ExportFolder(
        path=path, metadata_format=fmt, num_bands=num_bands, tile_size_x=tile_x, tile_size_y=tile_y,
        image_space=str(emd.get("ImageSpaceUsed") or "MAP_SPACE"),
        crop_tile_mode=str(emd.get("CropTileMode") or "Fixed_Size"),
        classes=classes, instance_classes=instance_classes, band_names=band_names,
        sensor_name=str(props.get("SensorName") or ""),
        band_stats=_band_stats(emd, stats, num_bands, tile_x, tile_y),
        dtype=dtype, samples=samples, warnings=notes, emd=emd, stats=stats)
    if warn:
        for n in notes:
            warnings.warn(n, DataWarning, stacklevel=2)
    return folder


def merge_folders(folders: Sequence[ExportFolder], warn: bool = True) -> ExportData:
    """Several exports as one: same format, band count and tile size, else InputError(IN_FOLDER)."""
    first = folders[0]
    for f in folders[1:]:
        for what, mine, theirs in (("MetaDataMode", first.metadata_format, f.metadata_format),
                                   ("NumBands", first.num_bands, f.num_bands),
                                   ("tile size", (first.tile_size_x, first.tile_size_y),
                                    (f.tile_size_x, f.tile_size_y))):
            if mine != theirs:
                raise InputError("IN_FOLDER", f"the folders disagree: {what} is {_show(mine)} in {first.path} and "
                                             f"{_show(theirs)} in {f.path}; folders trained together must have "
                                             "the same metadata format, band count and tile size")
    notes = [n for f in folders for n in f.warnings]
    classes, class_notes = merge_classes([f.classes for f in folders])
    instance_classes, _ = merge_classes([f.instance_classes for f in folders])
    spaces = {f.image_space for f in folders}
    image_space = "PIXEL_SPACE" if "PIXEL_SPACE" in spaces else first.image_space
    if len(spaces) > 1:
        class_notes.append("the folders mix MAP_SPACE and PIXEL_SPACE chips; they are treated as PIXEL_SPACE "
                           "(no flips or rotations in DEFAULT augmentation)")
    stats = [f.band_stats for f in folders]
    band_stats = BandStats.merge_all(stats) if all(s is not None for s in stats) else None
    dtypes = {f.dtype for f in folders}
    dtype = np.result_type(*[np.dtype(d) for d in dtypes]).name if len(dtypes) > 1 else first.dtype
    # Keys start with the folder's name; folders of the same name are told apart by their path.
    names = [os.path.basename(f.path.rstrip(os.sep)) for f in folders]
    samples = []
    for i, f in enumerate(folders):
        prefix = f.path.replace(os.sep, "/") if names.count(names[i]) > 1 else None
        for s in f.samples:
            key = s.key if prefix is None else prefix + s.key[len(names[i]):]
            samples.append(SampleRef(key, s.stem, s.image, s.image2, s.label, s.class_name, s.instances, i))
    if warn:
        for n in class_notes:
            warnings.warn(n, DataWarning, stacklevel=2)
    return ExportData(
        folders=list(folders), metadata_format=first.metadata_format, num_bands=first.num_bands,
        tile_size_x=first.tile_size_x, tile_size_y=first.tile_size_y, image_space=image_space,
        crop_tile_mode="Variable_Size" if any(f.crop_tile_mode == "Variable_Size" for f in folders)
        else first.crop_tile_mode,
        classes=classes, instance_classes=instance_classes, band_names=first.band_names, band_stats=band_stats,
        dtype=dtype, samples=samples, warnings=notes + class_notes)


# ---- checks and Esri files ----------------------------------------------------------------------

def _check_folder(path: str) -> str:
    if os.path.isfile(path) and os.path.basename(path) in ESRI_FILES:
        path = os.path.dirname(path) or "."  # an Esri file of the export was given
    if not os.path.exists(path):
        raise InputError("IN_FOLDER", f"{path} does not exist. " + ACCEPTED)
    if not os.path.isdir(path):
        raise InputError("IN_FOLDER", f"{path} is not a folder. " + ACCEPTED)
    path = os.path.abspath(path)
    entries = [e for e in os.listdir(path) if not e.startswith(".")]
    if not entries:
        raise InputError("IN_FOLDER", f"{path} is empty. " + ACCEPTED)
    missing = [f for f in ESRI_FILES if not os.path.isfile(os.path.join(path, f))]
    if not missing:
        return path
    if all(os.path.isfile(os.path.join(path, half, f)) for half in ("A", "B") for f in ESRI_FILES):
        raise InputError("IN_FOLDER", f"{path} is a CycleGAN export (A/ and B/, two unpaired exports); this training "
                                     "reads labelled exports")
    parent = os.path.dirname(path)
    if os.path.basename(path).lower() in (IMAGES, LABELS, IMAGES2, LABELS2) and \
            all(os.path.isfile(os.path.join(parent, f)) for f in ESRI_FILES):
        raise InputError("IN_FOLDER", f"{path} is the {os.path.basename(path)}/ folder of an export; give the "
                                     f"export folder itself: {parent}")
    raise InputError("IN_FOLDER", f"{path} is not an export folder: {', '.join(missing)} missing. " + ACCEPTED)


def _read_json(folder: str, name: str) -> dict:
    path = os.path.join(folder, name)
    try:
        with open(path, "rb") as f:
            raw = f.read()
        data = json.loads(raw.decode("utf-8-sig", errors="replace"))
    except (OSError, ValueError) as e:
        raise InputError("IN_FOLDER", f"{path} cannot be read as JSON ({e}). " + ACCEPTED) from None
    if not isinstance(data, dict):
        raise InputError("IN_FOLDER", f"{path} does not hold a JSON object. " + ACCEPTED)
    return data


def _int(v) -> Optional[int]:
    """A positive integer, or None for placeholders like "e.g. 256"."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)) and v > 0:
        return int(v)
    if isinstance(v, str) and v.strip().isdigit():
        return int(v.strip())
    return None


def _show(v) -> str:
    return f"{v[0]} x {v[1]}" if isinstance(v, tuple) else str(v)


def _color(c) -> Optional[Tuple[int, int, int]]:
    try:
        rgb = tuple(int(v) for v in c)
    except (TypeError, ValueError):
        return None
    if len(rgb) != 3 or any(v < 0 or v > 255 for v in rgb):
        return None  # [-1, -1, -1]: no colour
    return rgb


def _classes(items) -> List[ClassDef]:
    """emd ``Classes`` (Value/Name/Color) or stats ``Classes`` (ClassValue/ClassName)."""
    out, seen = [], set()
    for d in items if isinstance(items, list) else []:
        if not isinstance(d, dict):
            continue
        value = d.get("Value", d.get("ClassValue"))
        try:
            value = int(value)
        except (TypeError, ValueError):
            continue
        if value in seen:
            continue
        seen.add(value)
        name = d.get("Name", d.get("ClassName"))
        out.append(ClassDef(value, str(name) if name not in (None, "") else str(value), _color(d.get("Color"))))
    return out


def _band_stats(emd: dict, stats: dict, bands: int, tile_x: int, tile_y: int) -> Optional[BandStats]:
    state = stats.get("BandStatsState")
    if isinstance(state, list) and state and all(isinstance(d, dict) and "M1" in d for d in state):
        return BandStats.from_state_json(state)
    tiles = emd.get("AllTilesStats")
    if isinstance(tiles, list) and tiles and all(isinstance(d, dict) and isinstance(d.get("Mean"), (int, float))
                                                 for d in tiles):
        num = max(1, int(stats.get("NumTiles") or 1)) * tile_x * tile_y
        return BandStats.from_all_tiles_json(tiles, num)
    return None


def _first_chip(path: str) -> Tuple[int, str, int, int]:
    import rasterio

    try:
        with rasterio.open(path) as src:
            return src.count, src.dtypes[0], src.width, src.height
    except Exception as e:  # rasterio.errors.RasterioIOError and GDAL's own
        raise InputError("IN_FOLDER", f"the chip {path} cannot be read: {e}") from None


# ---- samples ------------------------------------------------------------------------------------

class _Dirs:
    """Directory listings, read once: which files exist."""

    def __init__(self):
        self._cache: Dict[str, Set[str]] = {}

    def names(self, folder: str) -> Set[str]:
        if folder not in self._cache:
            try:
                self._cache[folder] = set(os.listdir(folder))
            except OSError:
                self._cache[folder] = set()
        return self._cache[folder]

    def exists(self, path: str) -> bool:
        return os.path.basename(path) in self.names(os.path.dirname(path))


def map_tokens(line: str) -> List[str]:
    r"""The paths of one map.txt line. Pro separates them by one or two spaces; a path may
    itself hold spaces (an Imagenet class folder), so the line is split only where an
    ``images``/``labels`` token begins, unless the line does not use those prefixes."""
    line = line.strip()
    if not line:
        return []
    parts = _SPLIT.split(line)
    if not _PREFIX.match(parts[0]):
        return line.split()
    return [p.strip() for p in parts if p.strip()]


def read_map_txt(folder: str) -> List[List[str]]:
    """Token lists of the lines of map.txt (CRLF or LF; UTF-8, else Windows-1252)."""
    with open(os.path.join(folder, MAP_TXT), "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("cp1252", errors="replace")
    return [t for t in (map_tokens(line) for line in text.splitlines()) if t]


def _local(folder: str, token: str) -> str:
    return os.path.normpath(os.path.join(folder, *re.split(r"[\\/]+", token)))


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def _samples(folder: str, fmt: str, classes: List[ClassDef], notes: List[str]) -> List[SampleRef]:
    dirs = _Dirs()
    images_dir = os.path.join(folder, IMAGES)
    name = os.path.basename(folder.rstrip(os.sep)) or folder
    entries: List[Tuple[str, Optional[str], Optional[str], bool]] = []  # image, image2, label, from map.txt
    listed = set()
    missing_images = []
    for tokens in read_map_txt(folder):
        image = _local(folder, tokens[0])
        if image in listed:
            continue
        image2 = label = None
        for t in tokens[1:]:
            low = t.lower()
            if low.startswith(("images2\\", "images2/")):
                image2 = _local(folder, t)
            elif low.startswith(("labels2\\", "labels2/")):
                continue
            elif label is None:
                label = _local(folder, t)
        listed.add(image)
        if not dirs.exists(image):
            missing_images.append(image)
            continue
        entries.append((image, image2, label, True))
    if missing_images:
        notes.append(f"{len(missing_images)} chip(s) listed in {folder}{os.sep}{MAP_TXT} do not exist "
                     f"(e.g. {missing_images[0]}); they are skipped")

    # Like arcgis.learn, read every chip in images/, also those map.txt does not list.
    extra = []
    for root, dnames, fnames in os.walk(images_dir):
        dnames.sort()
        for f in sorted(fnames):
            p = os.path.normpath(os.path.join(root, f))
            if _is_image(f) and p not in listed:
                extra.append(p)
    if extra:
        if entries:
            notes.append(f"{len(extra)} chip(s) in {images_dir} are not listed in {MAP_TXT}; they are read too, "
                         "as arcgis.learn reads images/")
        for p in extra:
            entries.append((p, None, None, False))

    rcnn_dirs = _class_dirs(os.path.join(folder, LABELS)) if fmt == "RCNN_Masks" else []
    panoptic_dirs = _class_dirs(os.path.join(folder, "labels2")) if fmt == "Panoptic_Segmentation" else []
    samples, no_label = [], []
    for image, image2, label, _from_map in entries:
        stem = _stem(image)
        if image2 is None:
            image2 = _guess(dirs, os.path.join(folder, "images2"), stem, (os.path.splitext(image)[1][1:],))
        elif not dirs.exists(image2):
            image2 = None
        class_name = None
        instances: Tuple[Tuple[str, str], ...] = ()
        if fmt == "Imagenet":
            rel = os.path.relpath(os.path.dirname(image), images_dir)
            class_name = None if rel in (".", "") else rel.split(os.sep)[0]
            if class_name is None:
                no_label.append(image)
                continue
            label = None
        elif fmt == "RCNN_Masks":
            instances = _instances(dirs, rcnn_dirs, stem, image)
            if label is not None and not dirs.exists(label):
                no_label.append(label)
                continue
            label = None
        elif FORMATS[fmt].needs_label:
            if label is None:
                exts = FORMATS[fmt].label_file_extensions(os.path.splitext(image)[1])
                label = _guess(dirs, os.path.join(folder, LABELS), stem, exts)
            if label is None or not dirs.exists(label):
                no_label.append(label or os.path.join(folder, LABELS, stem + ".*"))
                continue
            if fmt == "Panoptic_Segmentation":
                instances = _instances(dirs, panoptic_dirs, stem, image)
        else:
            label = None  # Export_Tiles
        rel = os.path.relpath(image, folder).replace(os.sep, "/")
        samples.append(SampleRef(f"{name}/{rel}", stem, image, image2, label, class_name, instances))
    if no_label:
        notes.append(f"{len(no_label)} of {len(no_label) + len(samples)} chip(s) in {folder} have no label file "
                     f"(e.g. {no_label[0]}); they are skipped, as arcgis.learn does")
    return samples



def _guess(dirs: _Dirs, folder: str, stem: str, exts: Iterable[str]) -> Optional[str]:
    names = dirs.names(folder)
    for ext in exts:
        for candidate in (f"{stem}.{ext}", f"{stem}.{ext.upper()}"):
            if candidate in names:
                return os.path.join(folder, candidate)
    return None


def _class_dirs(folder: str) -> List[str]:
    try:
        return sorted(os.path.join(folder, d) for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    except OSError:
        return []


def _instances(dirs: _Dirs, class_dirs: List[str], stem: str, image: str) -> Tuple[Tuple[str, str], ...]:
    out = []
    for d in class_dirs:
        p = _guess(dirs, d, stem, raster_label_extensions(os.path.splitext(image)[1]))
        if p:
            out.append((os.path.basename(d), p))
    return tuple(out)


__all__ = ["SampleRef", "ExportFolder",
           "ExportData", "split_folder_list", "open_folders", "open_folder", "merge_folders", "read_map_txt",
           "map_tokens", "folder_key"]
