"""What the two accuracy tools are asked to do: plain dataclasses, filled by the Processing
algorithms (QGIS layers already read and reprojected into one CRS) or by a script, with the
parameters' defaults and value rules (``check()`` raises ``InputError(PARAMETER, message)``).
Standard library only: QGIS's process imports it."""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, field
from typing import List, Optional

from .. import checks
from ..errors import InputError

# ---- Compute Accuracy For Object Detection ------------------------------------------------------

# OUT_ACCURACY_TABLE's fields, as ArcGIS names them: one row per class, then the ALL_CLASSES row.
DETECTION_FIELDS = ("Class", "Precision", "Recall", "F1_Score", "AP", "True_Positive", "False_Positive",
                    "False_Negative")
ALL_CLASSES = "All"  # the Class of the overall row
SINGLE_CLASS = "1"  # the class of every feature when neither class value field is given
# The detections' confidence field, found by name (any case; first match wins). Detect Objects Using
# Deep Learning writes CONFIDENCE_SCORE_FIELD, `Confidence` by default.
CONFIDENCE_FIELD_NAMES = ("confidence", "score")
REPORT_EXTENSIONS = (".html", ".htm", ".pdf")


@dataclass
class DetectedObject:
    """One detection: a polygon (WKB, in the run's CRS), its class and its confidence."""

    wkb: bytes
    class_value: str = SINGLE_CLASS
    confidence: float = 1.0


@dataclass
class TruthObject:
    """One ground-truth object: a polygon (WKB, in the run's CRS) and its class."""

    wkb: bytes
    class_value: str = SINGLE_CLASS


@dataclass
class DetectionAccuracyConfig:
    detections: List[DetectedObject]  # DETECTED_FEATURES
    ground_truth: List[TruthObject]  # GROUND_TRUTH_FEATURES
    min_iou: float = 0.5  # MIN_IOU
    mask_wkb: Optional[List[bytes]] = None  # MASK_FEATURES: polygons in the run's CRS; None = everywhere
    out_accuracy_report: Optional[str] = None  # OUT_ACCURACY_REPORT: .html or .pdf; None = no report
    # A .csv the engine writes itself (scripts; the Processing algorithm writes its own sink).
    out_accuracy_table: Optional[str] = None
    crs: str = ""  # the run's CRS, for the report
    has_confidence: bool = True  # False: no confidence field, every detection has confidence 1 (report says so)

    def check(self) -> None:
        if not self.ground_truth:
            raise InputError("GROUND_TRUTH_FEATURES", "the layer has no polygon to measure against; give the "
                                                      "ground-truth objects (polygons) of the area")
        if not self.detections:
            raise InputError("DETECTED_FEATURES", "the layer has no polygon; give the output of Detect Objects "
                                                  "Using Deep Learning (or other detected polygons)")
        number = self.min_iou
        if (not isinstance(number, numbers.Real) or isinstance(number, bool) or math.isnan(number)
                or not 0.0 < number <= 1.0):
            raise InputError("MIN_IOU", f"must be a number above 0 and at most 1 (the intersection over union "
                                        f"a detection needs with a ground-truth object to count as found; 0.5 "
                                        f"is usual); got {number!r}")
        report_extension("OUT_ACCURACY_REPORT", self.out_accuracy_report)


def report_extension(parameter: str, path: Optional[str]) -> None:
    if path and os.path.splitext(str(path))[1].lower() not in REPORT_EXTENSIONS:
        raise InputError(parameter, f"{path!r}: the report is written as HTML (.html) or PDF (.pdf); give a "
                                    f"file name with one of these extensions, or leave it empty")


# ---- Compute Accuracy For Pixel Classification --------------------------------------------------

SAMPLINGS = ("STRATIFIED_RANDOM", "EQUALIZED_STRATIFIED_RANDOM", "RANDOM", "ALL_PIXELS")
# OUT_CONFUSION_MATRIX's layout (ArcGIS's Compute Confusion Matrix): the field ClassValue, one
# field C_<value> per class, then these; rows C_<value>…, then TOTAL_ROW, P_ACCURACY_ROW, KAPPA_ROW, IOU_ROW.
CLASS_VALUE_FIELD = "ClassValue"
CLASS_PREFIX = "C_"
TOTAL = "Total"
U_ACCURACY = "U_Accuracy"
P_ACCURACY = "P_Accuracy"
KAPPA = "Kappa"
IOU = "IoU"
# OUT_POINTS' fields, as ArcGIS's accuracy assessment points name them.
POINT_FIELDS = ("Classified", "GrndTruth")


@dataclass
class PolygonTruth:
    """Ground-truth polygons (WKB in IN_RASTER's CRS) and their integer class values. Pixels
    outside every polygon are class 0 (background), as in the export's Classified_Tiles labels."""

    wkb: List[bytes]
    values: List[int]


@dataclass
class PixelAccuracyConfig:
    in_raster: str  # IN_RASTER: the classified raster (band 1), anything GDAL opens
    ground_truth: object  # IN_GROUND_TRUTH_DATA: a classified raster's path, or PolygonTruth
    num_random_points: int = 500  # NUM_RANDOM_POINTS
    sampling: str = "STRATIFIED_RANDOM"  # SAMPLING
    min_point_distance: float = 0.0  # MIN_POINT_DISTANCE, in the units of IN_RASTER's CRS
    random_seed: int = 0  # RANDOM_SEED (ArcGIS's Random Number Generator environment): same seed, same points
    # A .csv the engine writes itself (scripts; the Processing algorithm writes its own sink).
    out_confusion_matrix: Optional[str] = None
    # Engine settings with no arcpy parameter: the side of the square windows read at a time.
    block_size: int = 1024
    ground_truth_band: int = 1
    extra: dict = field(default_factory=dict)

    def check(self) -> None:
        checks.text_given("IN_RASTER", self.in_raster, "give the classified raster (the output of Classify "
                                                       "Pixels Using Deep Learning)")
        truth = self.ground_truth
        if isinstance(truth, PolygonTruth):
            if not truth.wkb:
                raise InputError("IN_GROUND_TRUTH_DATA", "no ground-truth polygon; give polygons over IN_RASTER "
                                                         "or a classified raster")
            if len(truth.values) != len(truth.wkb):
                raise InputError("IN_GROUND_TRUTH_DATA", f"{len(truth.wkb)} polygons but {len(truth.values)} "
                                                         f"class values")
        else:
            checks.text_given("IN_GROUND_TRUTH_DATA", truth, "give a classified raster or polygons with a class "
                                                            "value field")
        checks.whole_number("NUM_RANDOM_POINTS", self.num_random_points)
        checks.one_of("SAMPLING", self.sampling, SAMPLINGS)
        distance = self.min_point_distance
        if (not isinstance(distance, numbers.Real) or isinstance(distance, bool) or not math.isfinite(distance)
                or distance < 0):
            raise InputError("MIN_POINT_DISTANCE", f"must be 0 or a positive distance in the units of IN_RASTER's "
                                                   f"CRS; got {distance!r}")
        checks.whole_number("RANDOM_SEED", self.random_seed, minimum=0)
        checks.whole_number("block_size", self.block_size, minimum=16)
        checks.whole_number("ground_truth_band", self.ground_truth_band)
