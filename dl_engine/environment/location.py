"""Where the engine environment lives: a per-user data folder (it survives plugin upgrades
and is shared by every QGIS profile of the user), ``DLT_ENV_DIR`` overriding it.

The install log sits next to the folder, not inside it, so a failed install or a Reset keeps it.
"""

from __future__ import annotations

import os
import sys
from typing import Optional

ENV_DIR_VAR = "DLT_ENV_DIR"
APP_FOLDER = "deep_learning_tools"
ENV_FOLDER = "engine-env"
STAMP_NAME = "dlt-environment.json"


def user_data_dir() -> str:
    """The platform's per-user data folder (what platformdirs calls user_data_dir)."""
    home = os.path.expanduser("~")
    if sys.platform == "win32":
        return os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Application Support")
    xdg = os.environ.get("XDG_DATA_HOME", "")
    return xdg if os.path.isabs(xdg) else os.path.join(home, ".local", "share")


def default_env_dir() -> str:
    return os.path.join(user_data_dir(), APP_FOLDER, ENV_FOLDER)


def env_dir() -> str:
    """DLT_ENV_DIR (``~`` and variables expanded, made absolute) or the per-user default."""
    chosen = os.environ.get(ENV_DIR_VAR, "").strip()
    if chosen:
        return os.path.abspath(os.path.expandvars(os.path.expanduser(chosen)))
    return default_env_dir()


def resolve(folder: Optional[str] = None) -> str:
    """``folder`` made absolute, or env_dir() when it is not given."""
    return os.path.abspath(os.path.expanduser(folder)) if folder else env_dir()


def env_python(folder: Optional[str] = None) -> str:
    folder = resolve(folder)
    if sys.platform == "win32":
        return os.path.join(folder, "Scripts", "python.exe")
    return os.path.join(folder, "bin", "python3")


def stamp_path(folder: Optional[str] = None) -> str:
    """The JSON record of the last install (hash, device, versions, smoke result)."""
    return os.path.join(resolve(folder), STAMP_NAME)


def log_path(folder: Optional[str] = None) -> str:
    """``<folder>-install.log`` beside the environment folder."""
    folder = resolve(folder).rstrip("/\\")
    return folder + "-install.log"


def looks_like_environment(folder: str) -> bool:
    """Ours, or at least a virtual environment: it has our stamp or a pyvenv.cfg (Reset and
    reinstall delete only such a folder)."""
    return os.path.isfile(os.path.join(folder, STAMP_NAME)) or os.path.isfile(os.path.join(folder, "pyvenv.cfg"))
