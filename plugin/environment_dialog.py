"""The "Deep learning environment…" dialog: the engine environment's state, device, versions and disk space,
with Install (Upgrade), Repair, Reset, Copy report and Open log.

The work is ``dl_engine.environment.manager``'s; the slow parts (the check with its smoke test, installing,
removing) run as QgsTasks (``environment_task.py``), so QGIS stays responsive, progress shows in the task
manager and an installation carries on when the dialog is closed (opened again, the dialog follows it).
"""

import os
from typing import Optional

from qgis.core import Qgis, QgsSettings
from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget
from qgis.PyQt.QtCore import Qt, QUrl, pyqtSignal
from qgis.PyQt.QtGui import QDesktopServices, QIcon
from qgis.PyQt.QtWidgets import (
    QApplication,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from ..processing_provider.icons import ENVIRONMENT_ICON
from ..processing_provider.install_deep_learning_frameworks import qgis_proxy
from . import environment_task

TITLE = "Deep learning environment"

# What the dialog says about the environment.
CHECKING, NOT_INSTALLED, INSTALLING, READY, NEEDS_UPGRADE, BROKEN = (
    "checking", "not installed", "installing", "ready", "needs upgrade", "broken")
STATUS_WORDS = {
    CHECKING: ("Checking…", "#555555"),
    NOT_INSTALLED: ("Not installed", "#b26a00"),
    INSTALLING: ("Installing…", "#1565c0"),
    READY: ("Ready", "#2e7d32"),
    NEEDS_UPGRADE: ("Needs upgrade: the plugin's pinned packages changed", "#b26a00"),
    BROKEN: ("Broken", "#c62828"),
}

# Device choices: (label, InstallOptions.device)
DEVICES = (("Automatic (the GPU when there is one)", "auto"),
           ("CPU only", "cpu"),
           ("CUDA (NVIDIA GPU)", "cuda"))
DEVICE_TIP = ("Automatic: the CUDA build of PyTorch that the NVIDIA driver supports, Apple's GPU (MPS) on Apple "
              "Silicon, else the CPU build. CPU only: a smaller download. CUDA: the CUDA build even where no "
              "driver was found (for a GPU added later).")

# The dialog's choices, kept for the next installation or repair.
DEVICE_SETTING = "deep_learning_tools/environment_device"
PACKAGE_INDEX_SETTING = "deep_learning_tools/environment_package_index"
BASE_PYTHON_SETTING = "deep_learning_tools/environment_base_python"


def status_of(state, pinned_set_changed: bool = True) -> str:
    """What an ``EnvironmentState`` (None: not known yet) amounts to. ``pinned_set_changed``: an environment
    that is not ``current`` was installed completely for another pinned list (else its install did not finish)."""
    if state is None:
        return CHECKING
    if not state.exists:
        return NOT_INSTALLED
    if not state.current:
        return NEEDS_UPGRADE if pinned_set_changed else BROKEN
    return READY if state.ready else BROKEN


def pinned_set_changed(state, manager) -> bool:
    """Whether the environment's stamp holds the hash of another pinned list: a finished installation from
    before the plugin was upgraded (an unfinished one has none: Repair, not Upgrade). Reads a small file."""
    if state is None or not state.exists or state.current:
        return False
    try:
        return bool(manager.read_stamp(state.folder).get("hash"))
    except (AttributeError, OSError, ValueError):
        return True


def gibibytes(count: Optional[float]) -> str:
    return "unknown" if count is None else f"{count / 1024 ** 3:.1f} GiB"


def device_text(state) -> str:
    """The device in words: the GPU with its memory and CUDA version, MPS or the CPU."""
    if state is None:
        return "…"
    gpu = ""
    if state.gpu_name:
        memory = f", {state.gpu_memory_mib / 1024:.1f} GiB" if state.gpu_memory_mib else ""
        gpu = f"{state.gpu_name}{memory}"
    device = (state.device or "").lower()
    if device.startswith("cuda"):
        cuda = f", CUDA {state.cuda_version}" if state.cuda_version else ""
        return f"GPU: {gpu or 'NVIDIA GPU'}{cuda}"
    if device == "mps":
        return "Apple GPU (MPS)"
    if device == "cpu":
        return f"CPU ({gpu} found but not used)" if gpu else "CPU"
    if gpu:
        return f"{gpu} found"
    return "Known once installed" if not state.exists else "Not known (the check did not get that far)"


def versions_text(state) -> str:
    versions = getattr(state, "versions", None) or {}
    return ", ".join(f"{name} {version}" for name, version in versions.items() if version) or "—"


class EnvironmentDialog(QDialog):
    """Non-modal; one per plugin (``plugin/main.py`` keeps it). ``manager``: the module
    ``dl_engine.environment.manager`` (a stand-in in tests)."""

    installed = pyqtSignal()  # an installation or repair ended with the environment ready

    def __init__(self, parent=None, manager=None, message_bar=None):
        super().__init__(parent)
        self.setWindowTitle(TITLE)
        self.setWindowIcon(QIcon(ENVIRONMENT_ICON))
        self._manager = manager
        self.message_bar = message_bar  # QGIS's message bar: the outcome of an installation shows there too
        self.state = None
        self.outdated = False  # pinned_set_changed(state)
        self.error: Optional[str] = None  # the last job's failure, shown under the state
        self.log_path: Optional[str] = None  # a failed installation's log
        self.task: Optional[environment_task.EnvironmentTask] = None  # the job the dialog follows
        self._build()
        self._load_settings()
        self.refresh()
        # no setMinimumWidth: the layout's minimum (whole paths) must hold; wider than that for the versions
        self.resize(max(self.sizeHint().width(), 720), self.sizeHint().height())

    # ---- layout ---------------------------------------------------------------------------------

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        self.status_label = QLabel()
        self.status_label.setTextFormat(Qt.RichText)
        layout.addWidget(self.status_label)
        self.problems_label = QLabel()
        self.problems_label.setWordWrap(True)
        self.problems_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.problems_label.setStyleSheet("color: #c62828")
        layout.addWidget(self.problems_label)

        facts = QFormLayout()
        self.device_label, self.versions_label, self.folder_label, self.python_label, self.disk_label = (
            QLabel(), QLabel(), QLabel(), QLabel(), QLabel())
        for label in (self.device_label, self.versions_label, self.folder_label, self.python_label, self.disk_label):
            label.setWordWrap(label not in (self.folder_label, self.python_label))  # a path stays whole
            label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        facts.addRow("Device:", self.device_label)
        facts.addRow("Versions:", self.versions_label)
        facts.addRow("Location:", self.folder_label)
        facts.addRow("Python:", self.python_label)
        facts.addRow("Disk space:", self.disk_label)
        layout.addLayout(facts)

        options = QGroupBox("Installation")
        form = QFormLayout(options)
        self.device_combo = QComboBox()
        for label, value in DEVICES:
            self.device_combo.addItem(label, value)
        self.device_combo.setToolTip(DEVICE_TIP)
        form.addRow("Device:", self.device_combo)
        advanced = QgsCollapsibleGroupBox("Advanced")
        advanced.setCollapsed(True)
        advanced_form = QFormLayout(advanced)
        self.index_edit = QLineEdit()
        self.index_edit.setPlaceholderText("empty: your pip configuration (PyPI); or an index URL or a wheel folder")
        self.index_edit.setToolTip("For sites without internet access: a package index URL (a mirror) or a "
                                   "folder holding the wheels (pip download of requirements-engine.txt).")
        browse = QPushButton("Folder…")
        browse.clicked.connect(self._browse_wheels)
        row = QHBoxLayout()
        row.addWidget(self.index_edit)
        row.addWidget(browse)
        advanced_form.addRow("Package index or wheel folder:", row)
        self.base_python = QgsFileWidget()
        self.base_python.setStorageMode(QgsFileWidget.GetFile)
        self.base_python.lineEdit().setPlaceholderText("empty: QGIS's own Python")
        self.base_python.setToolTip("The Python the environment is created from (3.9 or later).")
        advanced_form.addRow("Create from Python:", self.base_python)
        form.addRow(advanced)
        layout.addWidget(options)

        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 100)
        self.cancel_button = QPushButton("Cancel installation")
        self.cancel_button.clicked.connect(self.cancel)
        row = QHBoxLayout()
        row.addWidget(self.progress_bar)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        self.progress_label = QLabel()
        self.progress_label.setWordWrap(True)
        layout.addWidget(self.progress_label)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(environment_task.LOG_LINES_KEPT)
        self.log_view.setMinimumHeight(120)
        layout.addWidget(self.log_view, 1)
        layout.addStretch(0)  # room left over goes below, not between the lines above

        buttons = QDialogButtonBox()
        self.install_button = buttons.addButton("Install", QDialogButtonBox.ActionRole)
        self.repair_button = buttons.addButton("Repair", QDialogButtonBox.ActionRole)
        self.reset_button = buttons.addButton("Reset…", QDialogButtonBox.ActionRole)
        self.report_button = buttons.addButton("Copy report", QDialogButtonBox.ActionRole)
        self.log_button = buttons.addButton("Open log", QDialogButtonBox.ActionRole)
        self.close_button = buttons.addButton(QDialogButtonBox.Close)
        self.install_button.setToolTip("Create the environment and install the pinned packages "
                                       "(Upgrade: install the plugin's new pinned set).")
        self.repair_button.setToolTip("Make the environment again from scratch and install every package.")
        self.reset_button.setToolTip("Remove the environment's folder.")
        self.report_button.setToolTip("Copy versions, device, CUDA, GPU memory, free disk and problems "
                                      "(for a bug report).")
        self.install_button.clicked.connect(lambda: self.install(reinstall=False))
        self.repair_button.clicked.connect(lambda: self.install(reinstall=True))
        self.reset_button.clicked.connect(self.reset)
        self.report_button.clicked.connect(self.copy_report)
        self.log_button.clicked.connect(self.open_log)
        self.close_button.clicked.connect(self.close)
        layout.addWidget(buttons)

    def _browse_wheels(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of wheels", self.index_edit.text())
        if folder:
            self.index_edit.setText(folder)

    # ---- the manager ----------------------------------------------------------------------------

    def manager(self):
        if self._manager is None:
            self._manager = environment_task.environment_manager()
        return self._manager

    def options(self, reinstall: bool):
        """The ``InstallOptions`` the dialog's choices make."""
        return self.manager().InstallOptions(
            device=self.device_combo.currentData(),
            package_index=self.index_edit.text().strip() or None,
            reinstall=reinstall,
            base_python=self.base_python.filePath().strip() or None,
            proxy=qgis_proxy(),  # QGIS's proxy settings, as the install algorithm passes them
        )

    def _load_settings(self) -> None:
        settings = QgsSettings()
        index = self.device_combo.findData(settings.value(DEVICE_SETTING, "auto", type=str))
        self.device_combo.setCurrentIndex(max(index, 0))
        self.index_edit.setText(settings.value(PACKAGE_INDEX_SETTING, "", type=str))
        self.base_python.setFilePath(settings.value(BASE_PYTHON_SETTING, "", type=str))

    def _save_settings(self) -> None:
        settings = QgsSettings()
        settings.setValue(DEVICE_SETTING, self.device_combo.currentData())
        settings.setValue(PACKAGE_INDEX_SETTING, self.index_edit.text().strip())
        settings.setValue(BASE_PYTHON_SETTING, self.base_python.filePath().strip())

    # ---- jobs -----------------------------------------------------------------------------------

    def refresh(self) -> None:
        """Follow a running installation, else check the environment (smoke test included) in a task."""
        if self.task is not None:
            return
        try:
            task = environment_task.running("install") or environment_task.inspect_task(manager=self.manager())
            environment_task.start(task, follow=self._follow)
        except ImportError as error:  # the plugin's own files are incomplete
            self.error = f"The environment manager cannot be loaded ({error}); reinstall the plugin."
            self.show_state()

    def install(self, reinstall: bool = False) -> None:
        if self.task is not None:
            return
        try:
            options = self.options(reinstall)
        except ImportError as error:
            self.error = f"The environment manager cannot be loaded ({error}); reinstall the plugin."
            self.show_state()
            return
        self._save_settings()
        self.error, self.log_path = None, None
        self.log_view.clear()
        environment_task.start(environment_task.install_task(options, manager=self.manager()), follow=self._follow)

    def reset(self) -> None:
        if self.task is not None or self.state is None:
            return
        answer = QMessageBox.question(
            self, TITLE,
            f"Remove the deep learning environment?\n\n{self.state.folder}\n\nIts packages are deleted; the "
            f"tools cannot run until it is installed again.",
            QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        if answer != QMessageBox.Yes:
            return
        self.error, self.log_path = None, None
        environment_task.start(environment_task.reset_task(self.state.folder, manager=self.manager()),
                               follow=self._follow)

    def cancel(self) -> None:
        if self.task is not None and self.task.kind == "install":
            self.progress_label.setText("Canceling…")
            self.task.cancel()

    def _follow(self, task: environment_task.EnvironmentTask) -> None:
        """Show ``task`` as it goes (called before it is queued, or when it already runs)."""
        self.task = task
        if task.kind == "install" and task.lines and not self.log_view.toPlainText():
            self.log_view.setPlainText("\n".join(task.lines))
        self.progress_label.setText(task.text)
        task.progressChanged.connect(self._on_progress)
        task.progress_text.connect(self.progress_label.setText)
        task.log_line.connect(self.log_view.appendPlainText)
        task.ended.connect(self._on_ended)
        self.progress_bar.setValue(int(task.progress()))
        self.show_state()

    def _on_progress(self, percent: float) -> None:
        self.progress_bar.setValue(int(percent))

    def _on_ended(self, task) -> None:
        if task is not self.task:
            return
        self.task = None
        if task.state is not None:
            self.state = task.state
            self.outdated = pinned_set_changed(self.state, self.manager())
        if task.kind == "install":
            self.error, self.log_path = task.error, task.log_path
            self._announce(task)
            if task.error is None and status_of(self.state, self.outdated) == READY:
                self.installed.emit()
            if task.error is not None:
                # after a failure or a cancel, what is there now (quick: no smoke test)
                environment_task.start(environment_task.inspect_task(manager=self.manager(), smoke=False),
                                       follow=self._follow)
                return
        elif task.error is not None:
            self.error = task.error
        self.show_state()

    def _announce(self, task) -> None:
        """An installation's outcome in QGIS's message bar too (the dialog may be closed by then)."""
        if self.message_bar is None:
            return
        if task.error is None:
            text, level = f"The deep learning environment is ready ({device_text(task.state)}).", Qgis.Success
        elif task.canceled:
            text, level = "Installation canceled; Install again to go on from where it stopped.", Qgis.Info
        else:
            text, level = task.error, Qgis.Critical
        try:
            self.message_bar.pushMessage(TITLE, text, level, 0 if level == Qgis.Critical else 10)
        except Exception:  # a stand-in message bar
            pass

    # ---- showing --------------------------------------------------------------------------------

    def status(self) -> str:
        if self.task is not None and self.task.kind == "install":
            return INSTALLING
        if self.task is not None and self.state is None:
            return CHECKING
        return status_of(self.state, self.outdated)

    def show_state(self) -> None:
        state, status = self.state, self.status()
        words, colour = STATUS_WORDS[status]
        if self.task is not None and self.task.kind == "reset":
            words, colour = "Removing…", STATUS_WORDS[INSTALLING][1]
        self.status_label.setText(f"<b>State:</b> <span style='color:{colour}; font-weight:bold'>{words}</span>")
        # the problems of an environment there is (not installed says it all; checking: not known yet)
        problems = list(getattr(state, "problems", None) or []) if status in (READY, NEEDS_UPGRADE, BROKEN) else []
        if self.error:
            problems.insert(0, self.error)
        self.problems_label.setText("\n".join(f"• {p}" for p in problems))
        self.problems_label.setVisible(bool(problems))

        self.device_label.setText(device_text(state))
        self.versions_label.setText(versions_text(state) if state is not None else "…")
        self.folder_label.setText(state.folder if state is not None else "…")
        self.python_label.setText(state.python if state is not None and state.exists else "—")
        self.disk_label.setText(self._disk_text(state))

        busy = self.task is not None
        self.install_button.setText("Upgrade" if status == NEEDS_UPGRADE else "Install")
        self.install_button.setEnabled(not busy and status in (NOT_INSTALLED, NEEDS_UPGRADE, BROKEN))
        exists = bool(state is not None and state.exists)
        self.repair_button.setEnabled(not busy and exists)
        self.reset_button.setEnabled(not busy and exists)
        self.report_button.setEnabled(state is not None)
        self.log_button.setEnabled(bool(self.current_log() and os.path.isfile(self.current_log())))
        installing = busy and self.task.kind == "install"
        self.cancel_button.setVisible(installing)
        self.device_combo.setEnabled(not busy)
        for widget in (self.progress_bar, self.progress_label):
            widget.setVisible(busy)
        self.log_view.setVisible(installing or bool(self.log_view.toPlainText()))

    def _disk_text(self, state) -> str:
        try:
            needed = self.manager().DISK_NEEDED_BYTES
        except ImportError:
            needed = None
        free = getattr(state, "free_disk_bytes", None)
        text = f"needs about {gibibytes(needed)}; {gibibytes(free)} free"
        if needed is not None and free is not None and free < needed and not getattr(state, "ready", False):
            text += " — not enough: free some space or set DLT_ENV_DIR to another disk before QGIS starts"
        return text

    def current_log(self) -> Optional[str]:
        return self.log_path or getattr(self.state, "log_path", None)

    # ---- report and log -------------------------------------------------------------------------

    def copy_report(self) -> None:
        if self.state is None:
            return
        text = self.manager().report_text(self.state)
        if self.error:
            text += f"\nLast error: {self.error}\n"
        QApplication.clipboard().setText(text)
        self.progress_label.setText("The report is on the clipboard.")
        self.progress_label.setVisible(True)

    def open_log(self) -> None:
        path = self.current_log()
        if path and os.path.isfile(path):
            QDesktopServices.openUrl(QUrl.fromLocalFile(path))

    def closeEvent(self, event):  # noqa: N802 (Qt API name)
        if self.task is not None and self.task.kind == "install":
            self.progress_label.setText("The installation goes on in the background (see the task manager).")
        super().closeEvent(event)
