"""What an export is asked to do: plain dataclasses, filled by the Processing
algorithm, the command line or a script, with the parameters' defaults and value rules
(``ExportConfig.check``). Standard library only: QGIS's process imports it."""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

from .. import checks
from ..errors import InputError
from ..memory_budget import check_fits
from ..formats import METADATA_FORMATS, get_format  # noqa: F401 (METADATA_FORMATS: the export's choices)

IMAGE_FORMATS = ("TIFF", "PNG", "JPEG", "MRF")
REFERENCE_SYSTEMS = ("MAP_SPACE", "PIXEL_SPACE")
PROCESSING_MODES = ("PROCESS_AS_MOSAICKED_IMAGE", "PROCESS_ITEMS_SEPARATELY")
CROP_MODES = ("FIXED_SIZE", "BOUNDING_BOX")
# Value bounds of check() that QGIS's spin boxes show too.
TILE_SIZE_MINIMUM = 1  # TILE_SIZE_X/Y and STRIDE_X/Y, pixels
START_INDEX_MINIMUM = 0
OVERLAP_RATIO_RANGE = (0.0, 1.0)  # MIN_POLYGON_OVERLAP_RATIO
ROTATION_ANGLE_MAXIMUM = 360.0  # degrees, excluded
WORKERS_MINIMUM = 0  # PARALLEL_PROCESSING_FACTOR: 0 = every core
# Label fields found by name (any case) when CLASS_VALUE_FIELD is empty, first match wins:
# the integer class value (none found: every feature is class 1) and the class name. The
# QGIS side (layer_inputs) and the command line (geojson_labels) both read these.
CLASS_VALUE_FIELD_NAMES = ("classvalue", "value")
CLASS_NAME_FIELD_NAMES = ("classname", "class_name")


def chip_bytes(tile_x: int, tile_y: int, bands: int = 1, itemsize: int = 1, workers: int = 1,
               rotated: bool = False) -> int:
    """What cutting chips holds at once: per worker one chip's bands twice (read, then warped
    or written) and its label as 64-bit integers while it is rasterised; a rotated chip reads
    the window around it (up to twice the area)."""
    return int(tile_x) * int(tile_y) * (2 * bands * itemsize + 8) * max(workers, 1) * (2 if rotated else 1)


@dataclass
class ClassInfo:
    value: int
    name: Optional[str] = None  # None: the value as text
    color: Optional[Tuple[int, int, int]] = None  # None: [-1, -1, -1] (arcgis.learn picks one)

    @property
    def label(self) -> str:
        return self.name if self.name else str(self.value)


@dataclass
class VectorLabels:
    """Label features already in the raster's CRS (points/lines already buffered).

    Geometries are kept as WKB and decoded per chip, so a large layer costs its
    encoded size, not a Python object per vertex.
    """

    wkb: List[bytes]
    values: Sequence[int]
    classes: List[ClassInfo] = field(default_factory=list)  # names/colours; values seen are added


@dataclass
class RasterLabels:
    """A classified (thematic) raster; read onto the chip grid by nearest neighbour."""

    path: str
    classes: List[ClassInfo] = field(default_factory=list)  # names/colours, e.g. from a palette
    band: int = 1


@dataclass
class ExportConfig:
    raster: str  # anything GDAL opens
    out_folder: str
    metadata_format: str = "PASCAL_VOC_rectangles"
    labels: Optional[object] = None  # VectorLabels | RasterLabels | None
    image_format: str = "TIFF"
    tile_size_x: int = 256
    tile_size_y: int = 256
    stride_x: int = 128
    stride_y: int = 128
    output_nofeature_tiles: bool = False
    start_index: int = 0
    mask_wkb: Optional[List[bytes]] = None  # polygons in the raster's CRS
    min_polygon_overlap_ratio: float = 0.0
    reference_system: str = "MAP_SPACE"
    raster2: Optional[str] = None
    extent: Optional[Tuple[float, float, float, float]] = None  # xmin, ymin, xmax, ymax in the raster CRS
    cell_size: Optional[float] = None  # map units of the raster CRS
    workers: int = 0  # 0 = every core
    band_names: Optional[List[str]] = None  # InputRastersProps.BandNames; default from the raster
    rotation_angle: float = 0.0  # degrees; extra copies at every multiple below 360
    processing_mode: str = "PROCESS_AS_MOSAICKED_IMAGE"
    crop_mode: str = "FIXED_SIZE"  # Labeled_Tiles / MultiLabeled_Tiles / Imagenet
    blacken_around_feature: bool = False  # Labeled_Tiles / Imagenet: pixels outside the feature set to 0
    instance_labels: Optional[VectorLabels] = None  # Panoptic_Segmentation instances (IN_INSTANCE_DATA)
    # The CRS assumed for a raster that has none (the label layer's, as "EPSG:32617" or WKT); None: none
    assumed_crs: Optional[str] = None

    def check(self) -> None:
        """Every rule on a single value, before anything is read or written; raises
        InputError(PARAMETER, message). What needs the raster or the labels (chip format
        against the bands, EXTENT against the raster, labels present for the format, the
        existing OUT_FOLDER) is checked by ``run_export``."""
        checks.text_given("IN_RASTER", self.raster, "give a raster GDAL can open")
        checks.text_given("OUT_FOLDER", self.out_folder, "give the folder to write the export to")
        get_format(self.metadata_format)
        checks.one_of("IMAGE_CHIP_FORMAT", self.image_format, IMAGE_FORMATS)
        for name, value in (("TILE_SIZE_X", self.tile_size_x), ("TILE_SIZE_Y", self.tile_size_y),
                            ("STRIDE_X", self.stride_x), ("STRIDE_Y", self.stride_y)):
            checks.whole_number(name, value, minimum=TILE_SIZE_MINIMUM)
        checks.whole_number("START_INDEX", self.start_index, minimum=START_INDEX_MINIMUM)
        checks.number_between("MIN_POLYGON_OVERLAP_RATIO", self.min_polygon_overlap_ratio, *OVERLAP_RATIO_RANGE,
                              "the share of a feature that must lie inside a chip")
        checks.one_of("REFERENCE_SYSTEM", self.reference_system, REFERENCE_SYSTEMS)
        checks.one_of("PROCESSING_MODE", self.processing_mode, PROCESSING_MODES)
        checks.one_of("CROP_MODE", self.crop_mode, CROP_MODES)
        angle = self.rotation_angle
        if not (isinstance(angle, numbers.Real) and not isinstance(angle, bool) and not math.isnan(angle)
                and (angle == 0 or 0 < angle < ROTATION_ANGLE_MAXIMUM)):
            raise InputError("ROTATION_ANGLE", f"must be 0 (no rotated copies) or an angle between 0 and 360 degrees "
                                               f"(exclusive); got {angle!r}")
        checks.whole_number("PARALLEL_PROCESSING_FACTOR", self.workers, minimum=WORKERS_MINIMUM, what="0 = every core")
        self.check_memory()
        checks.extent(self.extent)
        if self.cell_size is not None:
            if self.reference_system == "PIXEL_SPACE":
                raise InputError("CELL_SIZE", "resampling is not available in PIXEL_SPACE (chips keep the image's own "
                                              "pixels); leave CELL_SIZE empty or use MAP_SPACE")
            checks.positive_number("CELL_SIZE", self.cell_size, "map units of the raster's CRS, or empty for the "
                                                                "raster's own")

    def check_memory(self, bands: int = 1, itemsize: int = 1) -> None:
        """TILE_SIZE_X x TILE_SIZE_Y chips, one per worker, fit in memory (``chip_bytes``). Before the
        raster is read: for one 8-bit band (only sizes no raster could cut are refused); the run checks
        again with the raster's bands and data type. The larger side is the one named."""
        workers = int(self.workers) or os.cpu_count() or 1
        rotated = bool(self.rotation_angle)
        what = (f"{workers} worker(s) (PARALLEL_PROCESSING_FACTOR) each holding one {bands}-band chip of "
                f"{itemsize}-byte pixels and its label"
                + (", rotated" if rotated else ""))
        x, y = int(self.tile_size_x), int(self.tile_size_y)
        if x == y:  # square tiles, as usual: the largest square that fits
            check_fits("TILE_SIZE_X", x, lambda v: chip_bytes(v, v, bands, itemsize, workers, rotated), what,
                       shown=f"{x} (and TILE_SIZE_Y {y})")
        if x >= y:
            check_fits("TILE_SIZE_X", x, lambda v: chip_bytes(v, y, bands, itemsize, workers, rotated), what,
                       shown=f"{x} (with TILE_SIZE_Y {y})")
        check_fits("TILE_SIZE_Y", y, lambda v: chip_bytes(x, v, bands, itemsize, workers, rotated), what,
                   shown=f"{y} (with TILE_SIZE_X {x})")
        if x < y:
            check_fits("TILE_SIZE_X", x, lambda v: chip_bytes(v, y, bands, itemsize, workers, rotated), what)

    def warnings(self) -> List[str]:
        """What the run does that the user may not expect (given once in its log as warnings)."""
        found = []
        for axis, tile, stride in (("X", self.tile_size_x, self.stride_x), ("Y", self.tile_size_y, self.stride_y)):
            if stride > tile and not get_format(self.metadata_format).feature_chips:
                found.append(f"STRIDE_{axis} {stride} is larger than TILE_SIZE_{axis} {tile}: a strip of "
                             f"{stride - tile} px between neighbouring chips is skipped, so parts of the raster are "
                             f"in no chip; set STRIDE_{axis} to {tile} or less to cover the whole raster")
        return found


@dataclass
class ExportResult:
    out_folder: str
    num_tiles: int  # chips written by this run
    next_tile_index: int
    classes: List[ClassInfo]
