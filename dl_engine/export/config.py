"""What an export is asked to do: plain dataclasses, filled by the Processing
algorithm, the command line or a script."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

from ..formats import METADATA_FORMATS  # noqa: F401 (the export's METADATA_FORMAT choices)

IMAGE_FORMATS = ("TIFF", "PNG", "JPEG", "MRF")
REFERENCE_SYSTEMS = ("MAP_SPACE", "PIXEL_SPACE")
PROCESSING_MODES = ("PROCESS_AS_MOSAICKED_IMAGE", "PROCESS_ITEMS_SEPARATELY")
CROP_MODES = ("FIXED_SIZE", "BOUNDING_BOX")
# Label fields found by name (any case) when CLASS_VALUE_FIELD is empty, first match wins:
# the integer class value (none found: every feature is class 1) and the class name. The
# QGIS side (layer_inputs) and the command line (geojson_labels) both read these.
CLASS_VALUE_FIELD_NAMES = ("classvalue", "value")
CLASS_NAME_FIELD_NAMES = ("classname", "class_name")


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


@dataclass
class ExportResult:
    out_folder: str
    num_tiles: int  # chips written by this run
    next_tile_index: int
    classes: List[ClassInfo]
