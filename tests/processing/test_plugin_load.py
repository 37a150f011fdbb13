"""The plugin loads in QGIS, registers its provider and removes it on unload."""

import configparser

from qgis.core import QgsApplication

from dlt_helpers import EXPORT_ALG, PROVIDER_ID, REPO

INTERFACE_PARAMETERS = [
    "IN_RASTER", "OUT_FOLDER", "IN_CLASS_DATA", "IMAGE_CHIP_FORMAT", "TILE_SIZE_X", "TILE_SIZE_Y",
    "STRIDE_X", "STRIDE_Y", "OUTPUT_NOFEATURE_TILES", "METADATA_FORMAT", "START_INDEX",
    "CLASS_VALUE_FIELD", "BUFFER_RADIUS", "IN_MASK_POLYGONS", "ROTATION_ANGLE", "REFERENCE_SYSTEM",
    "PROCESSING_MODE", "BLACKEN_AROUND_FEATURE", "CROP_MODE", "IN_RASTER2", "IN_INSTANCE_DATA",
    "INSTANCE_CLASS_VALUE_FIELD", "MIN_POLYGON_OVERLAP_RATIO", "EXTENT", "CELL_SIZE",
    "PARALLEL_PROCESSING_FACTOR",
]


def test_metadata_is_complete():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO / "metadata.txt", encoding="utf-8")
    general = parser["general"]
    for key in ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
                "repository", "tracker", "hasProcessingProvider", "category", "tags"):
        assert general.get(key), key
    assert general["name"] == "Deep learning tools"
    assert general["qgisMinimumVersion"] == "3.22"
    assert general["hasProcessingProvider"] == "yes"


def test_load_and_unload(qgis_iface, qgis_processing, dlt_plugin):
    import deep_learning_tools

    registry = QgsApplication.processingRegistry()
    dlt_plugin.unload()  # the session's plugin steps aside
    assert registry.providerById(PROVIDER_ID) is None
    try:
        plugin = deep_learning_tools.classFactory(qgis_iface)
        plugin.initGui()
        provider = registry.providerById(PROVIDER_ID)
        assert provider is not None
        assert provider.name() == "Deep learning tools"
        assert registry.algorithmById(EXPORT_ALG) is not None
        plugin.unload()
        assert registry.providerById(PROVIDER_ID) is None
        assert registry.algorithmById(EXPORT_ALG) is None
        plugin.initProcessing()  # what qgis_process calls: registers without a GUI
        assert registry.providerById(PROVIDER_ID) is not None
        plugin.unload()
        assert registry.providerById(PROVIDER_ID) is None
    finally:
        dlt_plugin.initProcessing()
    assert registry.providerById(PROVIDER_ID) is not None


def test_algorithm_interface(provider):
    alg = QgsApplication.processingRegistry().algorithmById(EXPORT_ALG)
    assert alg.displayName() == "Export Training Data For Deep Learning"
    assert alg.group() == "Training data"
    names = [p.name() for p in alg.parameterDefinitions()]
    assert names == INTERFACE_PARAMETERS
    advanced = {
        p.name() for p in alg.parameterDefinitions()
        if p.flags() & p.FlagAdvanced
    }
    assert advanced == {"EXTENT", "CELL_SIZE", "PARALLEL_PROCESSING_FACTOR"}
    assert {o.name() for o in alg.outputDefinitions()} == {"OUT_FOLDER", "NUM_TILES"}

    def keywords(name):
        return [label.split(" ")[0] for label in alg.parameterDefinition(name).options()]

    from dl_engine.export.config import IMAGE_FORMATS, METADATA_FORMATS, REFERENCE_SYSTEMS

    assert keywords("METADATA_FORMAT") == list(METADATA_FORMATS)
    assert keywords("IMAGE_CHIP_FORMAT") == list(IMAGE_FORMATS)
    assert keywords("REFERENCE_SYSTEM") == list(REFERENCE_SYSTEMS)
    assert keywords("PROCESSING_MODE") == ["PROCESS_AS_MOSAICKED_IMAGE", "PROCESS_ITEMS_SEPARATELY"]
    assert keywords("CROP_MODE") == ["FIXED_SIZE", "BOUNDING_BOX"]
    defaults = {p.name(): p.defaultValue() for p in alg.parameterDefinitions()}
    assert keywords("METADATA_FORMAT")[defaults["METADATA_FORMAT"]] == "PASCAL_VOC_rectangles"
    assert keywords("IMAGE_CHIP_FORMAT")[defaults["IMAGE_CHIP_FORMAT"]] == "TIFF"
    assert keywords("REFERENCE_SYSTEM")[defaults["REFERENCE_SYSTEM"]] == "MAP_SPACE"
    assert (defaults["TILE_SIZE_X"], defaults["TILE_SIZE_Y"], defaults["STRIDE_X"], defaults["STRIDE_Y"]) == (
        256, 256, 128, 128)
    assert defaults["START_INDEX"] == 0 and defaults["OUTPUT_NOFEATURE_TILES"] is False
    help_text = alg.shortHelpString()
    for keyword in list(METADATA_FORMATS) + list(IMAGE_FORMATS) + list(REFERENCE_SYSTEMS):
        assert keyword in help_text


def test_setup_algorithms_are_registered(provider):
    ids = {a.id() for a in provider.algorithms()}
    assert "deeplearningtools:importpretrainedweights" in ids
    alg = QgsApplication.processingRegistry().algorithmById("deeplearningtools:importpretrainedweights")
    assert alg.group() == "Setup"


def test_accuracy_algorithms_are_registered(provider):
    ids = {a.id() for a in provider.algorithms()}
    for name in ("computeaccuracyforobjectdetection", "computeaccuracyforpixelclassification"):
        assert f"deeplearningtools:{name}" in ids
        assert QgsApplication.processingRegistry().algorithmById(f"deeplearningtools:{name}").group() == "Accuracy"
