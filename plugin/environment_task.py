"""The engine environment's slow jobs as ``QgsTask``s: install (or repair), inspect with its smoke test, reset.

They run in the task manager's worker thread, so QGIS stays responsive and their progress shows in the task
manager, where they can be canceled as well as from the environment dialog. ``dl_engine.environment.manager``
does the work (standard library only); a dialog follows a task through its signals:

- ``progress_text(str)``: what the job is doing now (the percent goes through QgsTask's ``progressChanged``);
- ``log_line(str)``: one line of the installation's log;
- ``ended(task)``: on the main thread once the task is over; then ``state`` (an ``EnvironmentState``) or
  ``error`` (a message; ``canceled`` tells a cancel apart; ``log_path`` where the installation log is).
"""

from collections import deque
from typing import Callable, Deque, List, Optional

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from dl_engine.errors import Canceled, InputError

LOG_TAG = "Deep learning tools"

# The dialog's labels of the install options, for messages that name an option ("Device (DEVICE): …").
OPTION_LABELS = {"DEVICE": "Device", "PACKAGE_INDEX": "Package index or wheel folder", "BASE_PYTHON": "Python"}

# Tasks stay referenced until they end: the task manager owns the C++ object, but the Python subclass
# (run/finished and the signals) must not be garbage-collected meanwhile.
_RUNNING: List["EnvironmentTask"] = []
LOG_LINES_KEPT = 500


def environment_manager():
    """``dl_engine.environment.manager``, imported on use: the plugin loads even where it cannot be."""
    from dl_engine.environment import manager

    return manager


class EnvironmentTask(QgsTask):
    """One job of the environment ``manager``: ``job(task)`` returns the environment's state."""

    progress_text = pyqtSignal(str)
    log_line = pyqtSignal(str)
    ended = pyqtSignal(object)

    def __init__(self, description: str, kind: str, job: Callable[["EnvironmentTask"], object], manager,
                 can_cancel: bool = True):
        super().__init__(description, QgsTask.CanCancel if can_cancel else QgsTask.Flags())
        self.kind = kind  # "install", "inspect" or "reset"
        self.job = job
        self.manager = manager
        self.state = None
        self.error: Optional[str] = None
        self.canceled = False
        self.log_path: Optional[str] = None
        # what was reported so far, for a dialog that starts following the task late (opened again)
        self.text = ""
        self.lines: Deque[str] = deque(maxlen=LOG_LINES_KEPT)

    # -- called from the worker thread: only thread-safe calls (signals, setProgress, the message log) --

    def report(self, percent: float, message: str = "") -> None:
        """The manager's ``progress(percent, message)``."""
        self.setProgress(max(0.0, min(100.0, float(percent))))
        if message:
            self.text = str(message)
            self.progress_text.emit(self.text)

    def log(self, line: str) -> None:
        """The manager's ``log(line)``."""
        self.lines.append(str(line))
        self.log_line.emit(str(line))

    def run(self) -> bool:
        try:
            self.state = self.job(self)
            return True
        except Canceled as canceled:
            self.canceled, self.error = True, str(canceled) or f"{self.description()}: canceled"
        except InputError as bad:
            label = OPTION_LABELS.get(bad.parameter or "")
            where = f"{label} ({bad.parameter}): " if label else (f"{bad.parameter}: " if bad.parameter else "")
            self.error = where + bad.message
        except Exception as failed:  # never let an exception escape into the task manager
            install_error = getattr(self.manager, "EnvironmentInstallError", None)
            if install_error is not None and isinstance(failed, install_error):
                self.error = str(failed)  # says what failed and where the log is
                self.log_path = getattr(failed, "log_path", None)
            else:
                import traceback

                QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.Warning, notifyUser=False)
                self.error = f"{self.description()} failed: {type(failed).__name__}: {failed}"
        return False

    # -- main thread --

    def finished(self, ok: bool) -> None:
        try:
            if self.error is None and not ok:  # canceled before run() started
                self.canceled, self.error = True, f"{self.description()}: canceled"
            if self.error and not self.canceled and self.kind != "inspect":
                QgsMessageLog.logMessage(self.error, LOG_TAG, Qgis.Warning)
            self.ended.emit(self)
        finally:
            if self in _RUNNING:
                _RUNNING.remove(self)


def running(kind: str = "install") -> Optional[EnvironmentTask]:
    """The task of that kind still running (a dialog opened again follows it)."""
    for task in _RUNNING:
        if task.kind == kind:
            return task
    return None


def start(task: EnvironmentTask, follow: Optional[Callable[[EnvironmentTask], None]] = None) -> EnvironmentTask:
    """Queue ``task`` in the task manager, ``follow(task)`` first (connect its signals before it can emit).
    One installation at a time: while one runs, a new one is not queued and that one is followed and returned."""
    current = running("install") if task.kind == "install" else None
    task = current or task
    if follow is not None:
        follow(task)
    if current is None:
        _RUNNING.append(task)
        QgsApplication.taskManager().addTask(task)
    return task


def install_task(options, manager=None) -> EnvironmentTask:
    """Install, or repair with ``options.reinstall`` (not queued yet: ``start``)."""
    manager = manager or environment_manager()
    words = "Repairing" if getattr(options, "reinstall", False) else "Installing"

    def job(task: EnvironmentTask):
        task.report(0, f"{words} the deep learning environment…")
        return manager.install(options, progress=task.report, log=task.log, is_canceled=task.isCanceled)

    return EnvironmentTask(f"{words} the deep learning environment", "install", job, manager)


def inspect_task(folder: Optional[str] = None, manager=None, smoke: bool = True) -> EnvironmentTask:
    """Inspect the environment, with its smoke test (seconds) unless ``smoke`` is False."""
    manager = manager or environment_manager()

    def job(task: EnvironmentTask):
        task.report(0, "Checking the deep learning environment…")
        return manager.inspect(folder, smoke=smoke)

    # inspect() has no cancel hook: the task manager must not offer a cancel that does nothing
    return EnvironmentTask("Checking the deep learning environment", "inspect", job, manager, can_cancel=False)


def reset_task(folder: Optional[str] = None, manager=None) -> EnvironmentTask:
    """Remove the environment (gigabytes of files: seconds); ``state`` is the state after."""
    manager = manager or environment_manager()

    def job(task: EnvironmentTask):
        task.report(0, "Removing the deep learning environment…")
        manager.reset(folder)
        return manager.inspect(folder, smoke=False)

    return EnvironmentTask("Removing the deep learning environment", "reset", job, manager, can_cancel=False)
