#!/usr/bin/env python3
"""Build ``dist/deep_learning_tools.zip``: the plugin as the QGIS plugin repository accepts it.

    python3 scripts/make_package.py [--out FILE]        (``make package``)

Standard library only (it runs before any set-up). What goes into the zip is decided here, in
INCLUDE / EXCLUDED_NAMES / EXCLUDED_SUFFIXES, and nowhere else. The zip is checked after it is
written (``validate``) with the rules of plugins.qgis.org's upload validator: one top-level folder
named like a Python package holding ``__init__.py`` (with ``classFactory``), ``metadata.txt`` with
every required key, ``LICENSE`` and the icon; no ``.pyc``, ``__pycache__``, ``.git*`` or ``__MACOSX``
entries; under 25 MB. A failed check removes the zip and exits non-zero with the reasons.
"""

from __future__ import annotations

import argparse
import configparser
import os
import re
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE_NAME = "deep_learning_tools"  # the plugin folder's name in QGIS; also how dl_engine finds its root
ZIP_NAME = f"{PACKAGE_NAME}.zip"
MAX_BYTES = 25_000_000  # plugins.qgis.org's PLUGIN_MAX_UPLOAD_SIZE

# ---- what goes in: one place ---------------------------------------------------------------------
# Top-level files and folders of the plugin, relative to the repository root. Folders go in whole,
# minus the exclusions below. requirements-engine.txt is the pinned list the environment installer
# reads; the files it names with -c/-r (constraints) are added by requirement_files().
INCLUDE_FILES = ("__init__.py", "metadata.txt", "LICENSE", "icon.svg", "README.md", "requirements-engine.txt")
INCLUDE_FOLDERS = ("dl_engine", "processing_provider", "plugin", "icons")
# Development-only top-level entries, named so that a new top-level entry is either in the lists
# above or here (``unclassified``): tests, benchmarks, dev scripts, set-up files, notes, CI.
DEV_ONLY = ("tests", "benchmarks", "scripts", "docs", ".ci", "Makefile", "pytest.ini",
            "requirements.txt")
# Made by running things (and ignored by git): never packaged, never reported.
GENERATED = ("demo-output", "dist", "build")
# Never inside an included folder either (caches, editor and VCS litter).
EXCLUDED_NAMES = {"__pycache__", "__MACOSX", ".git", ".gitignore", ".gitattributes", ".DS_Store",
                  ".pytest_cache", ".mypy_cache", ".ruff_cache", ".ipynb_checkpoints", "tests"}
EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".orig", ".rej", ".swp", "~", ".tmp")

# plugins.qgis.org refuses an upload without these keys (qgis-app/plugins/validator.py,
# PLUGIN_REQUIRED_METADATA); the others are what its plugin page shows.
REQUIRED_METADATA = ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
                     "repository", "tracker")
EXPECTED_METADATA = REQUIRED_METADATA + ("homepage", "changelog", "icon", "license", "tags")
URL_KEYS = ("repository", "tracker", "homepage")
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")


class PackageError(Exception):
    """The package could not be built or failed a check: the message lists every problem."""


def excluded(name: str) -> bool:
    return name in EXCLUDED_NAMES or name.endswith(EXCLUDED_SUFFIXES) or name.startswith(".#")


def requirement_files(path: str) -> list:
    """Files that a requirements file names with ``-c``/``-r`` (relative to it), recursively."""
    found = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            words = line.split("#", 1)[0].split()
            if len(words) >= 2 and words[0] in ("-c", "-r", "--constraint", "--requirement"):
                name = os.path.normpath(os.path.join(os.path.dirname(path), words[1]))
                if not os.path.isfile(name):
                    raise PackageError(f"{os.path.relpath(path, REPO)} names {words[1]}, which does not exist")
                found += [name] + requirement_files(name)
    return found


def collect(repo: str = REPO) -> list:
    """(absolute path, path inside the zip) for every file of the package, sorted."""
    missing = [name for name in INCLUDE_FILES + INCLUDE_FOLDERS if not os.path.exists(os.path.join(repo, name))]
    if missing:
        raise PackageError("missing from the repository: " + ", ".join(missing))
    files = [os.path.join(repo, name) for name in INCLUDE_FILES]
    for name in INCLUDE_FILES:
        if name.startswith("requirements"):
            files += requirement_files(os.path.join(repo, name))
    for folder in INCLUDE_FOLDERS:
        for root, dirs, names in os.walk(os.path.join(repo, folder)):
            dirs[:] = sorted(d for d in dirs if not excluded(d))
            files += [os.path.join(root, n) for n in names if not excluded(n)]
    unique = sorted({os.path.abspath(f) for f in files})
    return [(path, f"{PACKAGE_NAME}/{os.path.relpath(path, repo).replace(os.sep, '/')}") for path in unique]


def unclassified(repo: str = REPO) -> list:
    """Top-level entries that are neither packaged nor named development-only: a new runtime
    folder (icons, data files) that would silently be missing from the zip."""
    packaged = set(INCLUDE_FILES + INCLUDE_FOLDERS)
    for name in INCLUDE_FILES:
        if name.startswith("requirements") and os.path.isfile(os.path.join(repo, name)):
            packaged |= {os.path.relpath(f, repo) for f in requirement_files(os.path.join(repo, name))}
    return sorted(e for e in os.listdir(repo) if not (e in packaged or e in DEV_ONLY or e in GENERATED
                                                     or e.startswith(".") or excluded(e)))


def read_metadata(text: str) -> dict:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive (qgisMinimumVersion)
    parser.read_string(text)
    if not parser.has_section("general"):
        raise PackageError("metadata.txt has no [general] section")
    return dict(parser.items("general"))


@dataclass
class Report:
    """What ``validate`` found: the package's version, size and file count, or its problems."""
    path: str
    version: str = ""
    size: int = 0
    names: list = field(default_factory=list)
    problems: list = field(default_factory=list)


def metadata_problems(meta: dict) -> list:
    problems = [f"metadata.txt: '{key}' is missing or empty" for key in EXPECTED_METADATA if not meta.get(key)]
    version = meta.get("version", "")
    if version and not VERSION_RE.match(version):
        problems.append(f"metadata.txt: version '{version}' is not MAJOR.MINOR.PATCH")
    changelog = meta.get("changelog", "").strip()
    if version and changelog and not changelog.startswith(version + " "):
        problems.append(f"metadata.txt: the changelog's first entry is not version {version}")
    for key in URL_KEYS:
        if meta.get(key) and not re.match(r"^https?://[^/\s]+\S*$", meta[key]):
            problems.append(f"metadata.txt: {key} '{meta[key]}' is not an http(s) address")
    if "/" in meta.get("author", ""):
        problems.append("metadata.txt: author must not contain '/'")
    if meta.get("description", "").count(",") > 5:
        problems.append("metadata.txt: description reads like a keyword list (more than 5 commas): write sentences")
    return problems


def validate(zip_path: str, expected_version: str | None = None) -> Report:
    """Check a built zip as plugins.qgis.org's validator does (and a little more)."""
    report = Report(zip_path, size=os.path.getsize(zip_path))
    problems = report.problems
    if report.size > MAX_BYTES:
        problems.append(f"{report.size} bytes: over the repository's limit of {MAX_BYTES}")
    with zipfile.ZipFile(zip_path) as zf:
        names = report.names = zf.namelist()
        bad = zf.testzip()
        if bad:
            problems.append(f"corrupt entry {bad}")
        tops = {n.split("/", 1)[0] for n in names}
        if tops != {PACKAGE_NAME} or not names or not names[0].startswith(PACKAGE_NAME + "/"):
            problems.append(f"top level must be the single folder {PACKAGE_NAME}/, found {sorted(tops)}")
        if not (PACKAGE_NAME.isidentifier() and re.match(r"^[A-Za-z][A-Za-z0-9_]+$", PACKAGE_NAME)):
            problems.append(f"folder name {PACKAGE_NAME} is not a valid Python package name")
        for n in names:
            parts = n.rstrip("/").split("/")
            if ".." in parts or n.startswith("/") or "\\" in n:
                problems.append(f"path information in entry {n}")
            if ".pyc" in n or any(excluded(p) or p.startswith(".git") for p in parts):
                problems.append(f"forbidden entry {n}")
            if len(parts) > 1 and parts[1] in DEV_ONLY:
                problems.append(f"development file {n}")
        for required in ("__init__.py", "metadata.txt", "LICENSE"):
            if f"{PACKAGE_NAME}/{required}" not in names:
                problems.append(f"{PACKAGE_NAME}/{required} is missing")
        if f"{PACKAGE_NAME}/__init__.py" in names:
            init = zf.read(f"{PACKAGE_NAME}/__init__.py").decode("utf-8")
            if not re.search(r"^def classFactory\(", init, re.M):
                problems.append("__init__.py defines no classFactory(iface)")
        if f"{PACKAGE_NAME}/metadata.txt" in names:
            try:
                meta = read_metadata(zf.read(f"{PACKAGE_NAME}/metadata.txt").decode("utf-8"))
            except (configparser.Error, UnicodeDecodeError, PackageError) as e:
                problems.append(f"metadata.txt cannot be read: {e}")
                meta = {}
            problems += metadata_problems(meta)
            report.version = meta.get("version", "")
            if expected_version and report.version != expected_version:
                problems.append(f"version {report.version} in the zip, expected {expected_version}")
            icon = meta.get("icon", "").removeprefix("./")
            if icon and f"{PACKAGE_NAME}/{icon}" not in names:
                problems.append(f"the icon {icon} named in metadata.txt is not in the zip")
    return report


def build(out: str, repo: str = REPO) -> Report:
    """Write the zip to ``out`` (through a temporary name), validate it and return the report."""
    with open(os.path.join(repo, "metadata.txt"), encoding="utf-8") as f:
        version = read_metadata(f.read()).get("version", "")
    entries = collect(repo)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".package-", suffix=".zip", dir=os.path.dirname(os.path.abspath(out)))
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            # Folder entries first: the repository takes the first entry's folder as the plugin's name.
            folders = set()
            for _, arc in entries:
                folder = arc.rpartition("/")[0]
                while folder:
                    folders.add(folder)
                    folder = folder.rpartition("/")[0]
            for folder in sorted(folders):
                info = zipfile.ZipInfo(folder + "/", date_time=time.localtime()[:6])
                info.external_attr = (0o40755 << 16) | 0x10  # a directory (unix mode + MS-DOS flag)
                zf.writestr(info, b"")
            for path, arc in entries:
                zf.write(path, arc)
        report = validate(tmp, expected_version=version)
        if report.problems:
            raise PackageError("\n".join(report.problems))
        os.replace(tmp, out)
        report.path = out
        return report
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(REPO, "dist", ZIP_NAME), help="zip to write (dist/%(default)s)")
    args = parser.parse_args(argv)
    try:
        report = build(args.out)
    except PackageError as e:
        print(f"package not built:\n{e}", file=sys.stderr)
        return 1
    for entry in unclassified():
        print(f"warning: {entry} is neither packaged nor development-only: add it to INCLUDE_* or DEV_ONLY "
              f"in {os.path.relpath(__file__)}", file=sys.stderr)
    files = sum(1 for n in report.names if not n.endswith("/"))
    print(f"{os.path.relpath(report.path)}: version {report.version}, {files} files, "
          f"{report.size / 1e6:.2f} MB (limit {MAX_BYTES / 1e6:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
