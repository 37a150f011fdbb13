"""The plugin class QGIS creates through ``classFactory``."""

import os

from qgis.core import QgsApplication
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from ..processing_provider.provider import PLUGIN_DIR, DeepLearningToolsProvider

MENU = "&Deep learning tools"
TRAIN_ALGORITHM = "deeplearningtools:traindeeplearningmodel"
AUTODL_ALGORITHM = "deeplearningtools:trainusingautodl"
# menu entries: (label, algorithm whose Processing dialog they open)
MENU_ENTRIES = (("Train Deep Learning Model…", TRAIN_ALGORITHM), ("Train Using AutoDL…", AUTODL_ALGORITHM))


class DeepLearningToolsPlugin:
    """Registers the ``deeplearningtools`` Processing provider (and, with a GUI, a menu).

    ``initProcessing`` is what ``qgis_process`` calls (it has no GUI);
    the desktop calls ``initGui``, which calls ``initProcessing``.
    """

    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.actions = []

    def initProcessing(self):  # noqa: N802 (QGIS API name)
        if self.provider is not None:
            return
        self.provider = DeepLearningToolsProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 (QGIS API name)
        self.initProcessing()
        if self.iface is None or self.actions:
            return
        for label, algorithm in MENU_ENTRIES:
            action = QAction(QIcon(os.path.join(PLUGIN_DIR, "icon.svg")), label, self.iface.mainWindow())
            action.triggered.connect(lambda _checked=False, alg=algorithm: self.open_dialog(alg))
            self.iface.addPluginToMenu(MENU, action)
            self.actions.append(action)

    @staticmethod
    def open_dialog(algorithm: str = TRAIN_ALGORITHM):
        import processing  # the Processing plugin; loaded by then in a desktop session

        processing.execAlgorithmDialog(algorithm)

    def unload(self):
        for action in self.actions:
            if self.iface is not None:
                self.iface.removePluginMenu(MENU, action)
            action.deleteLater()
        self.actions = []
        if self.provider is not None:
            # The registry owns and deletes the provider.
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
