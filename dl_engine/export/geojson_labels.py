"""Label features from a GeoJSON file, for the command line (QGIS reads layers itself)."""

from __future__ import annotations

import json
from typing import List, Optional, Tuple

import shapely
import shapely.geometry
from rasterio.crs import CRS
from rasterio.warp import transform_geom

from ..errors import InputError
from ..raster_info import open_raster
from .config import CLASS_NAME_FIELD_NAMES, CLASS_VALUE_FIELD_NAMES, ClassInfo


def _find(props: dict, wanted) -> Optional[str]:
    lower = {k.lower(): k for k in props}
    return next((lower[w] for w in wanted if w in lower), None)


def read_geojson_labels(path: str, raster: str, class_field: Optional[str],
                        buffer_radius: float) -> Tuple[List[bytes], List[int], List[ClassInfo]]:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    features = doc.get("features", [])
    # RFC 7946 GeoJSON is WGS 84; older files may name another CRS.
    src_crs = CRS.from_user_input(doc.get("crs", {}).get("properties", {}).get("name", "EPSG:4326"))
    with open_raster(raster, "IN_RASTER") as src:
        dst_crs = src.crs
    props0 = features[0].get("properties", {}) if features else {}
    field = class_field or _find(props0, CLASS_VALUE_FIELD_NAMES)
    name_field = _find(props0, CLASS_NAME_FIELD_NAMES)
    wkb, values, names = [], [], {}
    for feat in features:
        if not feat.get("geometry"):
            continue
        props = feat.get("properties") or {}
        try:
            value = int(props[field]) if field else 1
        except (KeyError, TypeError, ValueError):
            raise InputError("CLASS_VALUE_FIELD", f"feature property {field!r} is missing or not an integer; "
                                                   "give a numeric class field") from None
        geom = shapely.geometry.shape(feat["geometry"])
        geom = shapely.make_valid(geom)
        if buffer_radius > 0:
            geom = geom.buffer(buffer_radius)
        if dst_crs is not None and dst_crs != src_crs:
            geom = shapely.geometry.shape(transform_geom(src_crs, dst_crs, shapely.geometry.mapping(geom)))
        wkb.append(shapely.to_wkb(geom))
        values.append(value)
        if name_field and props.get(name_field) is not None:
            names.setdefault(value, str(props[name_field]))
    return wkb, values, [ClassInfo(v, n) for v, n in names.items()]
