"""Shared test set-up.

- The repository root is the plugin folder ``deep_learning_tools``: a temporary
  directory holding a symlink of that name is put on ``sys.path`` (and is what
  ``QGIS_PLUGINPATH`` points at for ``qgis_process``).
- The repository root is on ``sys.path`` for ``import dl_engine`` (as the plugin's
  ``__init__`` does inside QGIS).
- Tests run headless (``QT_QPA_PLATFORM=offscreen``; ``make test`` sets it before
  pytest-qgis starts its QgsApplication).
"""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# No test downloads weights (dl_engine/models/weights.py): models without cached weights start
# from random ones, also in the worker processes the tests start. The download code is tested
# against a stand-in hub on 127.0.0.1 (tests/engine/test_pretrained_download.py).
os.environ.setdefault("DLT_WEIGHTS_OFFLINE", "1")
# The tests run the engine with this checkout's Python (.venv): a managed engine environment the
# user installed in the per-user folder (dl_engine/environment) would otherwise win over it. Tests
# that need an environment set DLT_ENV_DIR themselves.
_NO_ENV = tempfile.mkdtemp(prefix="dlt-no-engine-env-")
atexit.register(shutil.rmtree, _NO_ENV, True)
os.environ["DLT_ENV_DIR"] = os.path.join(_NO_ENV, "engine-env")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
PLUGIN_NAME = "deep_learning_tools"

PLUGIN_PARENT = Path(tempfile.mkdtemp(prefix="dlt-plugins-"))
(PLUGIN_PARENT / PLUGIN_NAME).symlink_to(REPO, target_is_directory=True)
atexit.register(shutil.rmtree, str(PLUGIN_PARENT), True)

if str(PLUGIN_PARENT) not in sys.path:
    sys.path.insert(0, str(PLUGIN_PARENT))
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))
# scripts/: the arcgis.learn comparison (arcgis_compare.py) that tests/engine/arcgis_helpers.py drives
if str(REPO / "scripts") not in sys.path:
    sys.path.append(str(REPO / "scripts"))


@pytest.fixture(scope="session")
def plugin_parent() -> Path:
    """Directory holding ``deep_learning_tools`` → the repository (for QGIS_PLUGINPATH)."""
    return PLUGIN_PARENT


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """A writable copy of tests/data (GeoPackages get -wal files when opened)."""
    target = tmp_path_factory.mktemp("data")
    shutil.copytree(DATA, target, dirs_exist_ok=True)
    return target


# ---- leaving ------------------------------------------------------------------------------------
# With torch, QGIS (pytest-qgis's QgsApplication) and two GDALs (QGIS's and rasterio's) in
# one process, native teardown at interpreter exit can abort ("double free or corruption")
# after every test has passed and the summary is printed, turning a green run red. Once the
# session is over nothing remains to be written, so the run leaves with pytest's own exit
# status before that teardown.
_EXIT_STATUS = {}


def pytest_sessionfinish(session, exitstatus):
    _EXIT_STATUS["code"] = int(exitstatus)


@pytest.hookimpl(tryfirst=True)
def pytest_unconfigure(config):
    if "code" not in _EXIT_STATUS or os.environ.get("DLT_TESTS_NORMAL_EXIT"):
        return
    shutil.rmtree(str(PLUGIN_PARENT), ignore_errors=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_STATUS["code"])
