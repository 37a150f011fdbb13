"""A stand-in for ``dl_engine.environment.manager`` (the contract in its docstring and the brief env-api.md):
the desktop tests drive the environment dialog and its tasks through every state without installing
anything. ``test_environment_dialog.py`` checks that its names match the real module's."""

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional

from dl_engine.errors import Canceled, InputError

GIB = 1024 ** 3


@dataclass
class InstallOptions:
    device: str = "auto"
    package_index: Optional[str] = None
    reinstall: bool = False
    base_python: Optional[str] = None
    folder: Optional[str] = None
    proxy: Optional[str] = None


@dataclass
class EnvironmentState:
    folder: str
    python: str
    exists: bool
    ready: bool
    current: bool
    device: str = ""
    versions: Dict[str, str] = field(default_factory=dict)
    gpu_name: Optional[str] = None
    gpu_memory_mib: Optional[int] = None
    cuda_version: Optional[str] = None
    free_disk_bytes: Optional[int] = None
    problems: List[str] = field(default_factory=list)
    log_path: Optional[str] = None

    def summary(self) -> str:
        return f"{'ready' if self.ready else 'not ready'} on {self.device or 'no device'}"


class EnvironmentInstallError(Exception):
    def __init__(self, message: str, log_path: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.log_path = log_path


def not_installed(folder: str) -> EnvironmentState:
    return EnvironmentState(folder=folder, python=f"{folder}/bin/python3", exists=False, ready=False,
                            current=False, free_disk_bytes=100 * GIB,
                            problems=["The environment is not installed."])


def ready_with_gpu(folder: str) -> EnvironmentState:
    return EnvironmentState(
        folder=folder, python=f"{folder}/bin/python3", exists=True, ready=True, current=True, device="cuda",
        versions={"python": "3.11.2", "torch": "2.13.0+cu128", "torchvision": "0.28.0", "timm": "1.0.15"},
        gpu_name="NVIDIA RTX A4000", gpu_memory_mib=16376, cuda_version="12.8", free_disk_bytes=80 * GIB,
        log_path=f"{folder}/install.log")


def broken(folder: str) -> EnvironmentState:
    return replace(ready_with_gpu(folder), ready=False, device="",
                   problems=["torchvision cannot be imported: No module named 'torchvision'"])


def needs_upgrade(folder: str) -> EnvironmentState:
    return replace(ready_with_gpu(folder), current=False,
                   problems=["The plugin's pinned packages changed since the installation."])


def unfinished(folder: str) -> EnvironmentState:
    """An installation that was interrupted: its stamp has no hash yet."""
    return replace(ready_with_gpu(folder), ready=False, current=False, device="", versions={},
                   problems=["The last install did not finish: Repair finishes it."])


class StandInManager:
    """The manager's names, recording how it was called. ``install`` reports progress and a log line, then
    waits for ``release`` (or a cancel) before it returns the ready state or raises ``install_error``."""

    InstallOptions = InstallOptions
    EnvironmentState = EnvironmentState
    EnvironmentInstallError = EnvironmentInstallError
    DISK_NEEDED_BYTES = 7 * GIB

    def __init__(self, state: EnvironmentState):
        self.state = state
        self.folder = state.folder
        self.inspected: List[bool] = []  # smoke flags
        self.installed: List[InstallOptions] = []
        self.resets: List[Optional[str]] = []
        self.release = threading.Event()
        self.started = threading.Event()
        self.install_error: Optional[Exception] = None

    def read_stamp(self, folder=None):
        """The stamp's hash: the pinned list's of a finished installation (another one when it needs an
        upgrade), none while an installation has not finished."""
        if not self.state.exists:
            return {}
        if not self.state.current and not self.state.versions:
            return {"installing": True, "hash": None}
        return {"hash": "pinned" if self.state.current else "an older list"}

    def ready_python(self, folder=None):
        return self.state.python if self.state.ready and self.state.current else None

    def inspect(self, folder=None, smoke=True):
        self.inspected.append(smoke)
        return self.state

    def install(self, options, progress=None, log=None, is_canceled=None):
        self.installed.append(options)
        if options.device not in ("auto", "cpu", "cuda"):
            raise InputError("DEVICE", f"{options.device!r} is not a device; use auto, cpu or cuda")
        progress(40.0, "Installing torch")
        log("pip install torch==2.13.0")
        self.started.set()
        deadline = time.monotonic() + 30
        while not self.release.is_set() and time.monotonic() < deadline:
            if is_canceled():
                raise Canceled("Installation canceled")
            time.sleep(0.02)
        if self.install_error is not None:
            raise self.install_error
        self.state = ready_with_gpu(self.folder)
        return self.state

    def reset(self, folder=None):
        self.resets.append(folder)
        self.state = not_installed(self.folder)

    def report_text(self, state):
        return f"Deep learning environment report\nfolder: {state.folder}\ndevice: {state.device}\n"
