"""The plugin class QGIS creates through ``classFactory``."""

from qgis.core import QgsApplication

from ..processing_provider.provider import DeepLearningToolsProvider


class DeepLearningToolsPlugin:
    """Registers the ``deeplearningtools`` Processing provider.

    ``initProcessing`` is what ``qgis_process`` calls (it has no GUI);
    the desktop calls ``initGui``, which calls ``initProcessing``.
    """

    def __init__(self, iface):
        self.iface = iface
        self.provider = None

    def initProcessing(self):  # noqa: N802 (QGIS API name)
        if self.provider is not None:
            return
        self.provider = DeepLearningToolsProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 (QGIS API name)
        self.initProcessing()

    def unload(self):
        if self.provider is not None:
            # The registry owns and deletes the provider.
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
