"""What a QGIS user sees (issue 18 items 2, 6 and the smaller ones): processing.run raises a
QgsProcessingException "PARAMETER: message" before any worker starts, never a traceback or a
MemoryError, for a text typed where a number belongs, a tile size no memory holds, an AutoDL
OUT_MODEL that is a folder, and a raster without a CRS whose labels lie elsewhere."""

import pytest
from qgis.core import QgsApplication, QgsProcessingException

from reliability_helpers import ORIGIN, raster

TRAIN_ALG = "deeplearningtools:traindeeplearningmodel"
AUTODL_ALG = "deeplearningtools:trainusingautodl"
EXPORT_ALG = "deeplearningtools:exporttrainingdatafordeeplearning"


@pytest.fixture(scope="module")
def registered(qgis_app, qgis_processing, qgis_iface):
    """Our provider in QGIS's processing registry, as the plugin registers it. When another test
    module's plugin has registered it already (tests/processing's session fixture), that one is used
    and left in place: unloading it here would delete the provider under that fixture."""
    import deep_learning_tools

    registry = QgsApplication.processingRegistry()
    if registry.providerById("deeplearningtools") is not None:
        yield registry
        return
    plugin = deep_learning_tools.classFactory(qgis_iface)
    plugin.initProcessing()
    yield registry
    plugin.unload()


def run(alg, parameters) -> str:
    import processing

    with pytest.raises(QgsProcessingException) as raised:
        processing.run(alg, parameters)
    message = str(raised.value)
    assert "Traceback" not in message and "MemoryError" not in message
    return message


def export_folder(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "esri_model_definition.emd").write_text("{}")
    (folder / "map.txt").write_text("")
    return str(folder)


@pytest.mark.parametrize("name, value", [("LEARNING_RATE", "abc"), ("CHIP_SIZE", "abc"), ("RESIZE_TO", "x1")])
def test_text_for_an_optional_number_is_reported_as_typed(registered, tmp_path, name, value):
    message = run(TRAIN_ALG, {"IN_FOLDER": export_folder(tmp_path / "data"), "OUT_FOLDER": str(tmp_path / "model"),
                              name: value})
    assert f"({name}):" in message and f"got {value!r}" in message


def test_autodl_out_model_folder_is_refused_not_written_beside(registered, tmp_path):
    (tmp_path / "models").mkdir()
    message = run(AUTODL_ALG, {"IN_DATA": export_folder(tmp_path / "data"), "OUT_MODEL": str(tmp_path / "models")})
    assert "(OUT_MODEL):" in message and "is a folder" in message
    assert not (tmp_path / "models.dlpk").exists()


def test_huge_tile_is_refused_before_the_export_starts(registered, tmp_path):
    message = run(EXPORT_ALG, {"IN_RASTER": raster(tmp_path / "r.tif"), "OUT_FOLDER": str(tmp_path / "out"),
                               "TILE_SIZE_X": 100_000, "TILE_SIZE_Y": 100_000})
    assert "(TILE_SIZE_X):" in message and "would need" in message and "largest value that fits" in message
    assert not (tmp_path / "out").exists()


def test_raster_without_crs_and_labels_elsewhere_blames_the_raster(registered, tmp_path):
    labels = tmp_path / "labels.geojson"
    x, y = ORIGIN[0] + 50_000, ORIGIN[1] + 50_000  # far from the raster's coordinates
    labels.write_text('{"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": '
                      '"urn:ogc:def:crs:EPSG::32617"}}, "features": [{"type": "Feature", "properties": '
                      '{"classvalue": 1}, "geometry": {"type": "Polygon", "coordinates": '
                      f'[[[{x}, {y}], [{x + 5}, {y}], [{x + 5}, {y - 5}], [{x}, {y - 5}], [{x}, {y}]]]}}}}]}}')
    message = run(EXPORT_ALG, {"IN_RASTER": raster(tmp_path / "r.tif", crs=None), "IN_CLASS_DATA": str(labels),
                               "OUT_FOLDER": str(tmp_path / "out")})
    assert "(IN_RASTER):" in message and "no coordinate reference system" in message
