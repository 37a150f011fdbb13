"""A new user's path, headless (issue 13 item 6): the plugin zip in a QGIS whose Python has no engine package.

What the test sets up is what a user has: Debian's QGIS (``/usr/bin/qgis_process.bin`` on ``/usr/bin/python3``,
which has no torch, timm, rasterio or shapely), a fresh QGIS profile, and ``make package``'s zip unzipped into
that profile's plugin folder (what *Install from ZIP* does). No ``.venv`` or repository folder is on any path.
Then, only through ``qgis_process``:

1. ``plugins enable deep_learning_tools``;
2. ``deeplearningtools:installdeeplearningframeworks`` creates the engine environment in ``DLT_ENV_DIR``;
3. Export Training Data (trees_osbs, Classified_Tiles) → Train Deep Learning Model (U-Net, 1 epoch) →
   Classify Pixels Using Deep Learning: a .dlpk, and a classified raster in the input raster's CRS;
   then Compute Accuracy For Pixel Classification on it (a confusion matrix).

The environment goes to ``.cache/engine-env`` in the repository (git ignores it) and is kept: the install
algorithm (REINSTALL false) repairs or upgrades it when its stamp is not current, and only checks it when it
is, so a second ``make test`` does not download torch again, while a fresh clone (CI) installs from nothing.
The install needs the package registry: the test is skipped, saying so, only when the registry cannot be
reached and no current environment is there.

Also here, in the same bare QGIS: the packaged plugin before its environment exists (an empty ``DLT_ENV_DIR``):
the export ends with how to set the environment up, no traceback (training and the check without an
environment are tested by test_without_engine.py).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
QGIS_PROCESS = "/usr/bin/qgis_process.bin"  # not Debian's wrapper (it adds an option qgis_process rejects)
QGIS_PYTHON = "/usr/bin/python3"  # the Python Debian's QGIS embeds
PLUGIN = "deep_learning_tools"
ENGINE_PACKAGES = ("torch", "torchvision", "timm", "rasterio", "shapely")
ENV_DIR = REPO / ".cache" / "engine-env"  # kept between runs (see the module's docstring)
INSTALL_TIMEOUT = 3600  # a cold pip cache downloads torch (CUDA builds: several GB)
RUN_TIMEOUT = 900

INSTALL_ALG = "deeplearningtools:installdeeplearningframeworks"
CHECK_ALG = "deeplearningtools:checkdeeplearningenvironment"
EXPORT_ALG = "deeplearningtools:exporttrainingdatafordeeplearning"
TRAIN_ALG = "deeplearningtools:traindeeplearningmodel"
CLASSIFY_ALG = "deeplearningtools:classifypixelsusingdeeplearning"
ACCURACY_ALG = "deeplearningtools:computeaccuracyforpixelclassification"

pytestmark = [
    pytest.mark.skipif(not (os.path.exists(QGIS_PROCESS) and os.path.exists(QGIS_PYTHON)),
                       reason="Debian's QGIS (qgis_process.bin, /usr/bin/python3) is not installed"),
    pytest.mark.heavy,
]


def bare_environment(config_path: Path, env_dir: Path) -> dict:
    """The process environment of a user's QGIS: nothing of this repository or its .venv."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "DLT_PYTHON", "DLT_ENV_DIR", "DLT_WEIGHTS_DIR")
    env = {k: v for k, v in os.environ.items()
           if k not in dropped and not k.startswith(("QGIS_", "PYTEST", "_PYTEST"))}
    venv_bin = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep)
                                  if p and ".venv" not in p and not p.startswith(str(REPO)) and p != venv_bin)
    env.update(
        QGIS_CUSTOM_CONFIG_PATH=str(config_path),  # a fresh profile (profiles/default inside)
        DLT_ENV_DIR=str(env_dir),
        PYTHONNOUSERSITE="1",  # nothing pip --user installed reaches QGIS's Python either
        QT_QPA_PLATFORM="offscreen",
        DLT_WEIGHTS_OFFLINE="1",  # no test downloads weights (tests/conftest.py)
    )
    return env


def qgis_process(env, *args, timeout=RUN_TIMEOUT):
    # Started outside the repository: its folder on sys.path would hide what the zip installed.
    return subprocess.run([QGIS_PROCESS, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd=tempfile.gettempdir())


def results_of(completed, what):
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, f"{what} failed:\n{output[-6000:]}"
    assert "Traceback" not in output, output[-6000:]
    return json.loads(completed.stdout[completed.stdout.index("{"):])["results"]


def pip_index() -> str:
    """The index pip uses: PIP_INDEX_URL, else pip's configuration (pip.conf), else PyPI."""
    index = os.environ.get("PIP_INDEX_URL", "")
    if not index:
        asked = subprocess.run([QGIS_PYTHON, "-m", "pip", "config", "get", "global.index-url"],
                               capture_output=True, text=True, timeout=60)
        index = asked.stdout.strip() if asked.returncode == 0 else ""
    return (index or "https://pypi.org/simple").split()[0].rstrip("/")


def registry_reachable() -> str:
    """'' when pip's index answers, else why not (the system's proxy variables are honoured, as pip does)."""
    index = pip_index() + "/pip/"
    try:
        with urllib.request.urlopen(index, timeout=20) as response:
            response.read(1)
        return ""
    except (urllib.error.URLError, OSError) as e:
        return f"the package registry ({index}) cannot be reached: {e}"


@pytest.fixture(scope="module")
def package_zip(tmp_path_factory):
    """``make package``'s zip, built by QGIS's Python (standard library only)."""
    out = tmp_path_factory.mktemp("dist") / f"{PLUGIN}.zip"
    built = subprocess.run([QGIS_PYTHON, str(REPO / "scripts" / "make_package.py"), "--out", str(out)],
                           capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stdout + built.stderr
    return out


@pytest.fixture(scope="module")
def bare_qgis(package_zip, tmp_path_factory):
    """A fresh profile with the zip installed and the plugin enabled: the environment to run qgis_process in
    (DLT_ENV_DIR still to be chosen by each test)."""
    config = tmp_path_factory.mktemp("qgis-config")
    plugins = config / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(package_zip) as zf:
        zf.extractall(plugins)  # what Plugins ▸ Manage and Install Plugins ▸ Install from ZIP does
    env = bare_environment(config, tmp_path_factory.mktemp("no-env"))
    # QGIS's Python really is bare: none of the engine's packages import in it.
    probe = "import importlib.util, sys; sys.exit(any(importlib.util.find_spec(m) for m in sys.argv[1:]))"
    bare = subprocess.run([QGIS_PYTHON, "-c", probe, *ENGINE_PACKAGES], env=env, capture_output=True, timeout=60)
    if bare.returncode != 0:
        pytest.skip(f"{QGIS_PYTHON} has some of {', '.join(ENGINE_PACKAGES)}: not a bare QGIS")
    enabled = qgis_process(env, "plugins", "enable", PLUGIN, timeout=120)
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    listed = qgis_process(env, "plugins", timeout=120)
    assert f"* {PLUGIN}" in listed.stdout, listed.stdout + listed.stderr
    assert "Traceback" not in listed.stdout + listed.stderr  # loads without any engine package
    return env


def test_packaged_plugin_without_environment_says_how_to_set_it_up(bare_qgis, data_dir, tmp_path):
    """The installed zip before its environment exists (an empty DLT_ENV_DIR): every tool is listed, and the
    export, which runs in the engine's worker too, ends with how to set the environment up: no traceback, no
    import error, nothing written. (Training and the check without an environment: test_without_engine.py.)"""
    env = dict(bare_qgis, DLT_ENV_DIR=str(tmp_path / "empty-env"))
    listed = qgis_process(env, "list")
    for alg in (INSTALL_ALG, CHECK_ALG, EXPORT_ALG, TRAIN_ALG, CLASSIFY_ALG):
        assert alg in listed.stdout, alg
    chips = tmp_path / "chips"
    run = qgis_process(env, "run", EXPORT_ALG, "--", f"IN_RASTER={data_dir / 'trees_osbs' / 'OSBS_029.tif'}",
                       f"IN_CLASS_DATA={data_dir / 'trees_osbs' / 'trees.gpkg'}", f"OUT_FOLDER={chips}",
                       "METADATA_FORMAT=2")
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-3000:]
    for bad in ("Traceback", "ImportError", "ModuleNotFoundError"):
        assert bad not in output, output[-3000:]
    # What to do: the install algorithm (headless) or the dialog (desktop).
    assert INSTALL_ALG in output and "Deep learning environment" in output, output[-3000:]
    assert not chips.exists()


@pytest.mark.trains
def test_install_then_export_train_classify(bare_qgis, data_dir, tmp_path):
    from dl_engine.environment.manager import ready_python

    env = dict(bare_qgis, DLT_ENV_DIR=str(ENV_DIR))
    if ready_python(str(ENV_DIR)) is None:
        unreachable = registry_reachable()
        if unreachable:
            pytest.skip(f"{unreachable}; the engine environment cannot be installed")
    ENV_DIR.parent.mkdir(parents=True, exist_ok=True)

    seconds = {}  # step → wall time, printed at the end (make test -s, or the pytest log)

    def step(name, *args, timeout=RUN_TIMEOUT):
        started = time.monotonic()
        results = results_of(qgis_process(env, "--json", "run", *args, timeout=timeout), name)
        seconds[name] = time.monotonic() - started
        return results

    installed = step("install", INSTALL_ALG, "--", "DEVICE=0", "REINSTALL=false", timeout=INSTALL_TIMEOUT)
    python = Path(installed["PYTHON"])
    assert python.is_file() and ENV_DIR in python.parents, installed
    assert installed["DEVICE"] in ("cpu", "cuda", "mps"), installed

    report = tmp_path / "report.txt"
    checked = step("check", CHECK_ALG, "--", f"REPORT={report}")
    assert checked["READY"] is True, checked
    assert Path(checked["PYTHON"]) == python
    assert "torch" in Path(checked["REPORT"]).read_text(encoding="utf-8")

    raster = data_dir / "trees_osbs" / "OSBS_029.tif"
    chips = tmp_path / "chips"
    exported = step("export", EXPORT_ALG, "--", f"IN_RASTER={raster}",
                    f"IN_CLASS_DATA={data_dir / 'trees_osbs' / 'trees.gpkg'}", f"OUT_FOLDER={chips}",
                    "METADATA_FORMAT=2", "TILE_SIZE_X=128", "TILE_SIZE_Y=128", "STRIDE_X=128", "STRIDE_Y=128")
    assert exported["NUM_TILES"] >= 4

    model = tmp_path / "model"
    trained = step("train", TRAIN_ALG, "--", f"IN_FOLDER={chips}", f"OUT_FOLDER={model}", "MODEL_TYPE=0",
                   "BACKBONE_MODEL=EFFICIENTNET_LITE0", "MAX_EPOCHS=1", "BATCH_SIZE=4", "LEARNING_RATE=0.001")
    dlpk = Path(trained["OUT_MODEL_FILE"])
    assert dlpk.suffix == ".dlpk" and dlpk.is_file() and model in dlpk.parents
    # EFFICIENTNET_LITE0's ImageNet weights ship in a package of the pinned list: the environment has them.
    emd = json.loads(next(model.rglob("*.emd")).read_text(encoding="utf-8"))
    assert emd.get("PretrainedWeights") and emd["PretrainedWeights"] != "random", emd.get("PretrainedWeights")

    classified = tmp_path / "classified.tif"
    results = step("classify", CLASSIFY_ALG, "--", f"IN_RASTER={raster}", f"IN_MODEL_DEFINITION={dlpk}",
                   f"OUT_CLASSIFIED_RASTER={classified}")
    assert Path(results["OUT_CLASSIFIED_RASTER"]) == classified and classified.is_file()
    from osgeo import gdal, osr

    source, output = gdal.Open(str(raster)), gdal.Open(str(classified))
    assert (output.RasterXSize, output.RasterYSize) == (source.RasterXSize, source.RasterYSize)
    assert osr.SpatialReference(output.GetProjection()).IsSame(osr.SpatialReference(source.GetProjection()))
    # and measured: the accuracy tool runs in the environment's worker too.
    matrix = tmp_path / "confusion_matrix.csv"
    step("accuracy", ACCURACY_ALG, "--", f"IN_RASTER={classified}", "SAMPLING=3",
         f"IN_GROUND_TRUTH_DATA={data_dir / 'trees_osbs' / 'trees.gpkg'}", f"OUT_CONFUSION_MATRIX={matrix}")
    rows = matrix.read_text(encoding="utf-8").splitlines()
    assert rows[0].startswith("ClassValue") and any(r.startswith("Kappa") for r in rows), rows
    print(f"\nthe user's path on {installed['DEVICE']}: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
