"""The interpreter of the running Python installation, to start worker processes with.

Only one of this installation will do (its compiled modules must match): inside QGIS and
qgis_process ``sys.executable`` is QGIS itself, or whatever ``python3`` is first on PATH,
so the interpreter is looked for in the installation's own folders. Standard library
only: the QGIS process imports this before torch or rasterio are known to be there.
"""

from __future__ import annotations

import os
import sys
from typing import Optional


def installation_python() -> Optional[str]:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    folders = [os.path.join(p, "bin") for p in (sys.prefix, sys.exec_prefix)] + [sys.prefix, sys.exec_prefix]
    exe = sys.executable or ""
    if os.path.basename(exe).lower().startswith("python") and os.path.dirname(exe) in folders:
        return exe
    for folder in folders:
        for name in (f"python{version}", "python3", "python.exe", "python3.exe"):
            candidate = os.path.join(folder, name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
    return None
