"""The "Deep learning environment…" dialog and its tasks, driven by a stand-in manager (nothing installed):
each state as the user reads it, Install/Repair/Reset/Cancel through QgsTasks, the report and the log, and the
set-up offer in the message bar."""

import dataclasses
import time

import pytest
from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtWidgets import QApplication, QMessageBox

import dlt_environment_stand_in as stand_in


@pytest.fixture
def ui(provider):
    from deep_learning_tools.plugin import environment_dialog, environment_task, setup_offer

    class Modules:
        dialog = environment_dialog
        task = environment_task
        offer = setup_offer

    return Modules


def settle(predicate, timeout=10.0):
    """Process events until ``predicate()`` holds (tasks run in the task manager's threads)."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.005)
    for _ in range(10):  # let queued signals land
        QCoreApplication.processEvents()
    assert predicate(), "timed out"


def open_dialog(ui, manager, qgis_iface=None):
    dialog = ui.dialog.EnvironmentDialog(manager=manager, message_bar=qgis_iface.messageBar() if qgis_iface else None)
    settle(lambda: dialog.task is None)
    return dialog


def shown(dialog):
    """What the dialog shows, as a user reads it."""
    return {
        "state": dialog.status_label.text(),
        "problems": dialog.problems_label.text() if not dialog.problems_label.isHidden() else "",
        "device": dialog.device_label.text(),
        "versions": dialog.versions_label.text(),
        "folder": dialog.folder_label.text(),
        "disk": dialog.disk_label.text(),
        "install": (dialog.install_button.text(), dialog.install_button.isEnabled()),
        "repair": dialog.repair_button.isEnabled(),
        "reset": dialog.reset_button.isEnabled(),
    }


@pytest.fixture
def folder(tmp_path):
    return str(tmp_path / "engine-env")


def test_not_installed(ui, folder):
    manager = stand_in.StandInManager(stand_in.not_installed(folder))
    seen = shown(open_dialog(ui, manager))
    assert manager.inspected == [True]  # the check with its smoke test ran, in a task
    assert "Not installed" in seen["state"]
    assert seen["install"] == ("Install", True)
    assert not seen["repair"] and not seen["reset"]
    assert folder in seen["folder"]
    assert seen["disk"] == "needs about 7.0 GiB; 100.0 GiB free"
    assert seen["device"] == "Known once installed"


def test_ready_with_gpu(ui, folder):
    manager = stand_in.StandInManager(stand_in.ready_with_gpu(folder))
    dialog = open_dialog(ui, manager)
    seen = shown(dialog)
    assert "Ready" in seen["state"]
    assert seen["problems"] == ""
    assert seen["device"] == "GPU: NVIDIA RTX A4000, 16.0 GiB, CUDA 12.8"
    assert seen["versions"] == "python 3.11.2, torch 2.13.0+cu128, torchvision 0.28.0, timm 1.0.15"
    assert seen["install"] == ("Install", False)  # nothing to install; Repair reinstalls
    assert seen["repair"] and seen["reset"]
    assert dialog.python_label.text() == f"{folder}/bin/python3"


def test_broken_shows_its_problems(ui, folder):
    manager = stand_in.StandInManager(stand_in.broken(folder))
    seen = shown(open_dialog(ui, manager))
    assert "Broken" in seen["state"]
    assert "torchvision cannot be imported: No module named 'torchvision'" in seen["problems"]
    assert seen["install"] == ("Install", True) and seen["repair"]


def test_needs_upgrade_offers_upgrade(ui, folder):
    manager = stand_in.StandInManager(stand_in.needs_upgrade(folder))
    seen = shown(open_dialog(ui, manager))
    assert "Needs upgrade" in seen["state"]
    assert seen["install"] == ("Upgrade", True)
    assert "pinned packages changed" in seen["problems"]


def test_an_unfinished_installation_is_broken_not_outdated(ui, folder):
    manager = stand_in.StandInManager(stand_in.unfinished(folder))
    seen = shown(open_dialog(ui, manager))
    assert "Broken" in seen["state"] and "did not finish" in seen["problems"]
    assert seen["install"] == ("Install", True) and seen["repair"]


def test_cpu_and_mps_devices_in_words(ui, folder):
    cpu = dataclasses.replace(stand_in.ready_with_gpu(folder), device="cpu", gpu_name=None, gpu_memory_mib=None)
    assert ui.dialog.device_text(cpu) == "CPU"
    assert ui.dialog.device_text(dataclasses.replace(cpu, device="mps")) == "Apple GPU (MPS)"
    found = dataclasses.replace(stand_in.ready_with_gpu(folder), device="cpu")
    assert ui.dialog.device_text(found) == "CPU (NVIDIA RTX A4000, 16.0 GiB found but not used)"


def test_install_runs_as_a_task_with_the_chosen_options(ui, folder, qgis_iface):
    manager = stand_in.StandInManager(stand_in.not_installed(folder))
    dialog = open_dialog(ui, manager, qgis_iface)
    dialog.device_combo.setCurrentIndex(dialog.device_combo.findData("cuda"))
    dialog.index_edit.setText("/srv/wheels")
    qgis_iface.messageBar().clear_messages()
    dialog.install_button.click()
    task = dialog.task
    assert task is not None and task.kind == "install"
    settle(lambda: manager.started.is_set() and dialog.progress_bar.value() == 40)
    # QGIS stays responsive: the installation is a task in the task manager, the dialog follows its signals
    assert task in QgsApplication.taskManager().activeTasks()
    settle(lambda: dialog.progress_label.text() == "Installing torch")
    assert "Installing" in dialog.status_label.text()
    assert not dialog.cancel_button.isHidden()
    assert not (dialog.install_button.isEnabled() or dialog.repair_button.isEnabled()
                or dialog.reset_button.isEnabled())
    assert "pip install torch==2.13.0" in dialog.log_view.toPlainText()
    manager.release.set()
    settle(lambda: dialog.task is None)
    assert manager.installed == [stand_in.InstallOptions(device="cuda", package_index="/srv/wheels", reinstall=False)]
    assert "Ready" in dialog.status_label.text()
    assert dialog.device_label.text().startswith("GPU: NVIDIA RTX A4000")
    assert dialog.cancel_button.isHidden()
    assert (f"{ui.dialog.TITLE}:The deep learning environment is ready (GPU: NVIDIA RTX A4000, 16.0 GiB, CUDA 12.8)."
            in qgis_iface.messageBar().get_messages(Qgis.Success))
    # the choices are kept for the next time
    again = open_dialog(ui, manager)
    assert again.device_combo.currentData() == "cuda" and again.index_edit.text() == "/srv/wheels"
    again.device_combo.setCurrentIndex(0)
    again.index_edit.clear()
    again._save_settings()


def test_repair_reinstalls(ui, folder):
    manager = stand_in.StandInManager(stand_in.broken(folder))
    manager.release.set()
    dialog = open_dialog(ui, manager)
    dialog.repair_button.click()
    settle(lambda: dialog.task is None)
    assert [o.reinstall for o in manager.installed] == [True]
    assert "Ready" in dialog.status_label.text()


def test_cancel_stops_the_installation(ui, folder):
    manager = stand_in.StandInManager(stand_in.not_installed(folder))
    dialog = open_dialog(ui, manager)
    dialog.install_button.click()
    settle(lambda: manager.started.is_set())
    dialog.cancel_button.click()
    settle(lambda: dialog.task is None)
    assert "Installation canceled" in dialog.problems_label.text()
    assert manager.inspected == [True, False]  # what is there after the cancel: a quick check
    assert "Not installed" in dialog.status_label.text()
    assert dialog.install_button.isEnabled()


def test_a_failed_installation_names_its_log(ui, folder, tmp_path, monkeypatch):
    log = tmp_path / "install.log"
    log.write_text("ERROR: No matching distribution found for torch==2.13.0\n")
    manager = stand_in.StandInManager(stand_in.not_installed(folder))
    manager.install_error = stand_in.EnvironmentInstallError(
        f"pip could not install torch==2.13.0 (no matching distribution); the log is {log}", str(log))
    manager.release.set()
    dialog = open_dialog(ui, manager)
    dialog.install_button.click()
    settle(lambda: dialog.task is None)
    assert f"pip could not install torch==2.13.0 (no matching distribution); the log is {log}" in (
        dialog.problems_label.text())
    assert dialog.log_button.isEnabled()
    opened = []

    class Desktop:
        @staticmethod
        def openUrl(url):  # noqa: N802
            opened.append(url.toLocalFile())
            return True

    monkeypatch.setattr(ui.dialog, "QDesktopServices", Desktop)
    dialog.log_button.click()
    assert opened == [str(log)]


def test_a_bad_option_is_named_with_its_label(ui, folder):
    manager = stand_in.StandInManager(stand_in.not_installed(folder))
    dialog = open_dialog(ui, manager)
    dialog.device_combo.addItem("GPU 7", "gpu7")
    dialog.device_combo.setCurrentIndex(dialog.device_combo.count() - 1)
    dialog.install_button.click()
    settle(lambda: dialog.task is None)
    assert "Device (DEVICE): 'gpu7' is not a device" in dialog.problems_label.text()


@pytest.mark.parametrize("answer", [QMessageBox.Yes, QMessageBox.No])
def test_reset_asks_first(ui, folder, monkeypatch, answer):
    manager = stand_in.StandInManager(stand_in.ready_with_gpu(folder))
    dialog = open_dialog(ui, manager)
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *args: asked.append(args[2]) or answer)
    dialog.reset_button.click()
    settle(lambda: dialog.task is None)
    assert len(asked) == 1 and folder in asked[0]
    if answer == QMessageBox.Yes:
        assert manager.resets == [folder]
        assert "Not installed" in dialog.status_label.text()
    else:
        assert manager.resets == []
        assert "Ready" in dialog.status_label.text()


def test_copy_report(ui, folder):
    manager = stand_in.StandInManager(stand_in.ready_with_gpu(folder))
    dialog = open_dialog(ui, manager)
    dialog.report_button.click()
    assert QApplication.clipboard().text() == manager.report_text(manager.state)


def test_the_dialog_follows_a_running_installation(ui, folder):
    manager = stand_in.StandInManager(stand_in.not_installed(folder))
    first = open_dialog(ui, manager)
    first.install_button.click()
    settle(lambda: manager.started.is_set())
    first.close()
    second = ui.dialog.EnvironmentDialog(manager=manager)
    assert second.task is first.task and "Installing" in second.status_label.text()
    manager.release.set()
    settle(lambda: second.task is None)
    assert "Ready" in second.status_label.text()
    assert len(manager.installed) == 1


def test_the_stand_in_matches_the_manager():
    manager = pytest.importorskip("dl_engine.environment.manager")
    for name in ("InstallOptions", "EnvironmentState", "EnvironmentInstallError", "DISK_NEEDED_BYTES", "read_stamp",
                 "inspect", "install", "reset", "report_text", "ready_python"):
        assert hasattr(manager, name), name
    for ours, theirs in ((stand_in.InstallOptions, manager.InstallOptions),
                         (stand_in.EnvironmentState, manager.EnvironmentState)):
        assert {f.name for f in dataclasses.fields(ours)} <= {f.name for f in dataclasses.fields(theirs)}


# ---- the set-up offer in the message bar ----------------------------------------------------------------

def offers(bar, ui):
    """The set-up offers in the bar: (text, its "Set up…" button)."""
    found = []
    for item in bar.items():
        button = ui.offer.button_of(item)
        if button is not None:
            found.append((item.text(), button))
    return found


def test_the_offer_opens_the_dialog_once_per_session(ui, qgis_iface):
    bar = qgis_iface.messageBar()
    opened = []
    offer = ui.offer.SetupOffer(bar, lambda: opened.append("dialog"), is_missing=lambda: True)
    try:
        assert offer.at_start()
        assert [text for text, _ in offers(bar, ui)] == [ui.offer.AT_START]
        assert not offer.on_use()  # the start message still shows: no second one
        offers(bar, ui)[0][1].click()
        assert opened == ["dialog"] and offers(bar, ui) == []
        alg = QgsApplication.processingRegistry().algorithmById("deeplearningtools:traindeeplearningmodel")
        assert offer.on_use(alg)
        assert [text for text, _ in offers(bar, ui)] == [
            "Train Deep Learning Model needs the deep learning environment, which is not installed yet."]
        offer.withdraw()
        assert not offer.on_use(alg)  # once per session
    finally:
        offer.withdraw()


def test_no_offer_when_the_engine_is_ready(ui, qgis_iface):
    offer = ui.offer.SetupOffer(qgis_iface.messageBar(), lambda: None, is_missing=lambda: False)
    assert not offer.at_start() and not offer.on_use()
    assert offers(qgis_iface.messageBar(), ui) == []


def test_installation_goes_through_qgis_proxy(ui, folder):
    from qgis.core import QgsSettings

    settings = QgsSettings()
    keys = {"proxy/proxyEnabled": True, "proxy/proxyType": "HttpProxy", "proxy/proxyHost": "proxy.example",
            "proxy/proxyPort": "3128"}
    before = {key: settings.value(key) for key in keys}
    try:
        for key, value in keys.items():
            settings.setValue(key, value)
        dialog = open_dialog(ui, stand_in.StandInManager(stand_in.not_installed(folder)))
        assert dialog.options(reinstall=False).proxy == "http://proxy.example:3128"
        settings.setValue("proxy/proxyEnabled", False)
        assert dialog.options(reinstall=False).proxy is None
    finally:
        for key, value in before.items():
            settings.remove(key) if value is None else settings.setValue(key, value)


def test_engine_missing_follows_the_worker_python_rule(ui, monkeypatch, tmp_path):
    import sys

    monkeypatch.setenv("DLT_PYTHON", sys.executable)
    assert not ui.offer.engine_missing()
    monkeypatch.setenv("DLT_PYTHON", str(tmp_path / "no-python"))
    assert ui.offer.engine_missing()
