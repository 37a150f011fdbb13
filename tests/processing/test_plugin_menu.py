"""The plugin menu (every tool in workflow order, the environment dialog, the README), the set-up offer at start
and on first use, and an icon per algorithm."""

import os

import pytest
from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor

import dlt_environment_stand_in as stand_in
from dlt_helpers import PROVIDER_ID

# What the plugin menu lists, in this order (issue 17: every tool in workflow order, the environment, the jobs
# dock, help).
MENU_TEXTS = [
    "Export Training Data For Deep Learning…",
    "Train Deep Learning Model…",
    "Train Using AutoDL…",
    "Classify Pixels Using Deep Learning…",
    "Detect Objects Using Deep Learning…",
    "Classify Objects Using Deep Learning…",
    "Compute Accuracy For Pixel Classification…",
    "Compute Accuracy For Object Detection…",
    "Import Pretrained Weights…",
    "",  # a separator
    "Deep learning environment…",
    "Deep learning jobs…",
    "Help (README)",
]


@pytest.fixture
def fresh_plugin(qgis_iface, dlt_plugin, monkeypatch):
    """A plugin created as QGIS creates it, with the menu calls recorded; the engine reported missing unless a
    test says otherwise. The session's plugin steps aside meanwhile (one provider per id)."""
    import deep_learning_tools
    from deep_learning_tools.plugin import setup_offer

    dlt_plugin.unload()
    menu = []
    monkeypatch.setattr(qgis_iface, "addPluginToMenu", lambda name, action: menu.append((name, action)), raising=False)
    monkeypatch.setattr(qgis_iface, "removePluginMenu", lambda name, action: menu.remove((name, action)),
                        raising=False)
    missing = {"value": True}
    monkeypatch.setattr(setup_offer, "engine_missing", lambda: missing["value"])
    qgis_iface.messageBar().clearWidgets()
    plugin = deep_learning_tools.classFactory(qgis_iface)
    plugin.menu, plugin.missing = menu, missing
    try:
        yield plugin
    finally:
        plugin.unload()
        qgis_iface.messageBar().clearWidgets()
        dlt_plugin.initGui()


def set_up_offers(qgis_iface):
    from deep_learning_tools.plugin.setup_offer import button_of

    return [item.text() for item in qgis_iface.messageBar().items() if button_of(item) is not None]


def test_the_menu_lists_the_tools_in_workflow_order(fresh_plugin, monkeypatch):
    import processing

    fresh_plugin.initGui()
    assert [action.text() for action in fresh_plugin.actions] == MENU_TEXTS
    assert [action for _, action in fresh_plugin.menu] == fresh_plugin.actions
    assert {name for name, _ in fresh_plugin.menu} == {"&Deep learning tools"}
    assert fresh_plugin.actions[9].isSeparator()

    opened = []
    monkeypatch.setattr(processing, "execAlgorithmDialog", lambda alg_id, *a, **k: opened.append(alg_id))
    for action in fresh_plugin.actions[:9]:
        action.trigger()
    registry = QgsApplication.processingRegistry()
    # each entry opens the dialog of the algorithm of that name
    assert [registry.algorithmById(alg_id).displayName() + "…" for alg_id in opened] == MENU_TEXTS[:9]
    assert all(alg_id.startswith(f"{PROVIDER_ID}:") for alg_id in opened)
    for action, alg_id in zip(fresh_plugin.actions, opened):
        assert action.icon().cacheKey() != 0 and not action.icon().isNull()
        assert action.icon().pixmap(QSize(16, 16)).toImage() == registry.algorithmById(alg_id).icon().pixmap(
            QSize(16, 16)).toImage()


def test_unload_removes_the_menu(fresh_plugin):
    fresh_plugin.initGui()
    assert len(fresh_plugin.menu) == len(MENU_TEXTS)
    fresh_plugin.unload()
    assert fresh_plugin.menu == [] and fresh_plugin.actions == []
    from deep_learning_tools.processing_provider.base import DeepLearningAlgorithm

    assert DeepLearningAlgorithm.dialog_opening is None


def test_the_environment_entry_opens_the_dialog(fresh_plugin, monkeypatch, tmp_path):
    from deep_learning_tools.plugin import environment_task

    manager = stand_in.StandInManager(stand_in.ready_with_gpu(str(tmp_path / "env")))
    monkeypatch.setattr(environment_task, "environment_manager", lambda: manager)
    fresh_plugin.initGui()
    entry = next(a for a in fresh_plugin.actions if a.text() == "Deep learning environment…")
    entry.trigger()
    dialog = fresh_plugin.environment_dialog
    assert dialog is not None and dialog.isVisible() and not dialog.isModal()
    from test_environment_dialog import settle

    settle(lambda: dialog.task is None)
    assert "Ready" in dialog.status_label.text()
    entry.trigger()  # again: the same dialog, checked again
    assert fresh_plugin.environment_dialog is dialog
    settle(lambda: dialog.task is None)
    assert manager.inspected == [True, True]


def test_installing_from_the_menu_takes_the_offer_away(fresh_plugin, qgis_iface, monkeypatch, tmp_path):
    from deep_learning_tools.plugin import environment_task
    from deep_learning_tools.plugin.setup_offer import AT_START
    from test_environment_dialog import settle

    manager = stand_in.StandInManager(stand_in.not_installed(str(tmp_path / "env")))
    manager.release.set()
    monkeypatch.setattr(environment_task, "environment_manager", lambda: manager)
    fresh_plugin.initGui()
    assert set_up_offers(qgis_iface) == [AT_START]
    next(a for a in fresh_plugin.actions if a.text() == "Deep learning environment…").trigger()
    dialog = fresh_plugin.environment_dialog
    settle(lambda: dialog.task is None)
    dialog.install_button.click()
    settle(lambda: dialog.task is None)
    assert "Ready" in dialog.status_label.text()
    assert set_up_offers(qgis_iface) == []


def test_help_opens_the_readme(fresh_plugin, monkeypatch):
    from deep_learning_tools.plugin import main

    opened = []

    class Desktop:
        @staticmethod
        def openUrl(url):  # noqa: N802
            opened.append(url)
            return True

    monkeypatch.setattr(main, "QDesktopServices", Desktop)
    fresh_plugin.initGui()
    next(a for a in fresh_plugin.actions if a.text() == "Help (README)").trigger()
    assert [url.toLocalFile() for url in opened] == [main.README]
    assert os.path.isfile(main.README)


def test_start_offers_the_set_up_when_the_engine_is_missing(fresh_plugin, qgis_iface):
    from deep_learning_tools.plugin.setup_offer import AT_START

    fresh_plugin.initGui()
    assert set_up_offers(qgis_iface) == [AT_START]  # a message in the bar, not a popup
    fresh_plugin.unload()
    assert set_up_offers(qgis_iface) == []


def test_no_offer_when_the_engine_is_ready(fresh_plugin, qgis_iface):
    fresh_plugin.missing["value"] = False
    fresh_plugin.initGui()
    alg = QgsApplication.processingRegistry().algorithmById(f"{PROVIDER_ID}:classifypixelsusingdeeplearning")
    assert alg.createCustomParametersWidget(None) is None  # Processing's own dialog
    assert set_up_offers(qgis_iface) == []


def test_opening_a_tool_offers_the_set_up_once(fresh_plugin, qgis_iface, monkeypatch):
    from deep_learning_tools.plugin.setup_offer import button_of

    opened = []
    monkeypatch.setattr(fresh_plugin, "open_environment_dialog", lambda: opened.append("dialog"))
    fresh_plugin.initGui()
    qgis_iface.messageBar().clearWidgets()  # the analyst closed the start message
    registry = QgsApplication.processingRegistry()
    detect = registry.createAlgorithmById(f"{PROVIDER_ID}:detectobjectsusingdeeplearning")
    # what the Toolbox, the locator and processing.execAlgorithmDialog call as the dialog opens
    assert detect.createCustomParametersWidget(None) is None
    assert set_up_offers(qgis_iface) == [
        "Detect Objects Using Deep Learning needs the deep learning environment, which is not installed yet."]
    item = qgis_iface.messageBar().items()[0]
    button_of(item).click()
    assert set_up_offers(qgis_iface) == [] and opened == ["dialog"]
    registry.createAlgorithmById(f"{PROVIDER_ID}:traindeeplearningmodel").createCustomParametersWidget(None)
    assert set_up_offers(qgis_iface) == []  # once per session


def test_each_algorithm_has_its_own_icon(provider):
    from deep_learning_tools.processing_provider import icons

    paths = {}
    for alg in provider.algorithms():
        path = alg.svgIconPath()
        assert os.path.dirname(path) == icons.ICONS_DIR, f"{alg.id()} has no icon of its own"
        icon = alg.icon()
        assert not icon.isNull(), alg.id()
        image = icon.pixmap(QSize(32, 32)).toImage()
        drawn = sum(QColor(image.pixel(x, y)).alpha() > 0 for x in range(32) for y in range(32))
        assert drawn > 50, f"{alg.id()}: {path} draws nothing"
        paths[alg.id()] = path
    assert len(set(paths.values())) == len(paths), paths
    with open(icons.ENVIRONMENT_ICON, encoding="utf-8") as f:
        assert f.read().startswith("<svg")
