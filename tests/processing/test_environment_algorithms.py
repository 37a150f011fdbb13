"""Install Deep Learning Frameworks and Check Deep Learning Environment through processing.run, with the
environment manager (dl_engine.environment.manager) replaced by a recording stand-in: what the user sees
(progress, phase texts, log lines, outputs, the REPORT file) and the messages of bad input, failure and cancel.
The manager itself is tested in tests/engine; these tests install nothing."""

import threading
import time
from dataclasses import replace

import pytest
from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback, QgsSettings

from dl_engine.environment.manager import EnvironmentInstallError, EnvironmentState, InstallOptions
from dl_engine.errors import Canceled, InputError

INSTALL_ALG = "deeplearningtools:installdeeplearningframeworks"
CHECK_ALG = "deeplearningtools:checkdeeplearningenvironment"


class RecordingFeedback(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.infos, self.warnings, self.console, self.texts, self.progress_values = [], [], [], [], []
        self.progressChanged.connect(self.progress_values.append)

    def pushInfo(self, text):  # noqa: N802 (QGIS API name)
        self.infos.append(text)

    def pushWarning(self, text):  # noqa: N802
        self.warnings.append(text)

    def pushConsoleInfo(self, text):  # noqa: N802
        self.console.append(text)

    def setProgressText(self, text):  # noqa: N802
        self.texts.append(text)

    def everything(self):
        return "\n".join(self.infos + self.warnings + self.console + self.texts)


def environment(folder, **changes):
    state = EnvironmentState(
        folder=str(folder), python=str(folder / "bin" / "python3"), exists=True, ready=True, current=True,
        device="cpu", versions={"python": "3.11.2", "torch": "2.13.0+cpu", "torchvision": "0.28.0"},
        gpu_name=None, gpu_memory_mib=None, cuda_version=None, free_disk_bytes=50 * 10 ** 9, problems=[],
        log_path=str(folder) + "-install.log")
    return replace(state, **changes)


class FakeManager:
    """Records the options it was given; ``script(progress, log, is_canceled)`` plays an installation."""

    InstallOptions = InstallOptions
    EnvironmentInstallError = EnvironmentInstallError

    def __init__(self, state, script=None):
        self.state = state
        self.script = script
        self.options = []
        self.inspected = 0

    def install(self, options, progress=None, log=None, is_canceled=None):
        self.options.append(options)
        if self.script is not None:
            self.script(progress, log, is_canceled)
        return self.state

    def inspect(self, folder=None, smoke=True):
        self.inspected += 1
        return self.state

    def ready_python(self, folder=None):
        return self.state.python if self.state.ready else None

    @staticmethod
    def report_text(state):
        return (f"Deep learning environment\nfolder: {state.folder}\ndevice: {state.device}\n"
                f"torch: {state.versions.get('torch')}\nproblems: {'; '.join(state.problems) or 'none'}\n")


@pytest.fixture
def use_manager(provider, monkeypatch):
    from deep_learning_tools.processing_provider import check_deep_learning_environment as check
    from deep_learning_tools.processing_provider import install_deep_learning_frameworks as install

    def use(manager):
        for module in (install, check):
            monkeypatch.setattr(module, "_manager", lambda: manager)
        return manager

    return use


@pytest.fixture
def no_proxy(qgis_app):
    settings = QgsSettings()
    keys = ("proxy/proxyEnabled", "proxy/proxyType", "proxy/proxyHost", "proxy/proxyPort", "proxy/proxyUser",
            "proxy/proxyPassword")
    saved = {k: settings.value(k) for k in keys}
    settings.setValue("proxy/proxyEnabled", False)
    yield settings
    for key, value in saved.items():
        if value is None:
            settings.remove(key)
        else:
            settings.setValue(key, value)


def run(algorithm, params, feedback=None):
    import processing

    return processing.run(algorithm, params, feedback=feedback or RecordingFeedback())


def phases(progress, log, is_canceled):
    """An installation as the manager reports it: several calls per phase, pip's steps and chatter."""
    for percent, text in ((0, "Creating the environment"), (2, "Creating the environment"),
                          (10, "Installing PyTorch (cpu)"), (11, "Collecting torch==2.13.0"),
                          (12, "Collecting torchvision==0.28.0"), (13, "Downloading torch (190 MB): 10 %"),
                          (40, "Downloading torch (190 MB): 80 %"), (60, "Installing PyTorch (cpu)"),
                          (90, "Running the smoke test")):
        progress(percent, text)
        assert not is_canceled()
    for line in ("torch build: cpu for cpu: the CPU build: found no NVIDIA driver",
                 "$ /env/bin/python3 -m pip --version", "pip 26.3 from /env/lib/python3.11/site-packages/pip",
                 "[ 10.0 %]     3 s  Installing PyTorch (cpu)",
                 "Collecting torch==2.13.0", "  Downloading torch-2.13.0-cp311-linux_x86_64.whl (190 MB)",
                 "     ━━━━━━━━━━━━━━━━━━━━ 190.0/190.0 MB 50 MB/s eta 0:00:00",
                 "Requirement already satisfied: numpy<2 in ./lib/python3.11/site-packages",
                 "WARNING: Location 'file:///mirror/simple/attrs/' is ignored: it is neither a file nor a directory.",
                 "WARNING: Location 'file:///mirror/simple/click/' is ignored: it is neither a file nor a directory.",
                 "WARNING: Location 'file:///mirror/simple/idna/' is ignored: it is neither a file nor a directory.",
                 "Installing collected packages: timm, torch",
                 "Successfully installed timm-1.0.15 torch-2.13.0", "WARNING: the cache could not be written"):
        log(line)
    progress(100, "Running the smoke test")


def test_interface(provider):
    registry = QgsApplication.processingRegistry()
    install = registry.algorithmById(INSTALL_ALG)
    check = registry.algorithmById(CHECK_ALG)
    assert install.displayName() == "Install Deep Learning Frameworks" and install.group() == "Setup"
    assert check.displayName() == "Check Deep Learning Environment" and check.groupId() == "setup"
    assert [p.name() for p in install.parameterDefinitions()] == ["DEVICE", "PACKAGE_INDEX", "REINSTALL"]
    assert [o.split(" ")[0] for o in install.parameterDefinition("DEVICE").options()] == ["AUTO", "CPU", "CUDA"]
    assert install.parameterDefinition("DEVICE").defaultValue() == 0
    assert install.parameterDefinition("PACKAGE_INDEX").flags() & install.parameterDefinition(
        "PACKAGE_INDEX").FlagOptional
    assert install.parameterDefinition("REINSTALL").defaultValue() is False
    assert {o.name() for o in install.outputDefinitions()} == {"PYTHON", "DEVICE"}
    assert [p.name() for p in check.parameterDefinitions()] == ["REPORT"]
    assert check.parameterDefinition("REPORT").flags() & check.parameterDefinition("REPORT").FlagOptional
    assert {o.name() for o in check.outputDefinitions()} == {"READY", "PYTHON", "DEVICE", "REPORT"}
    for text in ("PACKAGE_INDEX", "DLT_ENV_DIR", "qgis_process run deeplearningtools:installdeeplearningframeworks",
                 "CPU", "CUDA", "REINSTALL", "GB"):
        assert text in install.shortHelpString()
    for text in ("READY", "REPORT", "DLT_ENV_DIR", "qgis_process run deeplearningtools:checkdeeplearningenvironment"):
        assert text in check.shortHelpString()


def test_install_reports_progress_and_returns_the_environment(use_manager, no_proxy, tmp_path):
    manager = use_manager(FakeManager(environment(tmp_path / "env"), phases))
    feedback = RecordingFeedback()
    result = run(INSTALL_ALG, {"DEVICE": 1, "PACKAGE_INDEX": f"  {tmp_path}  ", "REINSTALL": True}, feedback)
    assert result == {"PYTHON": str(tmp_path / "env" / "bin" / "python3"), "DEVICE": "cpu"}
    (options,) = manager.options
    assert (options.device, options.package_index, options.reinstall) == ("cpu", str(tmp_path), True)
    assert getattr(options, "proxy", None) is None
    # each phase's text once; pip's steps at most every 2 s (the bar moves with the download)
    assert feedback.texts == ["Creating the environment", "Installing PyTorch (cpu)", "Collecting torch==2.13.0",
                              "Installing PyTorch (cpu)", "Running the smoke test"]
    assert [p for p in feedback.progress_values if p in (10.0, 13.0, 40.0, 100.0)] == [10.0, 13.0, 40.0, 100.0]
    # the log file has every line; the Processing log what a user reads: the build chosen, what was installed,
    # each kind of warning once
    assert feedback.console == ["torch build: cpu for cpu: the CPU build: found no NVIDIA driver",
                                "Successfully installed timm-1.0.15 torch-2.13.0"]
    assert feedback.warnings == [
        "WARNING: Location 'file:///mirror/simple/attrs/' is ignored: it is neither a file nor a directory.",
        "(More warnings like this one are in the install log.)", "WARNING: the cache could not be written"]


def test_install_defaults(use_manager, no_proxy, tmp_path):
    manager = use_manager(FakeManager(environment(tmp_path / "env", device="cuda")))
    assert run(INSTALL_ALG, {})["DEVICE"] == "cuda"
    (options,) = manager.options
    assert (options.device, options.package_index, options.reinstall) == ("auto", None, False)


def test_install_passes_qgis_proxy(use_manager, no_proxy, tmp_path):
    for key, value in (("proxy/proxyEnabled", True), ("proxy/proxyType", "HttpProxy"),
                       ("proxy/proxyHost", "proxy.example"), ("proxy/proxyPort", "3128"),
                       ("proxy/proxyUser", "ana"), ("proxy/proxyPassword", "p@ss word")):
        no_proxy.setValue(key, value)
    manager = use_manager(FakeManager(environment(tmp_path / "env")))
    feedback = RecordingFeedback()
    run(INSTALL_ALG, {"DEVICE": 1}, feedback)
    assert manager.options[0].proxy == "http://ana:p%40ss%20word@proxy.example:3128"
    assert "p@ss" not in feedback.everything() and "p%40ss" not in feedback.everything()
    assert "proxy.example" in feedback.everything()
    no_proxy.setValue("proxy/proxyType", "DefaultProxy")  # the system's proxy: pip finds it itself
    run(INSTALL_ALG, {"DEVICE": 1})
    assert manager.options[1].proxy is None


def test_install_cancel_stops_within_a_second(use_manager, no_proxy, tmp_path):
    seen = {}

    def wait_for_cancel(progress, log, is_canceled):
        progress(5, "Installing PyTorch (cpu)")
        while not is_canceled():
            time.sleep(0.05)
        seen["at"] = time.monotonic()
        raise Canceled("Installation canceled while pip was installing torch")

    use_manager(FakeManager(environment(tmp_path / "env"), wait_for_cancel))
    feedback = RecordingFeedback()
    canceled_at = []
    timer = threading.Timer(0.3, lambda: (canceled_at.append(time.monotonic()), feedback.cancel()))
    timer.start()
    with pytest.raises(QgsProcessingException) as raised:
        run(INSTALL_ALG, {"DEVICE": 1}, feedback)
    timer.join()
    message = str(raised.value)
    assert seen["at"] - canceled_at[0] < 1.0
    assert message.startswith("Install Deep Learning Frameworks canceled")
    assert "run Install Deep Learning Frameworks again" in message and "Traceback" not in message


def test_install_bad_input_names_the_parameter(use_manager, no_proxy, tmp_path):
    def refuse(progress, log, is_canceled):
        raise InputError("PACKAGE_INDEX", f"{tmp_path / 'wheels'} does not exist; give a folder of .whl files "
                                          "or an index URL (https://…)")

    use_manager(FakeManager(environment(tmp_path / "env"), refuse))
    with pytest.raises(QgsProcessingException) as raised:
        run(INSTALL_ALG, {"PACKAGE_INDEX": str(tmp_path / "wheels")})
    assert "(PACKAGE_INDEX): " in str(raised.value) and "does not exist" in str(raised.value)


def test_install_failure_gives_the_message_and_the_log(use_manager, no_proxy, tmp_path):
    log_path = str(tmp_path / "env-install.log")

    def fail(progress, log, is_canceled):
        progress(10, "Installing PyTorch (cuda)")
        raise EnvironmentInstallError("pip could not install torch==2.13.0 (no matching distribution)", log_path)

    use_manager(FakeManager(environment(tmp_path / "env"), fail))
    with pytest.raises(QgsProcessingException) as raised:
        run(INSTALL_ALG, {"DEVICE": 2})
    message = str(raised.value)
    assert "pip could not install torch==2.13.0" in message and log_path in message
    assert "Traceback" not in message


def test_install_that_ends_not_ready_says_why(use_manager, no_proxy, tmp_path):
    state = environment(tmp_path / "env", ready=False, problems=["the convolution failed on cuda"])
    use_manager(FakeManager(state))
    with pytest.raises(QgsProcessingException) as raised:
        run(INSTALL_ALG, {})
    assert "the convolution failed on cuda" in str(raised.value) and state.log_path in str(raised.value)


def test_check_ready_writes_the_report(use_manager, monkeypatch, tmp_path):
    state = environment(tmp_path / "env")
    manager = use_manager(FakeManager(state))
    from deep_learning_tools.processing_provider import engine_process

    monkeypatch.delenv("DLT_PYTHON", raising=False)
    monkeypatch.setattr(engine_process, "_managed_python", lambda: state.python)
    feedback = RecordingFeedback()
    report = tmp_path / "reports" / "environment.txt"
    result = run(CHECK_ALG, {"REPORT": str(report)}, feedback)
    assert result == {"READY": True, "PYTHON": state.python, "DEVICE": "cpu", "REPORT": str(report)}
    assert manager.inspected == 1
    text = report.read_text(encoding="utf-8")
    assert text.startswith(manager.report_text(state))
    assert f"The tools run the engine with {state.python} (the plugin's deep-learning environment)." in text
    assert state.summary() in feedback.infos
    assert not list(report.parent.glob("*.partial"))


def test_check_not_ready_by_default_writes_a_temporary_report(use_manager, monkeypatch, tmp_path):
    from deep_learning_tools.processing_provider import engine_process

    state = environment(tmp_path / "env", exists=False, ready=False, current=False, device="", versions={},
                        problems=["The environment is not installed."])
    use_manager(FakeManager(state))
    monkeypatch.delenv("DLT_PYTHON", raising=False)
    monkeypatch.setattr(engine_process, "_setting", lambda key: None)
    monkeypatch.setattr(engine_process, "_managed_python", lambda: None)
    monkeypatch.setattr(engine_process, "missing_engine_modules", lambda: list(engine_process.ENGINE_MODULES))
    feedback = RecordingFeedback()
    result = run(CHECK_ALG, {}, feedback)
    assert result["READY"] is False and result["DEVICE"] == ""
    assert result["REPORT"].endswith(".txt")
    text = open(result["REPORT"], encoding="utf-8").read()
    assert "problems: The environment is not installed." in text
    assert "lacks torch, torchvision, timm, rasterio and shapely" in text
    assert "The environment is not installed." in feedback.warnings
    assert any("qgis_process run deeplearningtools:installdeeplearningframeworks" in i for i in feedback.infos)


def test_install_says_when_dlt_python_still_wins(use_manager, no_proxy, monkeypatch, tmp_path):
    """After installing, DLT_PYTHON (or the plugin setting) still chooses the tools' Python: the user is told."""
    other = tmp_path / "other-python"
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)
    monkeypatch.setenv("DLT_PYTHON", str(other))
    use_manager(FakeManager(environment(tmp_path / "env")))
    feedback = RecordingFeedback()
    run(INSTALL_ALG, {}, feedback)
    assert any(str(other) in w and "DLT_PYTHON" in w for w in feedback.warnings), feedback.warnings


def test_install_checks_package_index_before_any_work(provider, no_proxy, monkeypatch, tmp_path):
    """The real manager: a PACKAGE_INDEX that is neither a URL nor a folder of wheels is refused, naming it,
    before anything is created."""
    monkeypatch.setenv("DLT_ENV_DIR", str(tmp_path / "engine-env"))
    (tmp_path / "empty").mkdir()
    for value, words in ((str(tmp_path / "nowhere"), "nor an existing folder of wheels"),
                         (str(tmp_path / "empty"), "holds no wheels")):
        with pytest.raises(QgsProcessingException) as raised:
            run(INSTALL_ALG, {"PACKAGE_INDEX": value})
        assert "(PACKAGE_INDEX): " in str(raised.value) and words in str(raised.value)
    assert not (tmp_path / "engine-env").exists()
