"""PROCESSING_MODE for the object tools: the mosaic as one image, or each raster a mosaic
(VRT) is made of on its own grid (as ArcGIS processes mosaic items separately). Features of
items in another CRS are reprojected into the mosaic's."""

from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import shapely.geometry

from ..errors import InputError
from ..export.items import raster_items as _item_paths
from .grid import InferGrid, plan_grid
from ..raster_info import RasterInfo, describe, open_raster
from .source import check_bands

Item = Tuple[RasterInfo, InferGrid, Optional[Callable]]


def raster_items(job) -> List[Item]:
    c = job.config
    if c.processing_mode != "PROCESS_ITEMS_SEPARATELY":
        return [(job.raster, job.grid, None)]
    items: List[Item] = []
    for path in _item_paths(c.in_raster, True, job.events.log):
        src = open_raster(path)
        try:
            desc = describe(src, path)
            check_bands(desc, job.model)
            try:
                grid = plan_grid(src, c.extent, c.cell_size)
            except InputError as e:
                if e.parameter == "EXTENT":  # an item outside the extent
                    continue
                raise
        finally:
            src.close()
        items.append((desc, grid, _reprojector(grid.crs, job.grid.crs)))
    return items


def _reprojector(src_crs, dst_crs) -> Optional[Callable]:
    if src_crs is None or dst_crs is None or src_crs == dst_crs:
        return None
    from rasterio.warp import transform_geom

    def reproject(geom):
        return shapely.geometry.shape(transform_geom(src_crs, dst_crs, shapely.geometry.mapping(geom)))
    return reproject
