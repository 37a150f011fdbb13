"""GeoJSON in and out of the object tools.

Output: a FeatureCollection in the raster's CRS, streamed feature by feature to a temporary
name and moved into place at the end. RFC 7946 knows only WGS 84, so the CRS travels in a
top-level ``crs_wkt`` member (and the old ``crs`` name member when it has an EPSG code,
which GDAL/QGIS read).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, Iterator, Optional, Tuple

import shapely
import shapely.geometry

from ..errors import InputError
from .writer import commit, prepare_output


class FeatureWriter:
    def __init__(self, out_path: str, crs, parameter: str, name: str = ""):
        self.out_path = out_path
        self.temp = prepare_output(out_path, parameter)
        self.count = 0
        self._f = open(self.temp, "w", encoding="utf-8")
        head: Dict[str, Any] = {"type": "FeatureCollection", "name": name or os.path.splitext(
            os.path.basename(out_path))[0]}
        if crs is not None:
            head["crs_wkt"] = crs.to_wkt()
            epsg = _epsg(crs)
            if epsg:
                head["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{epsg}"}}
        self._f.write(json.dumps(head)[:-1] + ', "features": [\n')

    def write(self, geometry, properties: Dict[str, Any]) -> None:
        feature = {"type": "Feature", "id": self.count,
                   "geometry": shapely.geometry.mapping(geometry) if geometry is not None else None,
                   "properties": {k: _plain(v) for k, v in properties.items()}}
        self._f.write((",\n" if self.count else "") + json.dumps(feature))
        self.count += 1

    def commit(self) -> None:
        self._f.write("\n]}\n")
        self._f.close()
        commit(self.temp, self.out_path)

    def abort(self) -> None:
        try:
            self._f.close()
        except Exception:
            pass
        if os.path.exists(self.temp):
            os.remove(self.temp)


def _epsg(crs) -> Optional[int]:
    try:
        return crs.to_epsg()
    except Exception:
        return None


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_features(path: str, parameter: str = "IN_FEATURES") -> Iterator[Tuple[Optional[Any], Dict[str, Any]]]:
    """(shapely geometry or None, properties) of each feature of a GeoJSON file."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(parameter, f"cannot read {path} as GeoJSON: {e}") from None
    if isinstance(data, dict) and data.get("type") == "Feature":
        data = {"features": [data]}
    features = data.get("features") if isinstance(data, dict) else None
    if not isinstance(features, list):
        raise InputError(parameter, f"{path} is not a GeoJSON FeatureCollection")
    for feat in features:
        geom = feat.get("geometry") if isinstance(feat, dict) else None
        props = feat.get("properties") if isinstance(feat, dict) else None
        try:
            shape = shapely.geometry.shape(geom) if geom else None
        except Exception as e:
            raise InputError(parameter, f"{path}: a feature's geometry cannot be read ({e})") from None
        yield (shape if shape is not None and not shape.is_empty else None), dict(props or {})
