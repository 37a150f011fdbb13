"""Which Python runs the engine (processing_provider/engine_process.py): DLT_PYTHON, then the plugin setting,
then the managed environment when it is ready, then QGIS's own Python when it finds the engine's packages;
otherwise one message naming everything missing and how to set it up. Any interpreter but QGIS's own,
a venv of the same base Python included, gets only the plugin folder on PYTHONPATH."""

import os
import subprocess
import sys

import pytest
from qgis.core import QgsProcessingException, QgsSettings

from dlt_infer_helpers import CLASSIFY_OBJECTS_ALG, CLASSIFY_PIXELS_ALG, DETECT_OBJECTS_ALG, dsm, fake_model
from dlt_train_helpers import TRAIN_ALG, fake_export

INSTALL_LINE = "qgis_process run deeplearningtools:installdeeplearningframeworks"
BASE_PYTHON = "/usr/bin/python3"  # Debian's, the interpreter QGIS runs; the test venvs are made from it
# A worker script that reports what it was started with.
WHAT_THE_WORKER_SEES = """
import json, os, sys
print(json.dumps({"event": "result", "pythonpath": os.environ.get("PYTHONPATH"), "prefix": sys.prefix,
                  "path": sys.path, "pythonhome": os.environ.get("PYTHONHOME")}), flush=True)
"""


@pytest.fixture
def runner():
    from deep_learning_tools.processing_provider import engine_process

    return engine_process


@pytest.fixture
def nothing_chosen(runner, monkeypatch, qgis_app, tmp_path):
    """No DLT_PYTHON, no plugin setting, an empty DLT_ENV_DIR: the resolution starts from scratch."""
    monkeypatch.delenv(runner.PYTHON_ENV_VAR, raising=False)
    monkeypatch.setenv("DLT_ENV_DIR", str(tmp_path / "engine-env"))
    settings = QgsSettings()
    saved = settings.value(runner.PYTHON_SETTING)
    settings.remove(runner.PYTHON_SETTING)
    yield settings
    if saved is None:
        settings.remove(runner.PYTHON_SETTING)
    else:
        settings.setValue(runner.PYTHON_SETTING, saved)


@pytest.fixture(scope="module")
def base_venv(tmp_path_factory):
    """A venv of Debian's Python without system site packages (what the managed environment is)."""
    if not os.path.exists(BASE_PYTHON):
        pytest.skip("no /usr/bin/python3")
    folder = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([BASE_PYTHON, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=60)
    return str(folder / "bin" / "python3")


def executable(path):
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


def test_order_dlt_python_then_setting_then_managed_then_own(runner, nothing_chosen, monkeypatch, tmp_path):
    from_variable, from_setting, managed = (executable(tmp_path / n) for n in ("a-python", "s-python", "m-python"))
    monkeypatch.setattr(runner, "_managed_python", lambda: managed)
    monkeypatch.setattr(runner, "missing_engine_modules", lambda: [])
    monkeypatch.setenv(runner.PYTHON_ENV_VAR, from_variable)
    nothing_chosen.setValue(runner.PYTHON_SETTING, from_setting)
    assert runner.resolve_worker_python().python == from_variable
    monkeypatch.delenv(runner.PYTHON_ENV_VAR)
    assert runner.resolve_worker_python().python == from_setting
    nothing_chosen.remove(runner.PYTHON_SETTING)
    chosen = runner.resolve_worker_python()
    assert (chosen.python, chosen.source) == (managed, runner.MANAGED_SOURCE)
    monkeypatch.setattr(runner, "_managed_python", lambda: None)
    chosen = runner.resolve_worker_python()  # the developer path: this test's .venv has the packages
    assert chosen.source == runner.OWN_SOURCE and runner.is_installation_python(chosen.python)


def test_setting_that_is_not_a_python_names_the_setting(runner, nothing_chosen, tmp_path):
    nothing_chosen.setValue(runner.PYTHON_SETTING, str(tmp_path / "no-python"))
    with pytest.raises(QgsProcessingException) as raised:
        runner.worker_python()
    assert runner.PYTHON_SETTING in str(raised.value) and "no-python" in str(raised.value)


def test_empty_env_dir_has_no_managed_python(runner, nothing_chosen):
    assert runner._managed_python() is None


@pytest.fixture
def stamped_environment(nothing_chosen, monkeypatch, tmp_path):
    """DLT_ENV_DIR holding a venv of Debian's Python whose stamp says the smoke test passed for the current
    pinned list: what the real manager's ready_python reads (no torch in it: nothing here imports it)."""
    from dl_engine.environment import location, manager, requirements

    if not os.path.exists(BASE_PYTHON):
        pytest.skip("no /usr/bin/python3")
    folder = tmp_path / "engine-env"
    subprocess.run([BASE_PYTHON, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=60)
    manager.write_stamp(str(folder), {"smoke_ok": True, "hash": requirements.requirements_hash()})
    return location.env_python(str(folder))


def test_ready_managed_environment_is_used_with_only_the_plugin_folder(runner, stamped_environment, tmp_path):
    chosen = runner.resolve_worker_python()
    assert (chosen.python, chosen.source) == (stamped_environment, runner.MANAGED_SOURCE)
    script = tmp_path / "sees.py"
    script.write_text(WHAT_THE_WORKER_SEES)
    seen = runner.run_worker([str(script)], None)
    assert seen["pythonpath"] == runner.PLUGIN_DIR
    assert seen["prefix"] == str(tmp_path / "engine-env")


def test_nothing_set_up_one_message_lists_everything(runner, nothing_chosen, monkeypatch, tmp_path):
    monkeypatch.setattr(runner, "ENGINE_MODULES", ("torch", "torchvision", "timm", "dlt_absent_a", "dlt_absent_b"))
    with pytest.raises(QgsProcessingException) as raised:
        runner.worker_python("Training")
    message = str(raised.value)
    assert message.startswith("Training needs the deep-learning engine")
    assert "lacks dlt_absent_a and dlt_absent_b" in message  # torch, timm: this .venv has them
    assert str(tmp_path / "engine-env") in message and "not installed" in message
    assert "Install Deep Learning Frameworks" in message and INSTALL_LINE in message
    assert "Plugins ▸ Deep learning tools ▸ Deep learning environment…" in message
    assert "Traceback" not in message and message.count("\n") == 0


def test_all_missing_listed_at_once(runner, nothing_chosen, monkeypatch):
    monkeypatch.setattr(runner, "missing_engine_modules", lambda: list(runner.ENGINE_MODULES))
    with pytest.raises(QgsProcessingException) as raised:
        runner.worker_python()
    assert "lacks torch, torchvision, timm, rasterio and shapely" in str(raised.value)


def test_engine_packages_are_looked_up_not_imported(runner):
    """QGIS's process must stay light: the check finds torch without importing it."""
    code = ("import sys; sys.path[:0] = sys.argv[1:]\n"
            "from deep_learning_tools.processing_provider import engine_process as e\n"
            "print(e.missing_engine_modules(), 'torch' in sys.modules, 'rasterio' in sys.modules)")
    parent = os.path.dirname(os.path.dirname(runner.__file__))
    done = subprocess.run([sys.executable, "-c", code, os.path.dirname(parent), parent],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["False", "False"], done.stdout


def test_venv_of_the_same_base_python_is_not_qgis_python(runner, base_venv):
    assert os.path.realpath(base_venv) == os.path.realpath(BASE_PYTHON)  # the same binary…
    assert runner.python_prefix(base_venv) == os.path.dirname(os.path.dirname(base_venv))  # …another prefix
    assert runner.python_prefix(BASE_PYTHON) == "/usr"
    assert not runner.is_installation_python(base_venv)
    assert runner.is_installation_python(runner.worker_python())  # this test's own interpreter


@pytest.mark.parametrize("how", ["DLT_PYTHON", "setting"])
def test_venv_worker_gets_only_the_plugin_folder(runner, nothing_chosen, base_venv, monkeypatch, tmp_path, how):
    """The issue's bug: a venv's worker was given QGIS's sys.path, and Debian's dist-packages (an old sympy)
    came before the venv's own packages."""
    if how == "setting":
        nothing_chosen.setValue(runner.PYTHON_SETTING, base_venv)
    else:
        monkeypatch.setenv(runner.PYTHON_ENV_VAR, base_venv)
    monkeypatch.setenv("PYTHONHOME", "/somewhere/else")  # OSGeo4W sets it for QGIS's own Python
    script = tmp_path / "sees.py"
    script.write_text(WHAT_THE_WORKER_SEES)
    seen = runner.run_worker([str(script)], None)
    assert seen["pythonpath"] == runner.PLUGIN_DIR
    assert seen["prefix"] == os.path.dirname(os.path.dirname(base_venv))
    assert seen["pythonhome"] is None
    assert not any("dist-packages" in p or ("site-packages" in p and ".venv" in p) for p in seen["path"]), seen["path"]


def test_own_python_keeps_qgis_sys_path(runner, tmp_path):
    """The developer path: QGIS's own interpreter sees the .venv QGIS sees."""
    script = tmp_path / "sees.py"
    script.write_text(WHAT_THE_WORKER_SEES)
    seen = runner.run_worker([str(script)], None, python=runner._installation_python())
    entries = seen["pythonpath"].split(os.pathsep)
    assert entries[0] == runner.PLUGIN_DIR and len(entries) > 1


def test_missing_module_in_the_worker_points_at_the_install_algorithm(runner, nothing_chosen, base_venv):
    """A Python without the packages (here a bare venv): every missing package named at once, and the fix."""
    with pytest.raises(QgsProcessingException) as raised:
        runner.run_worker(["-c", "import torch"], None, python=base_venv, what="Training")
    message = str(raised.value)
    assert f"({base_venv}) cannot import 'torch'" in message
    assert "also lacks torchvision, timm, rasterio and shapely" in message
    assert INSTALL_LINE in message and "requirements" not in message
    assert "Traceback" not in message


def test_broken_managed_environment_is_offered_a_repair(runner, nothing_chosen, base_venv, monkeypatch):
    monkeypatch.setattr(runner, "_managed_python", lambda: base_venv)
    with pytest.raises(QgsProcessingException) as raised:
        runner.run_worker(["-c", "import timm"], None, what="Training")
    assert "cannot import 'timm'" in str(raised.value) and "REINSTALL" in str(raised.value)


def engine_tools(tmp_path, data_dir):
    """Every algorithm that runs the engine, with input that passes its quick checks."""
    model = fake_model(tmp_path / "model")
    raster = dsm(data_dir)
    return {
        TRAIN_ALG: {"IN_FOLDER": fake_export(tmp_path / "export"), "OUT_FOLDER": str(tmp_path / "out"),
                    "MAX_EPOCHS": 1},
        "deeplearningtools:trainusingautodl": {"IN_DATA": fake_export(tmp_path / "export"),
                                               "OUT_MODEL": str(tmp_path / "out" / "best.dlpk")},
        CLASSIFY_PIXELS_ALG: {"IN_RASTER": raster, "IN_MODEL_DEFINITION": model,
                              "OUT_CLASSIFIED_RASTER": str(tmp_path / "out" / "classified.tif")},
        DETECT_OBJECTS_ALG: {"IN_RASTER": raster, "IN_MODEL_DEFINITION": model,
                             "OUT_DETECTED_OBJECTS": str(tmp_path / "out" / "objects.gpkg")},
        CLASSIFY_OBJECTS_ALG: {"IN_RASTER": raster, "IN_MODEL_DEFINITION": model,
                               "OUT_FEATURE_CLASS": str(tmp_path / "out" / "objects.gpkg")},
        "deeplearningtools:importpretrainedweights": {"IN_WEIGHTS": str(tmp_path / "model"),
                                                      "BACKBONE_MODEL": "RESNET34"},
    }


ENGINE_TOOLS = [TRAIN_ALG, "deeplearningtools:trainusingautodl", CLASSIFY_PIXELS_ALG, DETECT_OBJECTS_ALG,
                CLASSIFY_OBJECTS_ALG, "deeplearningtools:importpretrainedweights"]


@pytest.mark.parametrize("alg_id", ENGINE_TOOLS)
def test_setup_message_before_any_work(runner, provider, nothing_chosen, monkeypatch, tmp_path, data_dir, alg_id):
    """Each tool that needs the engine ends, with nothing set up, with the set-up message; no worker starts
    and no output is written."""
    import processing

    params = engine_tools(tmp_path, data_dir)[alg_id]
    monkeypatch.setattr(runner, "missing_engine_modules", lambda: list(runner.ENGINE_MODULES))
    started = []
    monkeypatch.setattr(runner.subprocess, "Popen", lambda *a, **k: started.append(a) or pytest.fail("started"))
    with pytest.raises(QgsProcessingException) as raised:
        processing.run(alg_id, params)
    message = str(raised.value)
    assert "needs the deep-learning engine, which is not set up" in message
    assert "lacks torch, torchvision, timm, rasterio and shapely" in message and INSTALL_LINE in message
    assert not started
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]  # (the raster tool makes the folder)
