"""TrainModelTask: training in the QGIS task manager, with a fake worker (and a real one
once the engine has landed)."""

import json
import os
import time

import pytest
from qgis.core import Qgis, QgsApplication, QgsProcessingException
from qgis.PyQt.QtCore import QCoreApplication

from dlt_train_helpers import dlpk_and_emd, export_buildings, fake_export, fake_python, needs_engine, tiny_training_params


@pytest.fixture
def tasks(provider):
    from deep_learning_tools.plugin import tasks

    return tasks


def wait_for(task, timeout=60.0):
    """Process events until the task manager has finished the task (finished() ran)."""
    done = []
    task.taskCompleted.connect(lambda: done.append("completed"))
    task.taskTerminated.connect(lambda: done.append("terminated"))
    deadline = time.monotonic() + timeout
    while not done and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    for _ in range(20):  # let the queued finished() call run
        QCoreApplication.processEvents()
    assert done, f"task still {task.status()} after {timeout} s"
    return done[0]


def test_task_runs_to_completion(tasks, tmp_path, monkeypatch, qgis_iface):
    monkeypatch.setenv("DLT_PYTHON", fake_python(tmp_path, "config"))
    finished = []
    progress = []
    task = tasks.start_training(
        {"IN_FOLDER": fake_export(tmp_path / "chips"), "OUT_FOLDER": str(tmp_path / "model"), "MAX_EPOCHS": 2},
        on_finished=finished.append,
    )
    task.progressChanged.connect(progress.append)
    assert wait_for(task) == "completed"
    assert finished == [task]
    assert task.error is None and not task.canceled
    assert task.result["OUT_MODEL_FILE"] == str(tmp_path / "model" / "fake.dlpk")
    assert json.loads(task.result["METRICS"])["config"]["max_epochs"] == 2
    assert task not in tasks._RUNNING  # the manager deleted the C++ task; result/error stay readable
    assert f"Deep learning tools:Model trained: {tmp_path / 'model' / 'fake.dlpk'}" in (
        qgis_iface.messageBar().get_messages(Qgis.Success))


def test_task_checks_parameters_before_starting(tasks, tmp_path):
    count = QgsApplication.taskManager().count()
    with pytest.raises(QgsProcessingException, match="^IN_FOLDER"):
        tasks.start_training({"IN_FOLDER": str(tmp_path / "nothing"), "OUT_FOLDER": str(tmp_path / "model")})
    assert QgsApplication.taskManager().count() == count


def test_task_reports_worker_errors(tasks, tmp_path, monkeypatch):
    monkeypatch.setenv("DLT_PYTHON", fake_python(tmp_path, "error"))
    task = tasks.start_training({"IN_FOLDER": fake_export(tmp_path / "chips"), "OUT_FOLDER": str(tmp_path / "m")})
    assert wait_for(task) == "terminated"
    assert task.result is None and not task.canceled
    assert task.error.startswith("BATCH_SIZE: must be at least 1")


@pytest.mark.heavy  # seconds of waiting for a process to stop (make test runs it)
@pytest.mark.parametrize("mode", ["slow", "stubborn"])
def test_task_cancel_stops_the_worker(tasks, tmp_path, monkeypatch, mode):
    monkeypatch.setenv("DLT_PYTHON", fake_python(tmp_path, mode))
    out = tmp_path / "model"
    task = tasks.start_training({"IN_FOLDER": fake_export(tmp_path / "chips"), "OUT_FOLDER": str(out)})
    # The fake worker in these modes writes no pid (its arguments are the runner's), so wait
    # for its first progress event instead.
    deadline = time.monotonic() + 30
    while task.progress() < 10 and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    assert task.progress() >= 10, "the worker never reported progress"
    canceled_at = time.monotonic()
    task.cancel()
    assert wait_for(task, timeout=10) == "terminated"
    assert time.monotonic() - canceled_at < 2.5  # < 2 s to stop the worker, plus event processing
    assert task.canceled and task.result is None
    assert task.error.startswith("Training canceled")
    if mode == "slow":
        assert "resume true" in task.error


@pytest.mark.trains
@needs_engine
@pytest.mark.slow
def test_task_trains_for_real(tasks, data_dir, tmp_path):
    export = export_buildings(data_dir, tmp_path / "chips")
    task = tasks.start_training(tiny_training_params(export, tmp_path / "model"))
    assert wait_for(task, timeout=600) == "completed", task.error
    packages, emds = dlpk_and_emd(tmp_path / "model")
    assert len(packages) == 1 and len(emds) == 1
    assert os.path.isfile(task.result["OUT_MODEL_FILE"])
    assert any(line.startswith("Epoch") and "samples/s" in line for line in task.messages)
