"""What the arcgis.learn round-trip tests (tests/engine/test_arcgis_*.py, issue 15) share: the
oracle's Python (../shared/tools/arcgis-oracle/install.sh), a skip that says why when it is absent,
and arcgis.learn's verdict on a package (check_model.py)."""

import json
import subprocess
from pathlib import Path
from typing import Optional

import pytest

import arcgis_compare  # scripts/, on sys.path through tests/conftest.py

ROOT = Path(__file__).resolve().parents[2]
ORACLE = arcgis_compare.oracle_python()
needs_oracle = pytest.mark.skipif(ORACLE is None, reason="the arcgis.learn oracle is not installed "
                                  f"({arcgis_compare.ORACLE_HOME}; ../shared/tools/arcgis-oracle/install.sh)")
CHECK_MODEL = ROOT.parent / "shared" / "tools" / "arcgis-oracle" / "check_model.py"


def assert_arcgis_learn_loads(package, timeout: int = 900) -> None:
    """check_model.py's verdict: ``<ModelName>.from_model(package)`` and one forward pass in
    arcgis.learn (where the shared tool is present)."""
    if CHECK_MODEL.is_file():
        with arcgis_compare.oracle_env() as env:
            done = subprocess.run([str(ORACLE), str(CHECK_MODEL), str(package)], capture_output=True, text=True,
                                  timeout=timeout, env=env)
        assert done.returncode == 0 and "RESULT: OK" in done.stdout, done.stdout[-2000:]


def train_with_arcgis_learn(export, out, *args: str, timeout: int = 900) -> None:
    """Train and save a package with arcgis.learn itself (scripts/make_arcgis_fixtures.py EXPORT OUT
    ARGS…), in a temporary folder of its own that is removed afterwards."""
    with arcgis_compare.oracle_env() as env:
        done = subprocess.run([str(ORACLE), str(ROOT / "scripts" / "make_arcgis_fixtures.py"), str(export),
                               str(out), *args], capture_output=True, text=True, timeout=timeout, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


def as_written_before(emd_path, inference_function: Optional[str] = None, **model_parameters) -> None:
    """Rewrite a package's emd as this plugin wrote it before arcgis.learn's layouts: no recorded
    network; with ``inference_function``, its own Framework and inference function; and
    ``model_parameters`` added to ModelParameters."""
    emd = json.loads(Path(emd_path).read_text())
    del emd["Engine"]["network"]
    if inference_function:
        emd.update(Framework="PyTorch", InferenceFunction=inference_function)
    emd["ModelParameters"].update(model_parameters)
    Path(emd_path).write_text(json.dumps(emd))
