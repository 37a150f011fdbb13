"""A QGIS whose Python has no engine package (Debian's /usr/bin/python3 with no .venv on any path, as a user's
QGIS is): the plugin loads and lists every algorithm, and a tool that needs the engine ends with the set-up
message (what is missing, how to install it), not with a traceback or an ImportError.

The subprocesses get no PYTHONPATH and no user site-packages (``-s``, PYTHONNOUSERSITE, a temporary HOME),
so only Debian's packages are importable there."""

import json
import os
import subprocess

import pytest

from dlt_helpers import PLUGIN_NAME
from dlt_train_helpers import TRAIN_ALG, fake_export
from test_qgis_process import QGIS_PROCESS

SYSTEM_PYTHON = "/usr/bin/python3"
ENGINE_PACKAGES = ("torch", "torchvision", "timm", "rasterio", "shapely")
SETUP_WORDS = ("needs the deep-learning engine", "Install Deep Learning Frameworks",
               "qgis_process run deeplearningtools:installdeeplearningframeworks")
INSTALL_ALG = "deeplearningtools:installdeeplearningframeworks"
CHECK_ALG = "deeplearningtools:checkdeeplearningenvironment"


def bare_env(home, **more):
    """The environment of a user's QGIS: no PYTHONPATH, no DLT_* choice, no user site-packages."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("QGIS_", "DLT_", "PYTHON")) and k not in ("VIRTUAL_ENV",)}
    env.update(HOME=str(home), PYTHONNOUSERSITE="1", QT_QPA_PLATFORM="offscreen", **more)
    return env


@pytest.fixture(scope="module")
def system_python_without_engine(tmp_path_factory):
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip("no /usr/bin/python3")
    probe = ("import importlib.util, sys; "
             "print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m)))")
    found = subprocess.run([SYSTEM_PYTHON, "-s", "-c", probe, *ENGINE_PACKAGES], capture_output=True, text=True,
                           env=bare_env(tmp_path_factory.mktemp("home")), timeout=60)
    if found.returncode != 0 or found.stdout.strip():
        pytest.skip(f"Debian's Python has engine packages here ({found.stdout.strip()}): nothing to prove")
    return SYSTEM_PYTHON


LIST_ALGORITHMS = """
import json, sys
sys.path.insert(0, sys.argv[1])
from qgis.core import QgsApplication
app = QgsApplication([], False)
app.initQgis()
import deep_learning_tools
plugin = deep_learning_tools.classFactory(None)
plugin.initProcessing()
provider = QgsApplication.processingRegistry().providerById("deeplearningtools")
algorithms = {a.id(): [p.name() for p in a.parameterDefinitions()] for a in provider.algorithms()}
helps = all(a.shortHelpString() for a in provider.algorithms())
print(json.dumps({"algorithms": algorithms, "helps": helps,
                  "imported": sorted(m for m in sys.argv[2:] if m in sys.modules)}))
"""


@pytest.mark.heavy  # a QGIS application starts in Debian's Python: 2-4 s (tests/engine/test_layers.py keeps the
# provider's imports light in the fast lane)
def test_plugin_loads_and_lists_every_algorithm(system_python_without_engine, plugin_parent, provider, tmp_path):
    done = subprocess.run(
        [system_python_without_engine, "-s", "-c", LIST_ALGORITHMS, str(plugin_parent), *ENGINE_PACKAGES, "numpy"],
        capture_output=True, text=True, env=bare_env(tmp_path), timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    listed = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(listed["algorithms"]) == sorted(a.id() for a in provider.algorithms())  # as with the .venv
    assert INSTALL_ALG in listed["algorithms"] and CHECK_ALG in listed["algorithms"]
    assert listed["helps"]
    assert [m for m in listed["imported"] if m in ENGINE_PACKAGES] == []
    assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def bare_qgis_process(system_python_without_engine, plugin_parent, tmp_path_factory):
    """qgis_process with the plugin enabled in a fresh profile and an empty DLT_ENV_DIR."""
    if not os.path.exists(QGIS_PROCESS):
        pytest.skip("qgis_process.bin not installed")
    home = tmp_path_factory.mktemp("bare-home")
    env = bare_env(home, QGIS_CUSTOM_CONFIG_PATH=str(home / "qgis-config"), QGIS_PLUGINPATH=str(plugin_parent),
                   DLT_ENV_DIR=str(home / "no-engine-env"))
    enabled = subprocess.run([QGIS_PROCESS, "plugins", "enable", PLUGIN_NAME], env=env, capture_output=True,
                             text=True, timeout=120)
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    return env


def run_bare(env, *args):
    return subprocess.run([QGIS_PROCESS, *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.heavy  # qgis_process starts: several seconds
def test_training_without_engine_ends_with_the_setup_message(bare_qgis_process, tmp_path):
    done = run_bare(bare_qgis_process, "run", TRAIN_ALG, "--", f"IN_FOLDER={fake_export(tmp_path / 'export')}",
                    f"OUT_FOLDER={tmp_path / 'model'}", "MAX_EPOCHS=1")
    output = done.stdout + done.stderr
    assert done.returncode != 0
    for words in SETUP_WORDS:
        assert words in output, output[-3000:]
    assert "lacks torch, torchvision, timm, rasterio and shapely" in output
    for bad in ("Traceback", "ImportError", "ModuleNotFoundError"):
        assert bad not in output, output[-3000:]
    assert not (tmp_path / "model").exists()


@pytest.mark.heavy  # qgis_process starts: several seconds
def test_check_without_engine_says_not_ready(bare_qgis_process, tmp_path):
    report = tmp_path / "environment.txt"
    done = run_bare(bare_qgis_process, "--json", "run", CHECK_ALG, "--", f"REPORT={report}")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    results = json.loads(done.stdout[done.stdout.index("{"):])["results"]
    assert results["READY"] is False and results["REPORT"] == str(report)
    assert report.is_file() and "lacks torch" in report.read_text(encoding="utf-8")
    assert "Traceback" not in done.stdout + done.stderr
