"""QGIS layers → what ``dl_engine`` reads (GDAL paths, WKB in the raster CRS, classes).

Everything here is streaming: features are read one at a time with only the
attributes needed, and only their WKB and class value are kept.
"""

import os
import uuid
from typing import Dict, List, Optional, Tuple

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsFeatureRequest,
    QgsGeometry,
    QgsPalettedRasterRenderer,
    QgsProcessingException,
    QgsProcessingUtils,
    QgsProject,
    QgsProviderRegistry,
    QgsRasterDataProvider,
    QgsRasterFileWriter,
    QgsRasterLayer,
    QgsRasterPipe,
    QgsRectangle,
    QgsVectorLayer,
    QgsWkbTypes,
)

from dl_engine.export.config import (CLASS_NAME_FIELD_NAMES, CLASS_VALUE_FIELD_NAMES, ClassInfo, RasterLabels,
                                     VectorLabels)


# ---------------------------------------------------------------------------
# Rasters
# ---------------------------------------------------------------------------


def shared_gdal_source(layer: QgsRasterLayer) -> Optional[str]:
    """The layer's source when a worker process's GDAL opens it as it is: a GDAL layer of a local
    file (a subdataset of one too) or a ``/vsi`` path, without open options. None for the rest
    (web services, databases, other providers), which only QGIS can read."""
    if layer.providerType() != "gdal":
        return None
    source = layer.source()
    parts = QgsProviderRegistry.instance().decodeUri("gdal", source)
    if parts.get("openOptions"):
        return None
    if source.startswith("/vsi") or os.path.isfile(str(parts.get("path") or "")):
        return source
    return None


# A web layer is read at CELL_SIZE over EXTENT: at most this many pixels a side.
MAX_READ_SIDE = 100_000
MIN_BUFFER_RADIUS = 0.0  # BUFFER_RADIUS: 0 = no buffer


def _read_grid(layer: QgsRasterLayer, parameter: str, extent: Optional[QgsRectangle],
               cell_size: Optional[float]) -> Tuple[QgsRectangle, int, int]:
    """(extent, columns, rows) to write the layer at: its own pixels, or for a provider without
    a pixel size of its own (WMS, WMTS, XYZ tiles, ...) CELL_SIZE over EXTENT (or the layer's extent)."""
    provider = layer.dataProvider()
    if provider.capabilities() & QgsRasterDataProvider.Size and provider.xSize() > 0 and provider.ySize() > 0:
        return provider.extent(), provider.xSize(), provider.ySize()
    if not cell_size or cell_size <= 0:
        raise QgsProcessingException(
            f"{parameter}: layer '{layer.name()}' comes from the '{layer.providerType()}' provider, which has no "
            f"pixel size of its own; give CELL_SIZE (the pixel size to read it at, in the units of "
            f"{layer.crs().authid() or 'its CRS'}) and EXTENT (the area to export)"
        )
    area = QgsRectangle(provider.extent())
    if extent is not None and not extent.isEmpty():
        area = area.intersect(extent)
    columns, rows = int(round(area.width() / cell_size)), int(round(area.height() / cell_size))
    if columns < 1 or rows < 1:
        raise QgsProcessingException(f"EXTENT: it does not overlap layer '{layer.name()}' ({parameter})")
    if max(columns, rows) > MAX_READ_SIDE:
        raise QgsProcessingException(
            f"EXTENT: reading layer '{layer.name()}' ({parameter}) at CELL_SIZE {cell_size:g} over this extent "
            f"takes {columns} x {rows} pixels, more than {MAX_READ_SIDE} a side; give a smaller EXTENT or a "
            f"larger CELL_SIZE"
        )
    return area, columns, rows


def raster_to_gdal_path(layer: QgsRasterLayer, parameter: str, transform_context=None, feedback=None,
                        folder: Optional[str] = None, extent: Optional[QgsRectangle] = None,
                        cell_size: Optional[float] = None) -> str:
    """A path GDAL opens for ``layer`` in another process: its source (``shared_gdal_source``), else a
    temporary GeoTIFF written through QGIS into ``folder`` (default: Processing's temporary folder):
    the layer's own pixels, or for a web layer CELL_SIZE over EXTENT (layer CRS)."""
    if layer is None or not layer.isValid():
        raise QgsProcessingException(f"{parameter}: the raster layer could not be opened")
    source = shared_gdal_source(layer)
    if source is not None:
        return source
    area, columns, rows = _read_grid(layer, parameter, extent, cell_size)
    path = os.path.join(folder or QgsProcessingUtils.tempFolder(), f"{parameter.lower()}_{uuid.uuid4().hex}.tif")
    if feedback is not None:
        feedback.pushInfo(
            f"{parameter}: layer '{layer.name()}' comes from the '{layer.providerType()}' provider; "
            f"writing it to a temporary GeoTIFF {path}"
        )
    provider = layer.dataProvider()
    pipe = QgsRasterPipe()
    if not pipe.set(provider.clone()):
        raise QgsProcessingException(f"{parameter}: cannot read the raster layer '{layer.name()}'")
    writer = QgsRasterFileWriter(path)
    writer.setOutputFormat("GTiff")
    writer.setCreateOptions(["COMPRESS=LZW", "TILED=YES", "BIGTIFF=IF_SAFER"])
    if transform_context is None:
        transform_context = QgsProject.instance().transformContext()
    error = writer.writeRaster(pipe, columns, rows, area, provider.crs(), transform_context)
    if error != QgsRasterFileWriter.NoError:
        raise QgsProcessingException(
            f"{parameter}: writing layer '{layer.name()}' to a temporary GeoTIFF failed (error {error})"
        )
    _mark_float_nodata(path)
    return path


# What QGIS writes into float pixels that are NoData when the source declares no
# NoData value (virtual rasters, raster calculator): -FLT_MAX.
QGIS_FLOAT_NODATA = -3.4028234663852886e38


def _mark_float_nodata(path: str) -> None:
    """Declare QGIS's float NoData value on float bands written without one.

    QgsRasterFileWriter (3.22) writes NoData pixels of providers without a source
    NoData value as -FLT_MAX but does not declare it; undeclared, those pixels
    would count as data in the export's statistics.
    """
    try:
        from osgeo import gdal
    except ImportError:  # pragma: no cover
        return
    dataset = gdal.OpenEx(path, gdal.OF_RASTER | gdal.OF_UPDATE)
    if dataset is None:
        return
    for index in range(1, dataset.RasterCount + 1):
        band = dataset.GetRasterBand(index)
        if band.DataType in (gdal.GDT_Float32, gdal.GDT_Float64) and band.GetNoDataValue() is None:
            band.SetNoDataValue(QGIS_FLOAT_NODATA)
        band = None
    dataset = None


def raster_band_names(layer: QgsRasterLayer) -> Optional[List[str]]:
    """Band descriptions of a GDAL raster ("" where none), or None if it has none."""
    if layer is None or layer.providerType() != "gdal":
        return None
    try:
        from osgeo import gdal
    except ImportError:  # pragma: no cover - GDAL always comes with QGIS
        return None
    dataset = gdal.OpenEx(layer.source(), gdal.OF_RASTER)
    if dataset is None:
        return None
    names = [dataset.GetRasterBand(i + 1).GetDescription() or "" for i in range(dataset.RasterCount)]
    dataset = None
    return names if any(names) else None


def rectangle_tuple(rect: Optional[QgsRectangle]) -> Optional[Tuple[float, float, float, float]]:
    if rect is None or rect.isNull() or rect.isEmpty():
        return None
    return (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())


def paletted_classes(layer: QgsRasterLayer) -> Tuple[List[ClassInfo], int]:
    """Class names/colours and band of a paletted (unique values) renderer."""
    renderer = layer.renderer()
    if not isinstance(renderer, QgsPalettedRasterRenderer):
        return [], 1
    classes = []
    for entry in renderer.classes():
        value = _as_class_value(entry.value)
        if value is None:
            continue
        color = entry.color
        label = (entry.label or "").strip()
        classes.append(
            ClassInfo(value=value, name=label or None, color=(color.red(), color.green(), color.blue()))
        )
    return classes, renderer.band()


def raster_labels(layer: QgsRasterLayer, parameter: str, transform_context=None, feedback=None,
                  folder: Optional[str] = None) -> RasterLabels:
    path = raster_to_gdal_path(layer, parameter, transform_context, feedback, folder)
    classes, band = paletted_classes(layer)
    if path != layer.source():  # a copy written through QGIS
        band = 1 if layer.bandCount() == 1 else band
    return RasterLabels(path=path, classes=classes, band=band)


# ---------------------------------------------------------------------------
# Vector labels
# ---------------------------------------------------------------------------


def _as_class_value(value) -> Optional[int]:
    """An integer ≥ 0 from an attribute value, or None."""
    if value is None:
        return None
    if hasattr(value, "isNull") and value.isNull():  # QVariant NULL
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float):
        if value.is_integer() and value >= 0:
            return int(value)
        return None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return _as_class_value(number)
    return None


def _find_field(layer: QgsVectorLayer, names) -> int:
    lower = {field.name().lower(): i for i, field in enumerate(layer.fields())}
    for name in names:
        if name in lower:
            return lower[name]
    return -1


def _accepted_fields(layer: QgsVectorLayer) -> str:
    numeric = [f.name() for f in layer.fields() if f.isNumeric()]
    return ", ".join(numeric) if numeric else "(the layer has no numeric field)"


def class_value_field(
    layer: QgsVectorLayer, field_name: Optional[str], parameter: str = "CLASS_VALUE_FIELD"
) -> int:
    """Index of the class value field, or -1 for "every feature is class 1".

    ``parameter`` is the field parameter named in errors (CLASS_VALUE_FIELD or
    INSTANCE_CLASS_VALUE_FIELD).
    """
    fields = layer.fields()
    if field_name:
        index = fields.lookupField(field_name)
        if index < 0:
            raise QgsProcessingException(
                f"{parameter}: the field '{field_name}' does not exist in layer '{layer.name()}'; "
                f"use one of its numeric fields: {_accepted_fields(layer)}, or leave it empty "
                f"(then a field named classvalue or value is used, else every feature is class 1)"
            )
    else:
        index = _find_field(layer, CLASS_VALUE_FIELD_NAMES)
        if index < 0:
            return -1
    field = fields.at(index)
    if not field.isNumeric():
        raise QgsProcessingException(
            f"{parameter}: the field '{field.name()}' of layer '{layer.name()}' is of type "
            f"{field.typeName()}, not numeric; class values must be integers ≥ 0 in a numeric field: "
            f"{_accepted_fields(layer)}"
        )
    return index


def categorized_colors(layer: QgsVectorLayer, field_name: Optional[str]) -> Dict[int, Tuple[int, int, int]]:
    renderer = layer.renderer()
    if field_name is None or not isinstance(renderer, QgsCategorizedSymbolRenderer):
        return {}
    if renderer.classAttribute().strip().strip('"').lower() != field_name.lower():
        return {}
    colors = {}
    for category in renderer.categories():
        value = _as_class_value(category.value())
        if value is None or category.symbol() is None:
            continue
        color = category.symbol().color()
        colors.setdefault(value, (color.red(), color.green(), color.blue()))
    return colors


def _transform(source_crs, dest_crs, transform_context) -> Optional[QgsCoordinateTransform]:
    if not source_crs.isValid() or not dest_crs.isValid() or source_crs == dest_crs:
        return None
    return QgsCoordinateTransform(source_crs, dest_crs, transform_context)


def filter_rect_in_layer_crs(
    rect: Optional[QgsRectangle], raster_crs, layer_crs, transform_context
) -> Optional[QgsRectangle]:
    """``rect`` (raster CRS) in the layer's CRS, slightly enlarged; None if it cannot be transformed."""
    if rect is None or rect.isNull():
        return None
    transform = _transform(raster_crs, layer_crs, transform_context)
    try:
        result = rect if transform is None else transform.transformBoundingBox(rect)
    except QgsCsException:
        return None
    if result.isNull() or not result.isFinite():
        return None
    grown = QgsRectangle(result)
    grown.grow(max(result.width(), result.height()) * 0.01)
    return grown


def _polygonal(geometry: QgsGeometry) -> QgsGeometry:
    """Keep polygonal parts only (makeValid may leave lines or points beside them)."""
    if geometry.type() == QgsWkbTypes.PolygonGeometry or geometry.isEmpty():
        return geometry
    parts = [part for part in geometry.asGeometryCollection() if part.type() == QgsWkbTypes.PolygonGeometry]
    if not parts:
        return QgsGeometry()
    return QgsGeometry.collectGeometry(parts)


def prepare_geometry(
    geometry: QgsGeometry, buffer_radius: float, transform: Optional[QgsCoordinateTransform]
) -> Optional[bytes]:
    """Valid, buffered (in layer units), reprojected WKB, or None to skip the feature."""
    if geometry is None or geometry.isNull() or geometry.isEmpty():
        return None
    is_polygon = geometry.type() == QgsWkbTypes.PolygonGeometry
    if not geometry.isGeosValid():
        geometry = geometry.makeValid()
        if is_polygon:
            geometry = _polygonal(geometry)
        if geometry.isNull() or geometry.isEmpty():
            return None
    if buffer_radius > 0:
        geometry = geometry.buffer(buffer_radius, 8)
        if geometry.isNull() or geometry.isEmpty():
            return None
    if transform is not None:
        try:
            geometry.transform(transform)
        except QgsCsException:
            return None
    return bytes(geometry.asWkb())


def vector_labels(
    layer: QgsVectorLayer,
    raster_crs: QgsCoordinateReferenceSystem,
    raster_rect: Optional[QgsRectangle],
    transform_context,
    field_name: Optional[str] = None,
    buffer_radius: float = 0.0,
    feedback=None,
    parameter: str = "IN_CLASS_DATA",
    field_parameter: str = "CLASS_VALUE_FIELD",
) -> VectorLabels:
    """Label features in the raster CRS with their class values.

    ``raster_rect`` (raster CRS) limits the features read, through the provider's
    spatial filter; None reads the whole layer. ``parameter`` / ``field_parameter``
    are the layer and field parameters named in errors.
    """
    if layer is None or not layer.isValid():
        raise QgsProcessingException(f"{parameter}: the label layer could not be opened")
    geometry_type = layer.geometryType()
    if geometry_type not in (QgsWkbTypes.PointGeometry, QgsWkbTypes.LineGeometry, QgsWkbTypes.PolygonGeometry):
        raise QgsProcessingException(
            f"{parameter}: layer '{layer.name()}' has no geometries; use a polygon, point or line layer"
            + (" or a classified raster" if parameter == "IN_CLASS_DATA" else "")
        )
    if buffer_radius < MIN_BUFFER_RADIUS:
        raise QgsProcessingException(f"BUFFER_RADIUS: {buffer_radius} is negative; use 0 or a positive distance")
    if geometry_type == QgsWkbTypes.PointGeometry and buffer_radius <= 0:
        raise QgsProcessingException(
            f"BUFFER_RADIUS: layer '{layer.name()}' has point features; give a BUFFER_RADIUS > 0 "
            f"(in the units of the layer's CRS) to make each point a circular training sample"
        )

    value_index = class_value_field(layer, field_name, field_parameter)
    value_field = layer.fields().at(value_index).name() if value_index >= 0 else None
    name_index = _find_field(layer, CLASS_NAME_FIELD_NAMES)
    if name_index == value_index:
        name_index = -1

    layer_crs = layer.crs()
    transform = _transform(layer_crs, raster_crs, transform_context)
    request = QgsFeatureRequest()
    attributes = [i for i in (value_index, name_index) if i >= 0]
    request.setSubsetOfAttributes(attributes)
    filter_rect = filter_rect_in_layer_crs(raster_rect, raster_crs, layer_crs, transform_context)
    if filter_rect is not None:
        request.setFilterRect(filter_rect)

    wkb: List[bytes] = []
    values: List[int] = []
    names: Dict[int, str] = {}
    skipped = 0
    for feature in layer.getFeatures(request):
        if feedback is not None and feedback.isCanceled():
            raise QgsProcessingException("Export canceled: nothing was written")
        if value_index >= 0:
            raw = feature.attribute(value_index)
            value = _as_class_value(raw)
            if value is None:
                raise QgsProcessingException(
                    f"{field_parameter}: feature {feature.id()} of layer '{layer.name()}' has "
                    f"{value_field} = {_show(raw)}; class values must be integers ≥ 0"
                )
        else:
            value = 1
        data = prepare_geometry(feature.geometry(), buffer_radius, transform)
        if data is None:
            skipped += 1
            continue
        wkb.append(data)
        values.append(value)
        if name_index >= 0 and value not in names:
            name = feature.attribute(name_index)
            if name is not None and not (hasattr(name, "isNull") and name.isNull()) and str(name).strip():
                names[value] = str(name).strip()

    if not wkb:
        if layer.featureCount() == 0:
            why = "has no features"
        elif skipped:
            why = f"has no usable geometry near the raster ({skipped} null or empty geometries)"
        elif not raster_crs.isValid():  # nothing to reproject by: the raster is what lacks
            raise QgsProcessingException(
                f"IN_RASTER: the raster has no coordinate reference system, and no feature of '{layer.name()}' "
                f"({layer_crs.authid() or 'no CRS either'}) falls on its coordinates; assign the raster its CRS "
                f"(Raster ▸ Projections ▸ Assign Projection)"
            )
        else:
            why = "has no feature inside the extent of the raster (do the layers overlap? check their CRS)"
        raise QgsProcessingException(
            f"{parameter}: the label layer '{layer.name()}' {why}; it needs at least one feature "
            f"that overlaps IN_RASTER"
        )
    if feedback is not None:
        feedback.pushInfo(
            f"{parameter}: {len(wkb)} features from '{layer.name()}'"
            + (f" (class field {value_field})" if value_field else " (no class field: every feature is class 1)")
            + (f", reprojected from {layer_crs.authid()} to {raster_crs.authid()}" if transform else "")
            + (f", {skipped} null/empty geometries skipped" if skipped else "")
        )

    colors = categorized_colors(layer, value_field)
    classes = [
        ClassInfo(value=value, name=names.get(value), color=colors.get(value))
        for value in sorted(set(values))
    ]
    return VectorLabels(wkb=wkb, values=values, classes=classes)


def instance_labels(
    layer: QgsVectorLayer,
    raster_crs: QgsCoordinateReferenceSystem,
    raster_rect: Optional[QgsRectangle],
    transform_context,
    field_name: Optional[str] = None,
    buffer_radius: float = 0.0,
    feedback=None,
) -> VectorLabels:
    """IN_INSTANCE_DATA (Panoptic_Segmentation instances): the rules of IN_CLASS_DATA
    (``vector_labels``) with INSTANCE_CLASS_VALUE_FIELD. BUFFER_RADIUS is meant for
    IN_CLASS_DATA; instances use it only when they are points (which need an area)."""
    if layer is not None and layer.isValid() and layer.geometryType() != QgsWkbTypes.PointGeometry:
        buffer_radius = 0.0
    return vector_labels(
        layer,
        raster_crs,
        raster_rect,
        transform_context,
        field_name=field_name,
        buffer_radius=buffer_radius,
        feedback=feedback,
        parameter="IN_INSTANCE_DATA",
        field_parameter="INSTANCE_CLASS_VALUE_FIELD",
    )


def _show(value) -> str:
    if value is None or (hasattr(value, "isNull") and value.isNull()):
        return "NULL"
    return repr(value)


# ---------------------------------------------------------------------------
# Mask polygons
# ---------------------------------------------------------------------------


def mask_polygons(source, raster_crs, raster_rect, transform_context, feedback=None) -> List[bytes]:
    """IN_MASK_POLYGONS features as valid polygons (WKB) in the raster CRS."""
    transform = _transform(source.sourceCrs(), raster_crs, transform_context)
    request = QgsFeatureRequest()
    request.setNoAttributes()
    filter_rect = filter_rect_in_layer_crs(raster_rect, raster_crs, source.sourceCrs(), transform_context)
    if filter_rect is not None:
        request.setFilterRect(filter_rect)
    polygons: List[bytes] = []
    for feature in source.getFeatures(request):
        if feedback is not None and feedback.isCanceled():
            raise QgsProcessingException("Export canceled: nothing was written")
        geometry = feature.geometry()
        if geometry is None or geometry.isNull() or geometry.isEmpty():
            continue
        if geometry.type() != QgsWkbTypes.PolygonGeometry:
            raise QgsProcessingException(
                "IN_MASK_POLYGONS: the mask layer must hold polygons; "
                f"it has {QgsWkbTypes.displayString(geometry.wkbType())} geometries"
            )
        data = prepare_geometry(geometry, 0.0, transform)
        if data is not None:
            polygons.append(data)
    if not polygons:
        raise QgsProcessingException(
            "IN_MASK_POLYGONS: no mask polygon overlaps the raster; chips are exported only inside the "
            "mask polygons, so nothing would be written (leave IN_MASK_POLYGONS empty to use the whole raster)"
        )
    return polygons
