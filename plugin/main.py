"""The plugin class QGIS creates through ``classFactory``."""

import configparser
import os

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QUrl
from qgis.PyQt.QtGui import QDesktopServices
from qgis.PyQt.QtWidgets import QAction

from ..processing_provider import icons
from ..processing_provider.base import DeepLearningAlgorithm
from ..processing_provider.provider import PLUGIN_DIR, PROVIDER_ID, DeepLearningToolsProvider

MENU = "&Deep learning tools"
# The tools in the order a project uses them (the provider's); the environment dialog stands for the set-up
# algorithms in the menu.
MENU_ALGORITHMS = DeepLearningToolsProvider.TOOLS
ENVIRONMENT_ENTRY = "Deep learning environment…"
JOBS_ENTRY = "Deep learning jobs…"
HELP_ENTRY = "Help (README)"
README = os.path.join(PLUGIN_DIR, "README.md")


def algorithm_id(algorithm_class) -> str:
    return f"{PROVIDER_ID}:{algorithm_class.ALGORITHM_ID}"


class DeepLearningToolsPlugin:
    """Registers the ``deeplearningtools`` Processing provider and, with a GUI, the plugin menu, the
    environment dialog, the set-up offer and the jobs dock (which follows every run from then on).

    ``initProcessing`` is what ``qgis_process`` calls (it has no GUI);
    the desktop calls ``initGui``, which calls ``initProcessing``.
    """

    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.actions = []  # the menu's entries in order, separators included
        self.environment_dialog = None
        self.setup_offer = None
        self.jobs = None  # every training, AutoDL and inference run (plugin/jobs.py), followed from initGui
        self.jobs_dock = None

    def initProcessing(self):  # noqa: N802 (QGIS API name)
        if self.provider is not None:
            return
        self.provider = DeepLearningToolsProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 (QGIS API name)
        self.initProcessing()
        if self.iface is None or self.actions:
            return
        window = self.iface.mainWindow()
        for algorithm_class in MENU_ALGORITHMS:
            action = QAction(icons.icon(icons.algorithm_icon_path(algorithm_class)),
                             f"{algorithm_class.DISPLAY_NAME}…", window)
            action.setObjectName(algorithm_class.ALGORITHM_ID)
            action.triggered.connect(lambda _checked=False, alg=algorithm_id(algorithm_class): self.open_dialog(alg))
            self._add(action)
        separator = QAction(window)
        separator.setSeparator(True)
        self._add(separator)
        environment = QAction(icons.icon(icons.ENVIRONMENT_ICON), ENVIRONMENT_ENTRY, window)
        environment.triggered.connect(self.open_environment_dialog)
        self._add(environment)
        jobs_action = QAction(QgsApplication.getThemeIcon("/mTaskRunning.svg"), JOBS_ENTRY, window)
        jobs_action.triggered.connect(self.open_jobs_dock)
        self._add(jobs_action)
        help_action = QAction(QgsApplication.getThemeIcon("/mActionHelpContents.svg"), HELP_ENTRY, window)
        help_action.triggered.connect(self.open_help)
        self._add(help_action)

        from .setup_offer import SetupOffer

        self.setup_offer = SetupOffer(self.iface.messageBar(), self.open_environment_dialog)
        DeepLearningAlgorithm.dialog_opening = self.setup_offer.on_use
        self.setup_offer.at_start()

        from .jobs import JobRegistry

        self.jobs = JobRegistry()
        self.jobs.listen()
        self.jobs.added.connect(self._on_job_added)

    def _add(self, action: QAction) -> None:
        self.iface.addPluginToMenu(MENU, action)
        self.actions.append(action)

    @staticmethod
    def open_dialog(algorithm: str):
        import processing  # the Processing plugin; loaded by then in a desktop session

        processing.execAlgorithmDialog(algorithm)

    def open_environment_dialog(self):
        """The environment dialog, non-modal; one per plugin, checked again each time it is opened."""
        if self.environment_dialog is None:
            from .environment_dialog import EnvironmentDialog

            self.environment_dialog = EnvironmentDialog(self.iface.mainWindow(), message_bar=self.iface.messageBar())
            if self.setup_offer is not None:
                self.environment_dialog.installed.connect(self.setup_offer.withdraw)
        else:
            self.environment_dialog.refresh()
        self.environment_dialog.show()
        self.environment_dialog.raise_()
        self.environment_dialog.activateWindow()
        return self.environment_dialog

    def open_jobs_dock(self):
        """The "Deep learning jobs" dock, made on first use and shown again after it was closed."""
        if self.jobs_dock is None:
            from .jobs_dock import dock_for

            self.jobs_dock = dock_for(self.iface, self.jobs)
        self.jobs_dock.show()
        self.jobs_dock.raise_()
        return self.jobs_dock

    def _on_job_added(self, run_id):
        """A training or AutoDL run starting in this QGIS brings the dock up (an inference run does not)."""
        from .jobs import KINDS

        job = self.jobs.jobs.get(run_id) if self.jobs is not None else None
        if job is not None and job.cancelable and job.kind in (KINDS["train"], KINDS["autodl"]):
            self.open_jobs_dock()

    @staticmethod
    def open_help():
        """The README next to the plugin; the homepage when the package has none."""
        if os.path.isfile(README):
            return QDesktopServices.openUrl(QUrl.fromLocalFile(README))
        metadata = configparser.ConfigParser(interpolation=None)
        metadata.read(os.path.join(PLUGIN_DIR, "metadata.txt"), encoding="utf-8")
        homepage = metadata.get("general", "homepage", fallback="")
        return QDesktopServices.openUrl(QUrl(homepage)) if homepage else False

    def unload(self):
        for action in self.actions:
            if self.iface is not None:
                self.iface.removePluginMenu(MENU, action)
            action.deleteLater()
        self.actions = []
        if self.setup_offer is not None:
            if DeepLearningAlgorithm.dialog_opening == self.setup_offer.on_use:
                DeepLearningAlgorithm.dialog_opening = None
            self.setup_offer.withdraw()
            self.setup_offer = None
        if self.jobs is not None:
            self.jobs.close()  # runs going on are not stopped; they are no longer followed
            self.jobs = None
        if self.jobs_dock is not None:
            if self.iface is not None:
                self.iface.removeDockWidget(self.jobs_dock)
            self.jobs_dock.deleteLater()
            self.jobs_dock = None
        if self.environment_dialog is not None:
            # an installation running goes on (its task does not belong to the dialog)
            self.environment_dialog.close()
            self.environment_dialog.deleteLater()
            self.environment_dialog = None
        if self.provider is not None:
            # The registry owns and deletes the provider.
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
