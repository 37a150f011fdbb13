"""`make package`: the zip the QGIS plugin repository takes (scripts/make_package.py).

Built into a temporary folder and read back as plugins.qgis.org reads an upload: one folder named
like a Python package with __init__.py (classFactory), metadata.txt, LICENSE and the icon; every
plugin module in it, nothing of the development set-up, no caches, under 25 MB.
"""

import configparser
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The script is not a package (and tests/conftest.py alone touches sys.path): load it from its file.
_spec = importlib.util.spec_from_file_location("make_package", REPO / "scripts" / "make_package.py")
make_package = sys.modules["make_package"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(make_package)

TOP = "deep_learning_tools"
# Folders of the repository that are not the plugin: development, or made by running things.
NOT_PLUGIN = {"tests", "benchmarks", "scripts", "docs", "dist", "build", "demo-output"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("package") / "deep_learning_tools.zip"
    completed = subprocess.run([sys.executable, str(REPO / "scripts" / "make_package.py"), "--out", str(out)],
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return out, completed.stdout


@pytest.fixture(scope="module")
def names(built):
    with zipfile.ZipFile(built[0]) as zf:
        return zf.namelist()


def repo_metadata():
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(REPO / "metadata.txt", encoding="utf-8")
    return dict(parser.items("general"))


def test_one_top_folder_with_the_plugin_entry_point(built, names):
    assert {n.split("/")[0] for n in names} == {TOP}
    assert names[0].startswith(TOP + "/")  # the repository names the plugin after the first entry
    assert TOP.isidentifier()
    with zipfile.ZipFile(built[0]) as zf:
        init = zf.read(f"{TOP}/__init__.py").decode()
        assert zf.testzip() is None
    assert re.search(r"^def classFactory\(iface\)", init, re.M)
    for name in ("metadata.txt", "LICENSE", "icon.svg", "requirements-engine.txt", "icons/environment.svg"):
        assert f"{TOP}/{name}" in names, name


def test_metadata_complete_and_the_version_the_repository_has(built, names):
    with zipfile.ZipFile(built[0]) as zf:
        text = zf.read(f"{TOP}/metadata.txt").decode("utf-8")
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read_string(text)
    meta = dict(parser.items("general"))
    for key in ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
                "repository", "tracker", "homepage", "changelog", "icon", "license"):
        assert meta.get(key, "").strip(), key
    assert meta == repo_metadata()
    assert re.fullmatch(r"\d+\.\d+\.\d+", meta["version"])
    assert meta["changelog"].strip().startswith(meta["version"] + " ")
    # A few sentences, not a keyword list.
    assert meta["description"].count(". ") >= 1 and meta["description"].count(",") <= 5
    assert f"{TOP}/{meta['icon']}" in names
    assert f"version {meta['version']}" in built[1]


def test_every_plugin_module_and_no_development_file(names):
    expected = set()
    for root, dirs, files in os.walk(REPO):
        rel = Path(root).relative_to(REPO)
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"
                   and not (rel == Path(".") and d in NOT_PLUGIN) and d != "tests"]
        expected |= {f"{TOP}/{(rel / f).as_posix()}" for f in files if f.endswith(".py")}
    files = {n for n in names if not n.endswith("/")}
    assert expected and expected <= files, sorted(expected - files)
    assert f"{TOP}/dl_engine/__main__.py" in files and f"{TOP}/processing_provider/provider.py" in files
    for name in files:
        parts = name.split("/")
        assert parts[1] not in NOT_PLUGIN | {"Makefile", "pytest.ini", ".ci", ".venv"}, name
        assert not any(p.startswith(".") or p == "__pycache__" for p in parts), name
        assert not name.endswith((".pyc", ".pyo")), name


def test_every_top_level_entry_is_packaged_or_named_development_only():
    assert make_package.unclassified() == []


def test_constraints_the_pinned_list_uses_come_along(built, names):
    with zipfile.ZipFile(built[0]) as zf:
        pinned = zf.read(f"{TOP}/requirements-engine.txt").decode()
    for line in pinned.splitlines():
        words = line.split("#", 1)[0].split()
        if words[:1] and words[0] in ("-c", "-r", "--constraint", "--requirement"):
            assert f"{TOP}/{words[1]}" in names, words[1]


def test_size_under_the_repository_limit(built):
    size = built[0].stat().st_size
    assert size < 25_000_000
    assert f"{size / 1e6:.2f} MB" in built[1]


def test_every_module_compiles(built, names):
    with zipfile.ZipFile(built[0]) as zf:
        for name in names:
            if name.endswith(".py"):
                compile(zf.read(name), name, "exec")


def test_litter_in_the_tree_is_left_out(tmp_path):
    """Caches, bytecode and a stray tests folder inside the plugin's folders do not reach the zip."""
    repo = tmp_path / "repo"
    shutil.copytree(REPO, repo, ignore=lambda folder, entries: [
        e for e in entries if e == "__pycache__" or (Path(folder) == REPO and (e.startswith(".") or e in NOT_PLUGIN))])
    (repo / "dl_engine" / "__pycache__").mkdir(exist_ok=True)
    (repo / "dl_engine" / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"\0")
    (repo / "plugin" / "main.pyc").write_bytes(b"\0")
    (repo / "processing_provider" / ".DS_Store").write_bytes(b"\0")
    (repo / "dl_engine" / "tests").mkdir()
    (repo / "dl_engine" / "tests" / "test_x.py").write_text("")
    report = make_package.build(str(tmp_path / "out" / "p.zip"), repo=str(repo))
    assert not report.problems
    assert not [n for n in report.names if ".pyc" in n or "__pycache__" in n or ".DS_Store" in n or "/tests/" in n]
    assert os.listdir(tmp_path / "out") == ["p.zip"]  # no temporary zip left beside it


def write_zip(path, entries):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return str(path)


def test_the_checks_refuse_what_the_repository_would(built, tmp_path):
    with zipfile.ZipFile(built[0]) as zf:
        good = {n: zf.read(n) for n in zf.namelist() if not n.endswith("/")}
    assert make_package.validate(write_zip(tmp_path / "good.zip", good)).problems == []

    two_tops = dict(good, **{"other/readme.txt": b"x"})
    bytecode = dict(good, **{f"{TOP}/dl_engine/__pycache__/cli.cpython-311.pyc": b"\0"})
    dev = dict(good, **{f"{TOP}/tests/test_x.py": b""})
    no_licence = {n: d for n, d in good.items() if n != f"{TOP}/LICENSE"}
    meta = good[f"{TOP}/metadata.txt"].decode()
    no_email = dict(good, **{f"{TOP}/metadata.txt": re.sub(r"(?m)^email=.*\n", "", meta).encode()})
    cases = {
        "two_tops": (two_tops, "single folder"),
        "bytecode": (bytecode, "forbidden entry"),
        "dev": (dev, "development file"),
        "no_licence": (no_licence, "LICENSE is missing"),
        "no_email": (no_email, "'email' is missing"),
    }
    for name, (entries, message) in cases.items():
        problems = make_package.validate(write_zip(tmp_path / f"{name}.zip", entries)).problems
        assert any(message in p for p in problems), (name, problems)
    wrong = make_package.validate(write_zip(tmp_path / "v.zip", good), expected_version="9.9.9").problems
    assert any("expected 9.9.9" in p for p in wrong)
