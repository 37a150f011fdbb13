"""ARGUMENTS of the inference tools (``name value;name value``), with ArcGIS's names and
defaults (esri-formats.md §2.4). Unknown names are refused with the list of valid ones."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional

from ..errors import InputError
from ..arguments import parse_arguments

PARAMETER = "ARGUMENTS"
MAX_TILE = 8192  # a larger window would not fit a batch on any device

TOOL_NAMES = {
    "classify_pixels": "Classify Pixels Using Deep Learning",
    "detect_objects": "Detect Objects Using Deep Learning",
    "classify_objects": "Classify Objects Using Deep Learning",
}

# name -> default; None: derived from the model (padding = ImageHeight // 4, tile_size = ImageHeight).
TOOL_ARGUMENTS: Dict[str, Dict[str, Any]] = {
    "classify_pixels": {"padding": None, "batch_size": 4, "predict_background": True,
                        "test_time_augmentation": False, "tile_size": None},
    "detect_objects": {"padding": None, "threshold": 0.5, "nms_overlap": 0.1, "batch_size": 4,
                       "exclude_pad_detections": True, "tile_size": None},
    "classify_objects": {"batch_size": 4, "tile_size": None},
}


@dataclass(frozen=True)
class ToolArguments:
    tile: int  # window the model sees (pixels, square)
    padding: int  # overlap on each side; the centre (tile - 2 * padding) is kept
    batch_size: int
    predict_background: bool = True
    test_time_augmentation: bool = False
    threshold: float = 0.5
    nms_overlap: float = 0.1
    exclude_pad_detections: bool = True

    @property
    def stride(self) -> int:
        return self.tile - 2 * self.padding


def parse_tool_arguments(tool: str, text: Optional[str], chip_size: int) -> ToolArguments:
    values = parse_arguments(text, TOOL_ARGUMENTS[tool], TOOL_NAMES[tool])
    tile = _int(values, "tile_size", chip_size, 8, MAX_TILE)
    # ArcGIS's default padding is ImageHeight // 4; with another tile_size a quarter of that tile.
    padding_default = chip_size // 4 if values.get("tile_size") is None else tile // 4
    padding = _int(values, "padding", padding_default if tool != "classify_objects" else 0, 0, MAX_TILE)
    if 2 * padding >= tile:
        raise InputError(PARAMETER, f"padding {padding} leaves nothing of a {tile} px tile (each tile keeps "
                                   f"tile - 2 x padding pixels); give padding below {(tile + 1) // 2}")
    batch = _int(values, "batch_size", 4, 1, 4096)
    out = dict(tile=tile, padding=padding, batch_size=batch)
    for name in ("predict_background", "test_time_augmentation", "exclude_pad_detections"):
        if name in values:
            out[name] = bool(values[name])
    for name in ("threshold", "nms_overlap"):
        if name in values:
            v = _number(values[name], name)
            if not 0.0 <= v <= 1.0:
                raise InputError(PARAMETER, f"{name} {v} is outside 0..1")
            out[name] = v
    return ToolArguments(**out)


def _number(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(PARAMETER, f"{name} {value!r} is not a number") from None


def _int(values: Dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = values.get(name)
    if value is None:
        return int(default)
    number = _number(value, name)
    if not number.is_integer() or not low <= number <= high:
        raise InputError(PARAMETER, f"{name} {value!r} is not a whole number from {low} to {high}")
    return int(number)
