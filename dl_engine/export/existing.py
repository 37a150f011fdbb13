"""An earlier export that a run with START_INDEX > 0 appends to."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional

from . import esri_files as ef
from ..errors import InputError
from .config import ClassInfo, RasterLabels
from .raster_io import CHIP_FORMATS
from .stats import BandStats, ClassPixelStats, ExportTotals, FeatureStats

# images\<n>.ext, or images\<class name>\<n>.ext (Imagenet)
_STEM = re.compile(r"^images[\\/](?:[^\\/ ]+[\\/])?(\d+)\.")


@dataclass
class ExistingExport:
    folder: str
    stats: dict
    classes: List[ClassInfo]
    map_lines: Dict[int, str]

    @property
    def next_tile_index(self) -> int:
        if "NextTileIndex" in self.stats:
            return int(self.stats["NextTileIndex"])
        return max(self.map_lines, default=-1) + 1

    def check_compatible(self, config, info, info2, label_kind) -> None:
        s = self.stats
        mine = {"METADATA_FORMAT": (s.get("MetaDataMode"), config.metadata_format),
                "TILE_SIZE_X": (s.get("TileSizeX"), config.tile_size_x),
                "TILE_SIZE_Y": (s.get("TileSizeY"), config.tile_size_y),
                "IN_RASTER": (s.get("NumBands"), info.count)}
        for parameter, (theirs, ours) in mine.items():
            if theirs != ours:
                what = "band count" if parameter == "IN_RASTER" else parameter
                raise InputError("START_INDEX", f"cannot append to {self.folder}: its {what} is {theirs}, this "
                                                 f"run's {ours} ({parameter}); append only to an export of the same "
                                                 "format, tile size and band count, or choose a new folder")
        ext = CHIP_FORMATS[config.image_format][0]
        first = next(iter(self.map_lines.values()), "")
        if first and not first.split()[0].endswith("." + ext):
            raise InputError("START_INDEX", f"cannot append {config.image_format} chips to {self.folder}, whose "
                                             f"chips are {first.split()[0].rsplit('.', 1)[-1]}; use the same "
                                             "IMAGE_CHIP_FORMAT")
        if ("InputRastersProps2" in s) != (info2 is not None):
            raise InputError("START_INDEX", f"cannot append to {self.folder}: it was exported "
                                             f"{'with' if 'InputRastersProps2' in s else 'without'} IN_RASTER2")
        raster_input = isinstance(config.labels, RasterLabels)
        if label_kind and ("ClassPixelStats" in s) != raster_input:
            raise InputError("START_INDEX", f"cannot append to {self.folder}: it was exported from "
                                             f"{'a classified raster' if 'ClassPixelStats' in s else 'features'}, "
                                             "this run's IN_CLASS_DATA is not")

    def merged_with(self, totals):
        """A copy of ``totals`` with this export's chips, statistics and map lines added."""
        s = self.stats
        values = [c.value for c in self.classes]
        old = ExportTotals(chips=int(s.get("NumTiles", len(self.map_lines))), map_lines=dict(self.map_lines))
        if s.get("BandStatsState"):
            old.bands = BandStats.from_state_json(s["BandStatsState"])
        if s.get("BandStatsState2"):
            old.bands2 = BandStats.from_state_json(s["BandStatsState2"])
        if "FeatureStats" in s:
            old.features = FeatureStats.from_json(s["FeatureStats"], values)
        if "ClassPixelStats" in s:
            old.pixels = ClassPixelStats.from_json(s["ClassPixelStats"], values)
        old.merge(totals)
        return old


def read_existing(folder: str) -> Optional[ExistingExport]:
    path = os.path.join(folder, ef.STATS_JSON)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            stats = json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError("START_INDEX", f"cannot read {path} to append to it ({exc})") from None
    classes = [ClassInfo(int(c["ClassValue"]), c.get("ClassName"),
                         tuple(c["Color"]) if c.get("Color") and c["Color"][0] >= 0 else None)
               for c in stats.get("Classes", [])]
    lines: Dict[int, str] = {}
    map_path = os.path.join(folder, ef.MAP_TXT)
    if os.path.isfile(map_path):
        with open(map_path, encoding="utf-8", newline="") as f:
            for line in f.read().splitlines():
                m = _STEM.match(line.strip())
                if m:
                    lines[int(m.group(1))] = line.rstrip("\r\n") + "\r\n"
    return ExistingExport(folder, stats, classes, lines)
