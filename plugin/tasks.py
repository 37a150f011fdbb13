"""Training as a background ``QgsTask`` (GUI and PyQGIS scripts that should not block).

The Processing algorithm already runs in Processing's own background task; this is for
callers outside Processing:

    from deep_learning_tools.plugin.tasks import start_training
    task = start_training({"IN_FOLDER": "/data/chips", "OUT_FOLDER": "/data/model",
                           "MAX_EPOCHS": 10, "BACKBONE_MODEL": "RESNET18"},
                          on_finished=lambda t: print(t.result or t.error))

Parameters are the algorithm's (same names, enums by index) and are checked at once, on
the calling thread: bad input raises ``QgsProcessingException`` before any task starts.
``run()`` (a worker thread) only runs the worker process through the same runner as the
algorithm; messages and the callback come in ``finished()``, on the main thread.
"""

from typing import Callable, List, Optional

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsMessageLog,
    QgsProcessingContext,
    QgsProcessingException,
    QgsTask,
)

from ..processing_provider.train_deep_learning_model import TrainDeepLearningModel, run_training
from dl_engine.errors import Canceled

LOG_TAG = "Deep learning tools"

# Tasks started here stay referenced until they finish: the task manager owns the C++
# object, but the Python subclass (run/finished) must not be garbage-collected meanwhile.
_RUNNING: List["TrainModelTask"] = []


class _TaskFeedback:
    """The runner's feedback, backed by the task: progress, cancel, messages.

    Called from the worker thread: only thread-safe calls (QgsTask.setProgress emits a
    queued signal, QgsMessageLog is thread-safe)."""

    def __init__(self, task: "TrainModelTask"):
        self.task = task

    def isCanceled(self) -> bool:  # noqa: N802 (QgsFeedback API name)
        return self.task.isCanceled()

    def setProgress(self, percent: float) -> None:  # noqa: N802
        self.task.setProgress(percent)

    def setProgressText(self, text: str) -> None:  # noqa: N802
        self.task.progress_text = text

    def pushInfo(self, text: str) -> None:  # noqa: N802
        self._log(text, Qgis.Info)

    def pushConsoleInfo(self, text: str) -> None:  # noqa: N802
        self._log(text, Qgis.Info)

    def pushDebugInfo(self, text: str) -> None:  # noqa: N802
        self.task.messages.append(text)

    def pushWarning(self, text: str) -> None:  # noqa: N802
        self._log(text, Qgis.Warning)

    def _log(self, text: str, level) -> None:
        self.task.messages.append(text)
        QgsMessageLog.logMessage(text, LOG_TAG, level, notifyUser=False)


class TrainModelTask(QgsTask):
    """Runs Train Deep Learning Model in the background.

    After it ends: ``result`` (the algorithm's outputs: OUT_MODEL_FILE, OUT_FOLDER, METRICS)
    or ``error`` (a message); ``canceled`` tells a cancel apart; ``messages`` holds the log.
    """

    def __init__(self, parameters: dict, on_finished: Optional[Callable[["TrainModelTask"], None]] = None,
                 description: str = "Train Deep Learning Model", python: Optional[str] = None):
        super().__init__(description, QgsTask.CanCancel)
        # The parameters are read here, on the caller's thread: QGIS objects stay out of run().
        algorithm = TrainDeepLearningModel()
        algorithm.initAlgorithm()
        self.config = algorithm.build_config(dict(parameters), QgsProcessingContext())
        algorithm.check_model_type(self.config.model_type)
        self.python = python
        self.on_finished = on_finished
        self.result: Optional[dict] = None
        self.error: Optional[str] = None
        self.canceled = False
        self.messages: List[str] = []
        self.progress_text = ""

    def run(self) -> bool:
        try:
            self.result = run_training(self.config, _TaskFeedback(self), python=self.python)
            return True
        except Canceled as canceled:
            self.canceled, self.error = True, str(canceled)
        except QgsProcessingException as failed:
            self.error = str(failed)
        except Exception as failed:  # never let an exception escape into the task manager
            self.error = f"Training failed: {type(failed).__name__}: {failed}"
        return False

    def finished(self, ok: bool) -> None:  # main thread
        try:
            if self.error is None and not ok:  # canceled before run() started
                self.canceled, self.error = True, "Training canceled"
            _notify(self)
            if self.on_finished is not None:
                self.on_finished(self)
        finally:
            if self in _RUNNING:
                _RUNNING.remove(self)


def _notify(task: TrainModelTask) -> None:
    if task.result is not None:
        text, level = f"Model trained: {task.result['OUT_MODEL_FILE']}", Qgis.Success
    elif task.canceled:
        text, level = task.error or "Training canceled", Qgis.Info
    else:
        text, level = task.error or "Training failed", Qgis.Critical
    QgsMessageLog.logMessage(text, LOG_TAG, level)
    try:
        from qgis.utils import iface
    except ImportError:
        iface = None
    if iface is not None and hasattr(iface, "messageBar"):
        try:
            iface.messageBar().pushMessage(LOG_TAG, text, level, 0 if level == Qgis.Critical else 10)
        except Exception:  # a stand-in iface without a real message bar (tests, qgis_process)
            pass


def start_training(parameters: dict, on_finished: Optional[Callable[[TrainModelTask], None]] = None,
                   python: Optional[str] = None) -> TrainModelTask:
    """Check the parameters, then train in the background; returns the task (already queued)."""
    task = TrainModelTask(parameters, on_finished=on_finished, python=python)
    _RUNNING.append(task)
    QgsApplication.taskManager().addTask(task)
    return task
