"""The engine's layer rules, held by a test (no QGIS; README.md, "Architecture", draws them).

- Read from the source with ``ast`` (every ``import``, top level or inside a function):
  nothing in dl_engine/ imports qgis or Qt; the layers under training (models, infer, data,
  export, package) never import dl_engine.train; the contract modules (errors, events,
  arguments, formats, devices) import only the standard library and each other; and every
  module imports only its own floor or the floors below (``FLOORS``), train and infer never
  each other.
- Run in a fresh interpreter where numpy, rasterio, shapely, torch and timm cannot be
  imported: what QGIS's process imports (the contract modules, the configurations, the model
  registry, the interpreter helper, and whatever processing_provider/ and plugin/ import at
  module level) must still import, and the registry must list its model types. A failure
  prints the chain of imports that reached the blocked package.
"""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

REPO = Path(__file__).resolve().parents[2]
ENGINE = REPO / "dl_engine"
MODULES = sorted(ENGINE.rglob("*.py"))

# The contract layer: the rules both sides of the process boundary read.
CONTRACT = {"dl_engine.errors", "dl_engine.events", "dl_engine.arguments", "dl_engine.formats",
            "dl_engine.devices"}
# Below training: these read exports, build networks, run models and write packages.
BELOW_TRAINING = ("models", "infer", "data", "export", "package")
GUI = {"qgis", "PyQt4", "PyQt5", "PyQt6", "PySide2", "PySide6", "sip"}
STDLIB = set(sys.stdlib_module_names)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[Tuple[int, str, bool]]:
    """(line, module, relative) for every import in ``path``, resolved to absolute names.

    ``from X import a`` yields X and X.a (``a`` may be a submodule); anywhere in the file,
    function bodies included."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, False
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module
            yield node.lineno, base, bool(node.level)
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{base}.{alias.name}", bool(node.level)


def where(path: Path, line: int) -> str:
    return f"{path.relative_to(REPO)}:{line}"


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


# The floors of README.md's drawing; a module may import its own floor and those below.
# dl_engine/<name>.py or dl_engine/<name>/ → floor; the entry points (``cli``) sit on top.
FLOORS = {
    "": 0, "errors": 0, "events": 0, "arguments": 0, "formats": 0, "devices": 0,  # the contract
    "checks": 0, "json_config": 0, "interpreter": 0,  # standard-library helpers of the configs and the runner
    # the engine environment's installer runs in QGIS's Python (stdlib only); its smoke.py runs inside
    # the environment and imports torch in its functions only (test_environment_modules.py holds both)
    "environment": 0,
    "memory_budget": 0, "destinations": 0,  # sizes against memory, output folders and write errors (stdlib)
    "job_files": 0,  # jobs (JSON and WKB records) handed to the export and accuracy workers
    "host": 0,  # whether the process that started this one is alive (workers and pools die with it)
    "data": 1, "export": 1, "models": 1, "package": 1, "runtime": 1, "raster_info": 1, "accuracy": 1,
    "train": 2, "infer": 2,
    "autodl": 3,
    "cli": 4, "worker": 4, "__main__": 4,
}
TOP = 4
KNOWN = {module_name(p) for p in MODULES}


def layer(module: str) -> str:
    """``dl_engine.infer.grid`` → ``infer``; ``dl_engine`` → ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def floor(module: str) -> int:
    """``dl_engine.train.cli`` (an entry point) is on top; otherwise its first part decides."""
    if module.split(".")[-1] in ("cli", "__main__"):
        return TOP
    return FLOORS[layer(module)]


def engine_imports(path: Path) -> Iterator[Tuple[int, str]]:
    """The dl_engine modules ``path`` imports (``from X import a`` counts X.a when it is a module)."""
    for line, imported, _ in imports(path):
        if imported in KNOWN:
            yield line, imported


def test_the_modules_are_found():
    names = {module_name(p) for p in MODULES}
    assert CONTRACT <= names, CONTRACT - names
    assert all(f"dl_engine.{layer}" in names for layer in BELOW_TRAINING)


def test_every_module_has_a_floor():
    missing = sorted({layer(m) for m in KNOWN} - set(FLOORS))
    assert not missing, f"dl_engine/{missing}: add them to FLOORS (and README.md's drawing)"


def test_modules_import_only_their_floor_and_below():
    found = []
    for path in MODULES:
        module = module_name(path)
        for line, imported in engine_imports(path):
            if floor(imported) > floor(module):
                found.append(f"{where(path, line)} ({module}, floor {floor(module)}) imports {imported} "
                             f"(floor {floor(imported)})")
            if {layer(module), layer(imported)} == {"train", "infer"}:
                found.append(f"{where(path, line)}: {module} imports {imported} (train and infer are apart)")
    assert not found, "\n".join(found)


def test_nothing_imports_qgis_or_qt():
    found = [f"{where(p, line)} imports {m}" for p in MODULES for line, m, rel in imports(p)
             if not rel and m.split(".")[0] in GUI]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("layer", BELOW_TRAINING)
def test_layers_below_training_do_not_import_it(layer):
    found = [f"{where(p, line)} imports {m}" for p in MODULES if within(module_name(p), f"dl_engine.{layer}")
             for line, m, _ in imports(p) if within(m, "dl_engine.train")]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("module", sorted(CONTRACT) + ["dl_engine"])
def test_contract_modules_import_only_the_standard_library_and_each_other(module):
    """``dl_engine/__init__.py`` too: importing any contract module runs it."""
    path = ENGINE / "__init__.py" if module == "dl_engine" else ENGINE / f"{module.rpartition('.')[2]}.py"
    found = []
    for line, imported, _ in imports(path):
        top = imported.split(".")[0]
        if top == "dl_engine":
            # ``from . import events`` names the package itself, then the module.
            if imported != "dl_engine" and not any(within(imported, c) for c in CONTRACT):
                found.append(f"{where(path, line)} imports {imported}")
        elif top not in STDLIB and top != "__future__":
            found.append(f"{where(path, line)} imports {imported} (not the standard library)")
    assert not found, "\n".join(found)


# ---- imported without the heavy packages -----------------------------------------------------------

BLOCKED = ("numpy", "rasterio", "shapely", "torch", "timm")
# What the QGIS side imports in QGIS's own process (the algorithms' declarations and checks).
LIGHT = ["dl_engine.errors", "dl_engine.events", "dl_engine.arguments", "dl_engine.formats",
         "dl_engine.devices", "dl_engine.export.config", "dl_engine.train.config", "dl_engine.autodl.config",
         "dl_engine.infer.config", "dl_engine.models.registry", "dl_engine.interpreter",
         # read in QGIS's process too: the inference tools' ARGUMENTS names, a package's classes
         "dl_engine.infer.arguments", "dl_engine.package.reader"]

# Run in a fresh interpreter: argv[1] a JSON list of modules; prints one JSON object.
PROBE = r'''
import importlib, json, sys, traceback

BLOCKED = %(blocked)r


class Blocked(ImportError):
    pass


class Blocker:
    """A meta-path finder that refuses the heavy packages and records who asked."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in BLOCKED:
            return None
        chain, frame = [], sys._getframe(1)
        while frame is not None:
            module = frame.f_globals.get("__name__", "")
            if module.startswith("dl_engine") or module == "__main__":
                chain.append(f"{module}:{frame.f_lineno} ({frame.f_code.co_name})")
            frame = frame.f_back
        raise Blocked(f"{name} is blocked; imported through " + " -> ".join(reversed(chain)))


sys.meta_path.insert(0, Blocker())
for name in list(sys.modules):
    if name.split(".")[0] in BLOCKED:
        del sys.modules[name]
results = {}
for module in json.loads(sys.argv[1]):
    try:
        importlib.import_module(module)
        results[module] = {"ok": True}
    except BaseException as error:  # an engine module may raise anything while importing
        results[module] = {"ok": False, "error": f"{type(error).__name__}: {error}",
                           "traceback": traceback.format_exc(limit=-12)}
try:
    from dl_engine.models.registry import model_types
    results["model_types"] = {"ok": True, "value": [str(t) for t in model_types()]}
except BaseException as error:
    results["model_types"] = {"ok": False, "error": f"{type(error).__name__}: {error}",
                              "traceback": traceback.format_exc(limit=-12)}
results["loaded"] = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in BLOCKED})
print(json.dumps(results))
''' % {"blocked": BLOCKED}


QGIS_SIDE = sorted([*(REPO / "processing_provider").glob("*.py"), *(REPO / "plugin").glob("*.py"), REPO / "__init__.py"])


def loaded_with(path: Path) -> Iterator[str]:
    """The dl_engine modules a QGIS-side file imports as it loads (not inside functions)."""
    def walk(nodes):
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, ast.Import):
                yield from (a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                yield node.module
                yield from (f"{node.module}.{a.name}" for a in node.names)
            yield from walk(ast.iter_child_nodes(node))

    for name in walk(ast.parse(path.read_text(encoding="utf-8")).body):
        if name in KNOWN:
            yield name


LOADED_BY_QGIS = sorted({m for p in QGIS_SIDE for m in loaded_with(p)} - set(LIGHT))


def test_the_qgis_side_was_read():
    assert "dl_engine.errors" in {m for p in QGIS_SIDE for m in loaded_with(p)}


@pytest.fixture(scope="module")
def light_imports():
    """The probe's results: {module: {"ok", "error", "traceback"}, "model_types": …, "loaded": […]}."""
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(LIGHT + LOADED_BY_QGIS + ["numpy"])], capture_output=True, text=True,
                          env=env, cwd=str(REPO), timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", LIGHT + LOADED_BY_QGIS)
def test_imports_without_numpy_rasterio_shapely_torch_timm(light_imports, module):
    result = light_imports[module]
    assert result["ok"], f"{module}: {result['error']}\n{result['traceback']}"


def test_the_registry_lists_its_model_types_without_torch(light_imports):
    result = light_imports["model_types"]
    assert result["ok"], f"{result['error']}\n{result['traceback']}"
    types: List[str] = result["value"]
    assert len(types) == len(set(types))
    assert {"UNET", "PSPNET", "DEEPLAB"} <= set(types), types


def test_the_probe_really_blocked_them(light_imports):
    assert not light_imports["numpy"]["ok"] and "numpy is blocked" in light_imports["numpy"]["error"]
    assert light_imports["loaded"] == []
