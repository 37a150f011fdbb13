"""The "Deep learning jobs" dock: every training, AutoDL search and inference run of this QGIS
(plugin/jobs.py), whichever way it was started, and the histories opened from disk.

Above, one row per run: its name, status and progress. Below, the selected run: its phase, a
chart of the training and validation loss and the monitored metric per epoch (plugin/chart.py;
AutoDL: the running trial's, and the leaderboard as it fills), links to the output folder and
model_metrics.html, Cancel, and "Open history…" for a run finished earlier (a folder with
training_events.jsonl, or AutoDL's <model>_events.jsonl).
"""

from __future__ import annotations

import time
from typing import List, Optional

from qgis.gui import QgsDockWidget
from qgis.PyQt.QtCore import QUrl, Qt
from qgis.PyQt.QtGui import QDesktopServices
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .chart import COLORS, LEFT, RIGHT, LineChart, Series
from .jobs import FINISHED, KINDS, RUNNING, Job, JobRegistry

TITLE = "Deep learning jobs"
OBJECT_NAME = "DeepLearningJobsDock"
COLUMNS = ("Run", "Status", "Progress")
LEADERBOARD_COLUMNS = ("rank", "trial", "value", "epochs", "status")
MESSAGE_CHARS = 140


class JobsDock(QgsDockWidget):
    """Follows a ``JobRegistry``; ``select(run_id)`` shows a run below the list."""

    def __init__(self, registry: JobRegistry, parent: Optional[QWidget] = None):
        super().__init__(TITLE, parent)
        self.setObjectName(OBJECT_NAME)
        self.registry = registry
        self._items = {}  # run_id -> QTreeWidgetItem
        self.current: Optional[str] = None

        self.list = QTreeWidget()
        self.list.setHeaderLabels(list(COLUMNS))
        self.list.setRootIsDecorated(False)
        self.list.setSelectionMode(QAbstractItemView.SingleSelection)
        self.list.header().setSectionResizeMode(0, QHeaderView.Stretch)
        self.list.header().setSectionResizeMode(1, QHeaderView.ResizeToContents)
        self.list.header().setStretchLastSection(False)
        self.list.setColumnWidth(2, 90)
        self.list.currentItemChanged.connect(self._on_current)

        self.phase = QLabel()
        self.phase.setWordWrap(True)
        self.phase.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.chart = LineChart()
        self.leaderboard = QTableWidget(0, len(LEADERBOARD_COLUMNS))
        self.leaderboard.setHorizontalHeaderLabels(list(LEADERBOARD_COLUMNS))
        self.leaderboard.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.leaderboard.verticalHeader().setVisible(False)
        self.leaderboard.horizontalHeader().setSectionResizeMode(1, QHeaderView.Stretch)
        self.links = QLabel()
        self.links.setTextFormat(Qt.RichText)
        self.links.setTextInteractionFlags(Qt.LinksAccessibleByMouse | Qt.LinksAccessibleByKeyboard)
        self.links.linkActivated.connect(self.open_link)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the selected run; a training keeps its checkpoint, resumable with "
                                      "ARGUMENTS 'resume true'")
        self.cancel_button.clicked.connect(self.cancel_current)
        self.open_button = QPushButton("Open history…")
        self.open_button.setToolTip("Show a run finished earlier: its OUT_FOLDER (training_events.jsonl), or "
                                    "AutoDL's <model>_events.jsonl")
        self.open_button.clicked.connect(self.ask_history)

        details = QWidget()
        layout = QVBoxLayout(details)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.phase)
        layout.addWidget(self.chart, 3)
        layout.addWidget(self.leaderboard, 2)
        layout.addWidget(self.links)
        buttons = QHBoxLayout()
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        buttons.addWidget(self.open_button)
        layout.addLayout(buttons)
        splitter = QSplitter(Qt.Vertical)
        splitter.addWidget(self.list)
        splitter.addWidget(details)
        splitter.setStretchFactor(1, 3)
        splitter.setSizes([120, 480])
        self.setWidget(splitter)

        registry.added.connect(self._on_added)
        registry.changed.connect(self._on_changed)
        for run_id in registry.jobs:
            self._on_added(run_id)
        self._show(None)

    # ---- the list ----------------------------------------------------------------------------------

    def rows(self) -> List[List[str]]:
        """The list as text: [run, status, progress] per row, newest first."""
        rows = []
        for i in range(self.list.topLevelItemCount()):
            item = self.list.topLevelItem(i)
            bar = self.list.itemWidget(item, 2)
            rows.append([item.text(0), item.text(1), f"{bar.value()} %" if bar is not None else ""])
        return rows

    def _on_added(self, run_id: str) -> None:
        item = self._items.get(run_id)
        if item is None:
            item = QTreeWidgetItem()
            item.setData(0, Qt.UserRole, run_id)
            self.list.insertTopLevelItem(0, item)
            bar = QProgressBar()
            bar.setRange(0, 100)
            bar.setTextVisible(True)
            bar.setMaximumHeight(self.list.fontMetrics().height() + 4)
            self.list.setItemWidget(item, 2, bar)
            self._items[run_id] = item
        self._update_row(run_id)
        self.select(run_id)  # the newest run is the one a person wants to watch

    def _on_changed(self, run_id: str) -> None:
        if run_id not in self._items:
            self._on_added(run_id)
            return
        self._update_row(run_id)
        if run_id == self.current:
            self._show(self.registry.jobs.get(run_id))

    def _update_row(self, run_id: str) -> None:
        job = self.registry.jobs.get(run_id)
        item = self._items.get(run_id)
        if job is None or item is None:
            return
        item.setText(0, job.title)
        item.setToolTip(0, f"{job.title}\nstarted {time.strftime('%Y-%m-%d %H:%M', time.localtime(job.started))}"
                           + (f"\n{job.out_folder}" if job.out_folder else ""))
        item.setText(1, job.status)
        item.setToolTip(1, job.message or job.status)
        bar = self.list.itemWidget(item, 2)
        if bar is not None:
            bar.setValue(int(round(job.percent)))

    def select(self, run_id: str) -> None:
        item = self._items.get(run_id)
        if item is not None:
            self.list.setCurrentItem(item)
            self.current = run_id
            self._show(self.registry.jobs.get(run_id))

    def _on_current(self, item, _previous) -> None:
        if item is None:
            return
        self.current = item.data(0, Qt.UserRole)
        self._show(self.registry.jobs.get(self.current))

    # ---- the selected run --------------------------------------------------------------------------

    def _show(self, job: Optional[Job]) -> None:
        if job is None:
            self.phase.setText("No run yet: start a training, AutoDL or an inference tool, or open the history "
                               "of an earlier training.")
            self.chart.set_series([])
            self.leaderboard.hide()
            self.links.setText("")
            self.cancel_button.setEnabled(False)
            return
        state = job.status if job.status != RUNNING else f"{job.percent:.0f} %"
        text = f"<b>{job.title}</b> — {state}" + (f": {_escape(job.phase)}" if job.phase and job.status == RUNNING
                                                 else "")
        if job.message:  # a warning can run to a paragraph: its start here, all of it in the tooltip
            shown = job.message if len(job.message) <= MESSAGE_CHARS else job.message[:MESSAGE_CHARS - 1] + "…"
            text += f"<br>{_escape(shown)}"
        self.phase.setText(text)
        self.phase.setToolTip(job.message)
        self.chart.set_series(chart_series(job), title=chart_title(job))
        self.chart.setVisible(job.kind != KINDS["infer"])
        self._fill_leaderboard(job)
        self.links.setText(" · ".join(f'<a href="{QUrl.fromLocalFile(path).toString()}">{_escape(label)}</a>'
                                      for label, path in job.links()))
        self.links.setToolTip("\n".join(path for _, path in job.links()))
        self.cancel_button.setEnabled(job.cancelable and job.status not in FINISHED)

    def _fill_leaderboard(self, job: Job) -> None:
        if job.kind != KINDS["autodl"]:
            self.leaderboard.hide()
            return
        rows = job.leaderboard()
        self.leaderboard.setRowCount(len(rows))
        for r, row in enumerate(rows):
            for c, key in enumerate(LEADERBOARD_COLUMNS):
                self.leaderboard.setItem(r, c, QTableWidgetItem(str(row.get(key, ""))))
        self.leaderboard.setVisible(bool(rows))

    def leaderboard_rows(self) -> List[List[str]]:
        return [[self.leaderboard.item(r, c).text() if self.leaderboard.item(r, c) else ""
                 for c in range(self.leaderboard.columnCount())] for r in range(self.leaderboard.rowCount())]

    def link_targets(self) -> List[str]:
        """The local paths the links of the selected run open."""
        job = self.registry.jobs.get(self.current) if self.current else None
        return [path for _, path in job.links()] if job is not None else []

    @staticmethod
    def open_link(url: str) -> bool:
        return QDesktopServices.openUrl(QUrl(url))

    def cancel_current(self) -> bool:
        return bool(self.current) and self.registry.cancel(self.current)

    def ask_history(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open the history of a training (its OUT_FOLDER, or the "
                                                        "folder of AutoDL's OUT_MODEL)")
        if folder:
            self.open_history(folder)

    def open_history(self, path: str) -> Optional[Job]:
        try:
            return self.registry.open_history(path)
        except OSError as error:
            QMessageBox.information(self, TITLE, str(error))
            return None


def chart_title(job: Job) -> str:
    if job.kind == KINDS["autodl"] and job.epochs:
        return f"trial {job.epochs[-1].get('trial', '')}"
    if job.epochs and job.epochs[-1].get("epochs"):
        return f"epoch {job.epochs[-1]['epoch']} of {job.epochs[-1]['epochs']}"
    return ""


def chart_series(job: Job) -> List[Series]:
    """Losses on the left axis, the monitored metric on the right."""
    lines = job.series()
    series = [Series(name.replace("_", " "), points, COLORS[i], LEFT if name.endswith("loss") else RIGHT)
              for i, (name, points) in enumerate(lines.items())]
    return series


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def dock_for(iface, registry: JobRegistry) -> JobsDock:
    """The dock, added to QGIS's main window on the right."""
    window = iface.mainWindow() if iface is not None else None
    dock = JobsDock(registry, window)
    if iface is not None:
        iface.addDockWidget(Qt.RightDockWidgetArea, dock)
    return dock
