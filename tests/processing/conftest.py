"""Processing fixtures: QGIS processing initialised and our provider registered."""

import pytest
from qgis.core import QgsApplication

PROVIDER_ID = "deeplearningtools"
EXPORT_ALG = "deeplearningtools:exporttrainingdatafordeeplearning"


@pytest.fixture(scope="session")
def dlt_plugin(qgis_app, qgis_processing, qgis_iface):
    """The plugin, created through classFactory and registered as QGIS would."""
    import deep_learning_tools

    plugin = deep_learning_tools.classFactory(qgis_iface)
    plugin.initGui()
    yield plugin
    plugin.unload()


@pytest.fixture
def provider(dlt_plugin):
    registry = QgsApplication.processingRegistry()
    if registry.providerById(PROVIDER_ID) is None:
        dlt_plugin.initProcessing()
    return registry.providerById(PROVIDER_ID)


@pytest.fixture
def alg(provider):
    from qgis.core import QgsApplication

    from dlt_helpers import EXPORT_ALG

    return QgsApplication.processingRegistry().algorithmById(EXPORT_ALG)
