"""The engine process runner (processing_provider/engine_process.py) with a fake worker script:
events forwarded to the feedback, errors named, crashes summarised, cancel within 2 s."""

import importlib.util
import json
import os
import sys
import threading
import time

import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from dlt_helpers import DATA
from dl_engine.errors import Canceled

FAKE = str(DATA / "fake_worker.py")


class RecordingFeedback(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.infos, self.warnings, self.console, self.progress_values = [], [], [], []
        self.progressChanged.connect(self.progress_values.append)

    def pushInfo(self, text):  # noqa: N802 (QGIS API name)
        self.infos.append(text)

    def pushWarning(self, text):  # noqa: N802
        self.warnings.append(text)

    def pushConsoleInfo(self, text):  # noqa: N802
        self.console.append(text)


@pytest.fixture
def runner():
    from deep_learning_tools.processing_provider import engine_process

    return engine_process


def run_fake(runner, mode, feedback, out=None, **kwargs):
    args = [FAKE, mode] + ([str(out)] if out else [])
    return runner.run_worker(args, feedback, python=sys.executable, **kwargs)


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_success_forwards_events_and_returns_result(runner, tmp_path):
    feedback = RecordingFeedback()
    result = run_fake(runner, "ok", feedback, tmp_path)
    assert result == {
        "out_model_file": str(tmp_path / "model.dlpk"),
        "out_folder": str(tmp_path),
        "metrics": {"accuracy": 0.82, "miou": 0.5},
    }
    assert feedback.progress_values[-1] == 100.0 and 45.0 in feedback.progress_values
    assert "Training UNET on 4 chips" in feedback.infos
    epochs = [line for line in feedback.infos if line.startswith("Epoch")]
    assert len(epochs) == 2
    assert epochs[0].startswith("Epoch 1/2: train_loss 0.5, valid_loss 0.6, accuracy 0.81")
    assert "12.5 samples/s on cpu" in epochs[0] and epochs[0].endswith("1.2 s")
    assert "pretrained weights not cached: random init" in feedback.warnings
    assert any("UserWarning" in w for w in feedback.warnings)  # stderr warnings
    assert "a library printed this" in feedback.console


def test_error_event_names_the_parameter(runner):
    with pytest.raises(QgsProcessingException) as raised:
        run_fake(runner, "error", RecordingFeedback())
    assert str(raised.value) == "BATCH_SIZE: must be at least 1; got 0"


def test_crash_reports_the_end_of_stderr_not_the_traceback(runner):
    with pytest.raises(QgsProcessingException) as raised:
        run_fake(runner, "crash", RecordingFeedback())
    message = str(raised.value)
    assert "exit code 1" in message
    assert "RuntimeError: CUDA error: out of memory" in message
    assert "Traceback" not in message and "boom()" not in message


def test_missing_module_says_which_python_and_how_to_fix(runner):
    with pytest.raises(QgsProcessingException) as raised:
        run_fake(runner, "missing_module", RecordingFeedback())
    message = str(raised.value)
    assert "cannot import 'torch'" in message and sys.executable in message and "DLT_PYTHON" in message


def test_python_that_does_not_exist(runner, tmp_path):
    with pytest.raises(QgsProcessingException) as raised:
        runner.run_worker([FAKE, "ok"], RecordingFeedback(), python=str(tmp_path / "no-python"))
    assert "cannot start" in str(raised.value)


def cancel_when_started(feedback, out):
    """Cancel as soon as the fake worker wrote its pid (and for `slow`, its first progress)."""
    def watch():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (out / "pid").exists():
            time.sleep(0.02)
        time.sleep(0.3)
        feedback.canceled_at = time.monotonic()
        feedback.cancel()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


@pytest.mark.heavy  # seconds of waiting for a process to stop (make test runs it)
@pytest.mark.parametrize("mode", ["slow", "stubborn", "quiet"])
def test_cancel_stops_the_worker_within_two_seconds(runner, tmp_path, mode):
    """SIGTERM first; a worker that ignores it (stubborn) is killed; a silent one (quiet)
    does not block the cancel check."""
    feedback = RecordingFeedback()
    watcher = cancel_when_started(feedback, tmp_path)
    with pytest.raises(Canceled) as raised:
        run_fake(runner, mode, feedback, tmp_path)
    elapsed = time.monotonic() - feedback.canceled_at
    watcher.join()
    pid = int((tmp_path / "pid").read_text())
    assert gone(pid)
    assert elapsed < 2.0, elapsed
    assert str(raised.value).startswith("Training canceled")
    if mode == "slow":  # its canceled event says where the checkpoint is
        assert "checkpoint saved in /tmp/ckpt.pth" in str(raised.value)
        assert elapsed < 1.0


def test_worker_env_puts_the_plugin_first(runner, monkeypatch):
    monkeypatch.delenv("DLT_PYTHON", raising=False)
    env = runner.worker_env()
    path = env["PYTHONPATH"].split(os.pathsep)
    assert path[0] == runner.PLUGIN_DIR
    assert env["PYTHONUNBUFFERED"] == "1"
    assert all(os.path.exists(p) for p in path)
    spec = importlib.util.find_spec("torch")
    if spec is not None:  # the folder torch is installed in reaches the worker
        assert os.path.dirname(os.path.dirname(spec.origin)) in path


def test_dlt_python_override(runner, monkeypatch, tmp_path):
    monkeypatch.setenv("DLT_PYTHON", sys.executable)
    assert runner.worker_python() == sys.executable
    monkeypatch.setenv("DLT_PYTHON", str(tmp_path / "nope"))
    with pytest.raises(QgsProcessingException) as raised:
        runner.worker_python()
    assert "DLT_PYTHON" in str(raised.value)


def test_installation_python_is_never_qgis(runner):
    python = runner.worker_python()
    assert os.path.basename(python).startswith("python")


# ---- the pretrained weights folder: a plugin setting passed on as DLT_WEIGHTS_DIR ----------------------------

@pytest.fixture
def weights_setting(runner, qgis_app):
    """Sets the plugin's weights folder setting for one test, and removes it after."""
    from qgis.core import QgsSettings

    def set_value(value):
        QgsSettings().setValue(runner.WEIGHTS_DIR_SETTING, value)

    yield set_value
    QgsSettings().remove(runner.WEIGHTS_DIR_SETTING)


def echo_environment(runner, tmp_path):
    """What the worker saw: the fake worker in config mode, run through run_worker."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"out_folder": str(tmp_path / "model")}))
    result = runner.run_worker([FAKE, "config", "-m", "dl_engine", "train", "--config", str(config)], None,
                               python=sys.executable)
    return result["metrics"]


def test_weights_folder_setting_reaches_the_worker(runner, weights_setting, tmp_path, monkeypatch):
    monkeypatch.delenv("DLT_WEIGHTS_DIR", raising=False)
    assert echo_environment(runner, tmp_path)["weights_dir"] is None  # no setting: the hubs' own caches
    folder = tmp_path / "weights"
    weights_setting(f"  {folder}  ")
    assert echo_environment(runner, tmp_path)["weights_dir"] == str(folder)
    monkeypatch.setenv("HOME", str(tmp_path))  # "~" is the user's home folder
    weights_setting("~/dlt-weights")
    assert runner.worker_env()["DLT_WEIGHTS_DIR"] == str(tmp_path / "dlt-weights")


def test_weights_folder_environment_variable_wins(runner, weights_setting, tmp_path, monkeypatch):
    weights_setting(str(tmp_path / "from-the-setting"))
    monkeypatch.setenv("DLT_WEIGHTS_DIR", str(tmp_path / "from-the-environment"))
    assert echo_environment(runner, tmp_path)["weights_dir"] == str(tmp_path / "from-the-environment")
    monkeypatch.setenv("DLT_WEIGHTS_DIR", "  ")  # blank: as if unset
    assert echo_environment(runner, tmp_path)["weights_dir"] == str(tmp_path / "from-the-setting")


def test_weights_folder_in_the_processing_options(runner, provider):
    """Settings ▸ Options ▸ Processing ▸ Providers ▸ Deep learning tools shows the setting, stored under the
    key the runner reads."""
    from processing.core.ProcessingConfig import ProcessingConfig, Setting

    setting = ProcessingConfig.settings["DLT_WEIGHTS_DIR"]
    assert setting.group == provider.name()
    assert setting.qname == runner.WEIGHTS_DIR_SETTING == "deep_learning_tools/weights_dir"
    assert setting.valuetype == Setting.FOLDER
    assert "DLT_WEIGHTS_DIR" in setting.description


def test_weights_folder_names_match_the_engine(runner):
    from dl_engine.models.weights import WEIGHTS_DIR_ENV

    assert runner.WEIGHTS_DIR_ENV_VAR == WEIGHTS_DIR_ENV
