"""Install, check, repair and remove the engine environment.

The environment is an isolated virtual environment (``<base python> -m venv``, no system
site-packages: a Linux distribution's own packages must never be seen) made from QGIS's own
Python or one the user names. Its stamp (``dlt-environment.json`` inside it) records the hash
of the pinned list it was made for, the torch build, the versions and whether the smoke test
passed: ``ready_python`` reads only that, ``inspect`` also runs the smoke test.

``install`` is idempotent: it recreates a half-made venv, lets pip bring the packages to the
pinned list (honouring the user's pip configuration and proxy), runs the smoke test, and
repairs what the test finds (a torch/torchvision pair from two places, a missing module).
Everything pip says goes to the log beside the folder (``location.log_path``).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from .. import __version__
from ..errors import Canceled, InputError
from ..interpreter import installation_python
from . import gpu, location, process, requirements
from .progress import PipProgress

DISK_NEEDED_BYTES = 7 * 1024 ** 3  # CUDA torch with its nvidia-* packages, the rest, pip's temporary files
PIP_MINIMUM = (21, 3)       # older pips lack the resolver the pinned list needs
PIP_WANTED = (24, 1)        # ``--progress-bar raw``: download progress as lines
PYTHON_MINIMUM = (3, 10)    # torch 2.13's oldest Python
SMOKE_TIMEOUT_S = 600
PROBE_TIMEOUT_S = 6
STAMP_FORMAT = 1

Progress = Callable[[float, str], None]
Log = Callable[[str], None]


class EnvironmentInstallError(RuntimeError):
    """The install failed: the message says what and where the log is."""

    def __init__(self, message: str, log_path: Optional[str] = None):
        super().__init__(message + (f" (log: {log_path})" if log_path and log_path not in message else ""))
        self.message = message
        self.log_path = log_path


@dataclass
class InstallOptions:
    device: str = "auto"                  # auto | cpu | cuda
    package_index: Optional[str] = None   # an index URL, or a folder of wheels (disconnected sites)
    reinstall: bool = False               # remove the environment first
    base_python: Optional[str] = None     # the Python the venv is made from; None: QGIS's own
    folder: Optional[str] = None          # None: location.env_dir()
    proxy: Optional[str] = None           # pip --proxy (QGIS's proxy); HTTP(S)_PROXY pass through anyway
    requirements_file: Optional[str] = None  # None: requirements-engine.txt (tests install a small list)


@dataclass
class EnvironmentState:
    folder: str
    python: str
    exists: bool = False
    ready: bool = False
    current: bool = False
    device: Optional[str] = None
    versions: Dict[str, str] = field(default_factory=dict)
    gpu_name: Optional[str] = None
    gpu_memory_mib: Optional[int] = None
    cuda_version: Optional[str] = None
    free_disk_bytes: Optional[int] = None
    problems: List[str] = field(default_factory=list)
    log_path: Optional[str] = None
    variant: Optional[str] = None
    installed_at: Optional[str] = None

    def summary(self) -> str:
        if self.ready:
            torch = self.versions.get("torch")
            what = f"torch {torch}" if torch else "the engine's packages"
            on = f" on {self.device}" if self.device else ""
            card = f" ({self.gpu_name}, {_mib(self.gpu_memory_mib)})" if self.gpu_name else ""
            py = self.versions.get("python")
            return f"Ready: {what}{on}{card}{f', Python {py}' if py else ''}, in {self.folder}."
        first = self.problems[0] if self.problems else "not checked"
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return f"Not ready: {first}{more}"


def _mib(value: Optional[int]) -> str:
    return f"{value / 1024:.1f} GiB" if value else "memory unknown"


# ---- the stamp ---------------------------------------------------------------------------------

def read_stamp(folder: Optional[str] = None) -> dict:
    try:
        with open(location.stamp_path(folder), encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def write_stamp(folder: str, data: dict) -> None:
    path = location.stamp_path(folder)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def ready_python(folder: Optional[str] = None, requirements_file: Optional[str] = None) -> Optional[str]:
    """The environment's Python when its stamp says the smoke test passed for the current
    pinned list, else None. No subprocess: cheap enough for every algorithm run."""
    stamp = read_stamp(folder)
    python = location.env_python(folder)
    if (stamp.get("smoke_ok") is True and stamp.get("hash") == requirements.requirements_hash(requirements_file)
            and os.path.isfile(python)):
        return python
    return None


# ---- the smoke test ----------------------------------------------------------------------------

def _smoke_args(requirements_file: Optional[str], device: str) -> List[str]:
    pinned = requirements.pinned_requirements(requirements_file)
    modules = [requirements.import_name(r) for r in pinned]
    distributions = [requirements.requirement_name(r) for r in pinned]
    return ["-m", "dl_engine.environment.smoke", "--modules", ",".join(modules),
            "--distributions", ",".join(distributions), "--device", device]


def run_smoke(python: str, requirements_file: Optional[str] = None, device: str = "auto",
              log: Optional[Log] = None, is_canceled=None) -> dict:
    """The smoke test's JSON, run in the environment with PYTHONPATH = the plugin folder only."""
    output: List[str] = []
    env = process.child_env(pythonpath=requirements.PLUGIN_ROOT)
    try:
        code = process.run([python] + _smoke_args(requirements_file, device), output.append, env=env,
                           is_canceled=is_canceled, timeout_s=SMOKE_TIMEOUT_S, cwd=requirements.PLUGIN_ROOT)
    except OSError as error:
        return {"ok": False, "problems": [f"the environment's Python does not run ({error})"], "no_python": True}
    for line in output:
        if log:
            log(f"smoke: {line}")
    for line in reversed(output):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    tail = " / ".join(output[-3:])[-400:] or "no output"
    return {"ok": False, "problems": [f"the smoke test ended with status {code} ({tail})"], "no_python": code != 1}


def smoke_problems(result: dict) -> List[str]:
    """The smoke test's findings in a user's words, each with what fixes it."""
    found = []
    for item in result.get("missing") or []:
        if result.get("pair_error") and item["error"] == result["pair_error"]:
            continue  # timm and the like fail on the torch/torchvision pair: said once, below
        found.append(f"{item['module']} is missing or broken in the environment ({item['error']}): "
                     f"Repair reinstalls it")
    if result.get("pair_error"):
        found.append(f"torchvision {result.get('versions', {}).get('torchvision', '?')} does not work with torch "
                     f"{result.get('torch', '?')} ({result['pair_error']}): Repair reinstalls the pair from one index")
    if result.get("torch_error"):
        found.append(f"torch does not import ({result['torch_error']}): Repair reinstalls it")
    if result.get("device_error"):
        found.append(result["device_error"])
    known = bool(found)
    if not known:
        found += [p for p in result.get("problems") or [] if p]
    if not result.get("ok") and not found:
        found.append("the smoke test failed without saying why")
    return found


# ---- inspect, reset, report --------------------------------------------------------------------

def free_disk(folder: str) -> Optional[int]:
    path = folder
    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def inspect(folder: Optional[str] = None, smoke: bool = True,
            requirements_file: Optional[str] = None) -> EnvironmentState:
    """The environment's state; ``smoke`` runs the smoke test in it (seconds: torch imports)."""
    folder = location.resolve(folder)
    python = location.env_python(folder)
    stamp = read_stamp(folder)
    state = EnvironmentState(folder=folder, python=python, exists=os.path.isfile(python),
                             log_path=location.log_path(folder), free_disk_bytes=free_disk(folder),
                             variant=stamp.get("torch_build") or stamp.get("variant"), installed_at=stamp.get("time"),
                             device=stamp.get("device"), versions=dict(stamp.get("versions") or {}),
                             gpu_name=stamp.get("gpu_name"), gpu_memory_mib=stamp.get("gpu_memory_mib"),
                             cuda_version=stamp.get("cuda"))
    state.current = stamp.get("hash") == requirements.requirements_hash(requirements_file)
    problems = state.problems
    if not state.exists:
        problems.append(f"no engine environment in {folder}: install it (Plugins ▸ Deep learning tools ▸ "
                        f"Deep learning environment…, or the Install Deep Learning Frameworks algorithm)")
    elif not stamp:
        problems.append(f"the environment in {folder} was not installed completely (an install was interrupted "
                        f"or failed): Repair installs it again")
    elif stamp.get("installing"):
        problems.append("the last install did not finish (it was interrupted or canceled): Repair finishes it")
    elif not state.current:
        problems.append("the environment was installed for another list of packages (the plugin was upgraded): "
                        "Repair updates it")
    if state.exists and smoke:
        result = run_smoke(python, requirements_file, stamp.get("device") or "auto")
        problems += [p for p in smoke_problems(result) if p not in problems] if not result.get("ok") else []
        _take_smoke(state, result)
    elif state.exists and stamp and not stamp.get("smoke_ok") and not stamp.get("installing"):
        problems += [p for p in stamp.get("problems") or ["the last smoke test failed"] if p not in problems]
    if not state.gpu_name:
        cards = gpu.detect_gpus()
        if cards:
            state.gpu_name, state.gpu_memory_mib = cards[0].name, cards[0].memory_mib
            state.cuda_version = state.cuda_version or cards[0].cuda_version
    state.ready = state.exists and state.current and not problems
    return state


def torch_build(result: dict) -> Optional[str]:
    """The torch build the smoke test found: "cu130", "cu126", "cpu" (None without torch)."""
    if not result.get("torch"):
        return None
    cuda = result.get("cuda")
    return "cu" + "".join(cuda.split(".")[:2]) if cuda else "cpu"


def _take_smoke(state: EnvironmentState, result: dict) -> None:
    state.variant = torch_build(result) or state.variant
    state.versions.update(result.get("versions") or {})
    if result.get("python"):
        state.versions["python"] = result["python"]
    state.device = result.get("device") or state.device
    state.cuda_version = result.get("cuda") or state.cuda_version
    state.gpu_name = result.get("gpu_name") or state.gpu_name
    state.gpu_memory_mib = result.get("gpu_memory_mib") or state.gpu_memory_mib


def reset(folder: Optional[str] = None) -> None:
    """Removes the environment folder, only when it looks like one (our stamp or a
    pyvenv.cfg); the log beside it stays."""
    folder = location.resolve(folder)
    if not os.path.exists(folder):
        return
    if not location.looks_like_environment(folder):
        raise InputError("FOLDER", f"{folder} does not look like an engine environment (no "
                                   f"{location.STAMP_NAME} or pyvenv.cfg in it): it was left alone")
    _remove(folder)


def _remove(folder: str) -> None:
    def retry(func, path, _info):  # read-only files (Windows)
        try:
            os.chmod(path, 0o700)
            func(path)
        except OSError:
            pass
    shutil.rmtree(folder, onerror=retry)
    if os.path.exists(folder):
        raise EnvironmentInstallError(f"could not remove {folder} (a file in it is in use: close QGIS's other "
                                      f"windows or processes using it and try again)")


def report_text(state: EnvironmentState) -> str:
    """The REPORT: what a bug report needs."""
    gib = (lambda b: f"{b / 1024 ** 3:.1f} GiB" if b is not None else "unknown")
    lines = ["Deep learning tools — engine environment",
             f"Ready: {'yes' if state.ready else 'no'}",
             f"Folder: {state.folder}",
             f"Python: {state.python if state.exists else '(none)'}"
             + (f" ({state.versions['python']})" if state.versions.get("python") else ""),
             f"Device: {state.device or 'unknown'}"
             + (f" — torch build {state.variant}" if state.variant else ""),
             f"CUDA: {state.cuda_version or 'none'}" + (" (torch's build; not in use on this device)"
                                                        if state.cuda_version and state.device != "cuda" else ""),
             f"GPU: {state.gpu_name or 'none found'}"
             + (f", {_mib(state.gpu_memory_mib)}" if state.gpu_name else ""),
             f"Free disk: {gib(state.free_disk_bytes)} (an install needs about {gib(DISK_NEEDED_BYTES)})",
             f"Pinned list: {'current' if state.current else 'changed since the install' if state.installed_at else 'not installed'} "
             f"({requirements.REQUIREMENTS_FILE})",
             f"Installed: {state.installed_at or 'never'}",
             f"Plugin engine: {__version__}; platform: {sys.platform}",
             f"Log: {state.log_path}"]
    versions = {k: v for k, v in sorted(state.versions.items()) if k != "python"}
    lines.append("Versions:" + ("" if versions else " (none known)"))
    lines += [f"  {name} {version}" for name, version in versions.items()]
    lines.append("Problems:" + ("" if state.problems else " none"))
    lines += [f"  - {p}" for p in state.problems]
    return "\n".join(lines) + "\n"


# ---- install -----------------------------------------------------------------------------------

class _Log:
    """The install log (appended; beside the folder) and the caller's log callback."""

    def __init__(self, path: str, callback: Optional[Log]):
        self.path, self.callback = path, callback
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        if os.path.isfile(path) and os.path.getsize(path) > 20 * 1024 ** 2:
            os.replace(path, path + ".1")
        self.file = open(path, "a", encoding="utf-8")

    def __call__(self, line: str) -> None:
        if line.startswith("Progress ") and line.split()[1:2] and line.split()[1].isdigit():
            return  # pip's raw download progress: parsed, not kept
        self.file.write(line + "\n")
        self.file.flush()
        if self.callback:
            self.callback(line)

    def close(self):
        self.file.close()


def check_options(options: InstallOptions) -> InstallOptions:
    """The options checked (InputError naming DEVICE, PACKAGE_INDEX or PYTHON)."""
    device = (options.device or "auto").strip().lower()
    if device not in gpu.REQUESTS:
        raise InputError("DEVICE", f"{options.device!r} is not a device for the environment; accepted: auto, cpu "
                                   f"or cuda")
    index = (options.package_index or "").strip() or None
    if index:
        if re.match(r"^(https?|file)://", index, re.I):
            pass
        elif os.path.isdir(os.path.expanduser(index)):
            index = os.path.abspath(os.path.expanduser(index))
            if not any(n.endswith((".whl", ".tar.gz", ".zip")) for n in os.listdir(index)):
                raise InputError("PACKAGE_INDEX", f"{index} holds no wheels (.whl): give a folder of wheels "
                                                  f"(pip download -d <folder> -r requirements-engine.txt) or an "
                                                  f"index URL (https://…/simple)")
        else:
            raise InputError("PACKAGE_INDEX", f"{index!r} is neither an index URL (http://, https:// or file://) "
                                              f"nor an existing folder of wheels")
    base = options.base_python
    if base and not (os.path.isfile(base) and os.access(base, os.X_OK)):
        raise InputError("PYTHON", f"{base} is not a Python interpreter that can be run; give the path of a "
                                   f"python3 (or python.exe) of version {PYTHON_MINIMUM[0]}.{PYTHON_MINIMUM[1]} "
                                   f"or newer")
    if options.requirements_file and not os.path.isfile(options.requirements_file):
        raise InputError("REQUIREMENTS", f"{options.requirements_file} does not exist")
    return InstallOptions(device=device, package_index=index, reinstall=bool(options.reinstall), base_python=base,
                          folder=location.resolve(options.folder), proxy=(options.proxy or "").strip() or None,
                          requirements_file=options.requirements_file)


def _hide_passwords(text: str) -> str:
    """``http://user:secret@proxy:3128`` → ``http://user:***@proxy:3128`` (for the log)."""
    return re.sub(r"(//[^:/@\s]+):[^@/\s]+@", r"\1:***@", text)


def index_reachable(url: str, proxy: Optional[str] = None) -> bool:
    """Whether ``url`` answers at all (any HTTP status counts): an unreachable PyTorch index is
    left out rather than slowing every pip request down with retries."""
    handlers = [urllib.request.ProxyHandler({"http": proxy, "https": proxy})] if proxy else []
    opener = urllib.request.build_opener(*handlers)
    try:
        opener.open(urllib.request.Request(url.rstrip("/") + "/", method="HEAD"), timeout=PROBE_TIMEOUT_S).close()
        return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


class _Installer:
    def __init__(self, options: InstallOptions, progress: Optional[Progress], log: _Log,
                 is_canceled: Optional[Callable[[], bool]]):
        self.options, self.log, self.is_canceled = options, log, is_canceled
        self.progress_cb = progress
        self.folder = options.folder
        self.python = location.env_python(self.folder)
        self.requirements_file = options.requirements_file or requirements.REQUIREMENTS_FILE
        self.percent = 0.0
        self.started = time.monotonic()

    # -- helpers

    def progress(self, percent: float, message: str) -> None:
        self.percent = max(self.percent, percent)
        self.log(f"[{self.percent:5.1f} %] {time.monotonic() - self.started:5.0f} s  {message}")
        if self.progress_cb:
            self.progress_cb(self.percent, message)

    def fail(self, message: str) -> EnvironmentInstallError:
        self.log(f"FAILED: {message}")
        return EnvironmentInstallError(message, self.log.path)

    def run(self, argv: List[str], on_line: Optional[Callable[[str], None]] = None, env=None,
            timeout_s: Optional[float] = None) -> int:
        self.log("$ " + " ".join(_hide_passwords(a) for a in argv))

        def each(line):
            self.log(line)
            if on_line:
                on_line(line)
        try:
            return process.run(argv, each, env=env or process.child_env(), is_canceled=self.is_canceled,
                               timeout_s=timeout_s)
        except OSError as error:
            self.log(f"could not start {argv[0]}: {error}")
            return 127

    def check_canceled(self):
        if self.is_canceled and self.is_canceled():
            raise Canceled("canceled: the install stopped; run it again to finish it")

    # -- steps

    def base_python(self) -> str:
        base = self.options.base_python or installation_python()
        if not base:
            raise self.fail("QGIS's own Python was not found: point the installer to a Python 3 (the base Python "
                            "option, or --python on the command line)")
        out: List[str] = []
        code = self.run([base, "-c", "import sys; print('%d.%d' % sys.version_info[:2]); import venv, ensurepip"],
                        out.append)
        version = next((line for line in out if re.match(r"^\d+\.\d+$", line)), "")
        if version and tuple(int(p) for p in version.split(".")) < PYTHON_MINIMUM:
            raise self.fail(f"{base} is Python {version}; torch {gpu.TORCH_VERSION} needs Python "
                            f"{PYTHON_MINIMUM[0]}.{PYTHON_MINIMUM[1]} or newer: choose another Python")
        if code != 0:
            raise self.fail(self.venv_missing(base, version, out))
        return base

    @staticmethod
    def venv_missing(base: str, version: str, output: List[str]) -> str:
        package = f"python{version}-venv" if version else "python3-venv"
        tail = " / ".join(output[-2:])[-300:]
        return (f"{base} cannot create the environment: Python's venv/ensurepip module is missing ({tail}). "
                f"On Debian or Ubuntu install the package python3-venv (sudo apt install {package}), then run the "
                f"install again; or choose another Python 3")

    def venv_sound(self) -> Optional[str]:
        """None when the folder holds a working venv, else why not."""
        if not os.path.isfile(os.path.join(self.folder, "pyvenv.cfg")):
            return "it has no pyvenv.cfg"
        if not os.path.isfile(self.python):
            return f"{self.python} is missing"
        with open(os.path.join(self.folder, "pyvenv.cfg"), encoding="utf-8", errors="replace") as f:
            if re.search(r"^include-system-site-packages\s*=\s*true", f.read(), re.M | re.I):
                return "it sees the system's site-packages (it must be isolated)"
        self.pip_have = self.pip_version()  # runs its python and pip at once
        if not self.pip_have:
            return "its Python or pip does not run (see the lines above)"
        return None

    def ensure_venv(self, base: str) -> None:
        folder = self.folder
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise self.fail(f"{folder} is a file, not a folder: choose another place for the environment")
        exists = os.path.isdir(folder) and bool(os.listdir(folder))
        if exists and not location.looks_like_environment(folder):
            raise self.fail(f"{folder} is not empty and is not an engine environment: choose an empty or new "
                            f"folder (DLT_ENV_DIR)")
        why = None
        if exists and self.options.reinstall:
            why = "a reinstall was asked for"
        elif exists:
            why = self.venv_sound()
        if exists and why is None:
            self.progress(3, f"Using the environment in {folder}")
            return
        if exists:
            self.log(f"Recreating {folder}: {why}")
            _remove(folder)
        self.progress(1, f"Creating the environment in {folder}")
        os.makedirs(folder, exist_ok=True)
        # marked ours before venv writes anything: a cancel at any point leaves a folder the next run recreates
        write_stamp(folder, {"format": STAMP_FORMAT, "installing": True, "smoke_ok": False})
        out: List[str] = []
        code = self.run([base, "-m", "venv", folder], out.append, timeout_s=600)
        if code != 0 or not os.path.isfile(self.python):
            text = " ".join(out)
            if "ensurepip" in text or "No module named venv" in text:
                raise self.fail(self.venv_missing(base, "", out))
            raise self.fail(f"{base} -m venv {folder} failed (status {code}: {' / '.join(out[-2:])[-300:]})")
        self.progress(3, "Environment created")

    def pip_args(self, build: gpu.TorchBuild, isolated: bool = False) -> List[str]:
        """pip's common options: the package index (PACKAGE_INDEX), the PyTorch index as an extra
        one (when reachable), the proxy."""
        args = ["--disable-pip-version-check", "--no-input"] + (["--isolated"] if isolated else [])
        index = self.options.package_index
        if index and os.path.isdir(index):
            args += ["--no-index", "--find-links", index]
        elif index:
            args += ["--index-url", index]
        if build.index_url and not (index and os.path.isdir(index)):
            if self.torch_index_ok is None:
                self.torch_index_ok = index_reachable(build.index_url, self.options.proxy)
                if not self.torch_index_ok:
                    self.log(f"The PyTorch index {build.index_url} is not reachable: torch comes from "
                             f"{'the package index' if index else 'PyPI'} instead (on Linux its CUDA 13 build, "
                             f"which also runs on the CPU; on Windows a CPU build)")
            if self.torch_index_ok:
                args += ["--extra-index-url", build.index_url]
        if self.options.proxy:
            args += ["--proxy", self.options.proxy]
        return args

    torch_index_ok: Optional[bool] = None

    pip_have: tuple = ()

    def pip_version(self) -> tuple:
        """(major, minor) of the environment's pip; () when its python or pip does not run."""
        out: List[str] = []
        code = self.run([self.python, "-m", "pip", "--version"], out.append, timeout_s=120)
        m = re.search(r"pip (\d+)\.(\d+)", " ".join(out))
        return (int(m.group(1)), int(m.group(2))) if m and code == 0 else ()

    def upgrade_pip(self, build: gpu.TorchBuild) -> bool:
        """pip upgraded only when older than PIP_WANTED; True when ``--progress-bar raw`` works."""
        have = self.pip_have or self.pip_version()
        if have and have >= PIP_WANTED:
            return True
        self.progress(4, f"Upgrading pip {'.'.join(map(str, have)) or '?'} in the environment")
        code = self.run([self.python, "-m", "pip", "install", "--upgrade", "pip"] + self.pip_args(build))
        have = self.pip_version()
        if code != 0 and (not have or have < PIP_MINIMUM):
            raise self.fail(f"pip in the environment is too old ({'.'.join(map(str, have)) or 'unknown'}) and "
                            f"could not be upgraded")
        return bool(have) and have >= PIP_WANTED

    def pip_install(self, args: List[str], start: float, end: float, what: str, expected: int) -> None:
        tracker = PipProgress(start, end, expected)
        self.progress(start, what)

        def on_line(line):
            news = tracker.feed(line)
            if news and self.progress_cb:
                self.percent = max(self.percent, news[0])
                self.progress_cb(self.percent, news[1])
        code = self.run([self.python, "-m", "pip", "install"] + args, on_line)
        self.check_canceled()
        if code != 0:
            raise self.fail(f"pip could not install the engine's packages ({what}; status {code}). The log's last "
                            f"lines say why: no network or proxy (set the proxy, or use PACKAGE_INDEX with a folder "
                            f"of wheels), a full disk, or a package missing from the index")

    def uninstall_pair(self, why: str) -> None:
        self.log(f"Removing torch and torchvision: {why}")
        self.run([self.python, "-m", "pip", "uninstall", "-y", "--disable-pip-version-check", *requirements.TORCH_PAIR])

    def smoke(self, device: str, percent: float) -> dict:
        pair = requirements.torch_pair(requirements.pinned_requirements(self.options.requirements_file))
        self.progress(percent, "Checking the environment" + (" (torch, torchvision, a convolution on the device)"
                                                             if pair else " (its packages import)"))
        result = run_smoke(self.python, self.options.requirements_file, device, self.log, self.is_canceled)
        self.log("smoke test: " + ("passed" if result.get("ok") else "; ".join(smoke_problems(result))))
        return result

    # -- the whole

    def install(self, build: gpu.TorchBuild) -> EnvironmentState:
        options = self.options
        self.log(f"==== {datetime.datetime.now().isoformat(timespec='seconds')} install (engine {__version__}, "
                 f"{sys.platform}) into {self.folder}; device={options.device}, package_index={options.package_index}, "
                 f"reinstall={options.reinstall}, proxy={'yes' if options.proxy else 'no'}, "
                 f"requirements={self.requirements_file}")
        self.log(f"torch build: {build.variant} for {build.device}: {build.reason}; "
                 f"index {build.index_url or 'the default (PyPI or the user configuration)'}")
        free = free_disk(self.folder)
        if free is not None and free < DISK_NEEDED_BYTES:
            self.log(f"warning: {free / 1024 ** 3:.1f} GiB free where the environment goes; an install needs about "
                     f"{DISK_NEEDED_BYTES / 1024 ** 3:.0f} GiB")
        old = read_stamp(self.folder)
        base = self.base_python()
        self.check_canceled()
        self.ensure_venv(base)
        if not read_stamp(self.folder):
            old = {}  # a recreated venv has no packages left
        wanted_hash = requirements.requirements_hash(self.options.requirements_file)
        write_stamp(self.folder, {"format": STAMP_FORMAT, "installing": True, "hash": None,
                                  "variant": build.variant, "smoke_ok": False,
                                  "time": datetime.datetime.now().isoformat(timespec="seconds")})
        self.check_canceled()
        raw = self.upgrade_pip(build)
        pinned = requirements.pinned_requirements(self.options.requirements_file)
        pair = requirements.torch_pair(pinned)
        if pair and old.get("variant") and old.get("variant") != build.variant:
            self.uninstall_pair(f"the environment had the {old.get('variant')} build, {build.variant} is wanted")
        common = self.pip_args(build) + (["--progress-bar", "raw"] if raw else [])
        expected = 4 * len(pinned) if pair else 2 * len(pinned)
        self.pip_install(common + ["-r", self.requirements_file], 6, 80, "Installing the engine's packages", expected)
        result = self.smoke(build.device, 82)
        cpu_torch_for_gpu = build.device == "cuda" and result.get("torch") and not result.get("cuda")
        if not result.get("ok") and pair and (result.get("pair_error") or result.get("torch_error")
                                              or cpu_torch_for_gpu):
            # pip's configuration (a find-links folder, a mirror) gave a torch that the index's
            # torchvision was not built for, or a CPU-only one for a GPU: take both from the
            # index, the configuration ignored.
            why = result.get("pair_error") or result.get("torch_error") or \
                f"torch {result.get('torch')} is a CPU-only build and a CUDA build was chosen"
            self.log(f"torch and torchvision do not fit ({why}): reinstalling the pair from one index with pip's "
                     f"configuration ignored (--isolated)")
            self.uninstall_pair("the pair does not match")
            isolated = self.pip_args(build, isolated=True) + (["--progress-bar", "raw"] if raw else [])
            self.pip_install(isolated + ["-r", self.requirements_file], 84, 93,
                             "Reinstalling torch and torchvision as a matching pair", 2 * len(pair) + 8)
            result = self.smoke(build.device, 94)
        missing = [m["module"] for m in result.get("missing") or []]
        if not result.get("ok") and missing:
            lines = [r for r in pinned if requirements.import_name(r) in missing]
            self.log(f"reinstalling what does not import: {', '.join(missing)}")
            self.pip_install(self.pip_args(build) + ["--force-reinstall", "--no-deps"] + lines, 94, 96,
                             f"Reinstalling {', '.join(missing)}", len(lines))
            result = self.smoke(build.device, 97)
        problems = smoke_problems(result) if not result.get("ok") else []
        versions = dict(result.get("versions") or {})
        if result.get("python"):
            versions["python"] = result["python"]
        write_stamp(self.folder, {
            "format": STAMP_FORMAT, "hash": wanted_hash, "device": result.get("device") or build.device,
            "variant": build.variant, "torch_build": torch_build(result), "index_url": build.index_url if self.torch_index_ok else None,
            "build_reason": build.reason, "versions": versions, "smoke_ok": bool(result.get("ok")),
            "problems": problems, "cuda": result.get("cuda"), "gpu_name": result.get("gpu_name"),
            "gpu_memory_mib": result.get("gpu_memory_mib"), "base_python": base,
            "requirements_file": self.requirements_file, "engine_version": __version__,
            "time": datetime.datetime.now().isoformat(timespec="seconds")})
        if problems:
            raise self.fail("the environment was installed but its check failed: " + "; ".join(problems))
        if build.device == "cuda" and result.get("device") != "cuda":
            self.log(f"warning: a CUDA build was chosen ({build.reason}) but torch runs on {result.get('device')}")
        what = f"torch {versions['torch']}" if versions.get("torch") else "the packages"
        self.progress(100, f"Ready: {what} on {result.get('device') or build.device}")
        return inspect(self.folder, smoke=False, requirements_file=self.options.requirements_file)


def install(options: InstallOptions, progress: Optional[Progress] = None, log: Optional[Log] = None,
            is_canceled: Optional[Callable[[], bool]] = None) -> EnvironmentState:
    """Creates or repairs the environment (see the module's text); its state when ready.
    Bad options: InputError; a failure: EnvironmentInstallError; a cancel: Canceled."""
    options = check_options(options)
    build = gpu.choose_build(options.device)  # a DEVICE the machine cannot serve fails before anything is made
    logger = _Log(location.log_path(options.folder), log)
    lock = _Lock(options.folder + ".lock")
    try:
        lock.take()
        started = time.monotonic()
        state = _Installer(options, progress, logger, is_canceled).install(build)
        logger(f"==== done in {time.monotonic() - started:.0f} s")
        return state
    except Canceled:
        logger("==== canceled")
        raise
    except EnvironmentInstallError:
        raise
    except InputError:
        raise
    except Exception as error:  # a bug or an OS error: said in a sentence, the traceback in the log
        import traceback
        logger(traceback.format_exc())
        raise EnvironmentInstallError(f"the install stopped on an unexpected error: {type(error).__name__}: {error}",
                                      logger.path) from error
    finally:
        lock.release()
        logger.close()


_HELD: set = set()  # the locks this process holds (the dialog's task and the algorithm share a pid)


class _Lock:
    """One install at a time per folder (the dialog and the algorithm could both start one)."""

    def __init__(self, path: str):
        self.path, self.held = path, False

    def take(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if self._stale():
                    os.remove(self.path)
                    continue
                raise EnvironmentInstallError(f"another install into {os.path.splitext(self.path)[0]} is running "
                                              f"(lock {self.path}); wait for it or remove the lock if it is not")
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            self.held = True
            _HELD.add(self.path)
            return

    def _stale(self) -> bool:
        try:
            with open(self.path) as f:
                pid = int(f.read().strip() or 0)
        except (OSError, ValueError):
            return True
        if pid == os.getpid():
            return self.path not in _HELD
        if time.time() - os.path.getmtime(self.path) > 6 * 3600:
            return True
        if sys.platform == "win32":
            return False
        try:
            os.kill(pid, 0)
            return False
        except ProcessLookupError:
            return True
        except PermissionError:
            return False

    def release(self) -> None:
        if self.held:
            _HELD.discard(self.path)
            try:
                os.remove(self.path)
            except OSError:
                pass
            self.held = False
