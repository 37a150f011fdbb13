"""Where pretrained backbone weights live on this machine.

One folder the user can see and change: ``DLT_WEIGHTS_DIR`` (the plugin passes its setting to
the worker through it), else the hubs' own caches (Hugging Face's for timm weights, torch hub's
``checkpoints`` for torchvision's). Weights a user imports (Import Pretrained Weights: a file,
a cache folder or a wheel, for disconnected sites) are written to ``imported/`` in the weights
folder as ``<timm model name>.safetensors``, where the trainer looks first.

Standard library only.
"""

from __future__ import annotations

import os
from typing import Optional

WEIGHTS_DIR_ENV = "DLT_WEIGHTS_DIR"
IMPORTED = "imported"


def weights_dir() -> Optional[str]:
    """The folder the user chose for weights, or None for the hubs' own caches."""
    value = os.environ.get(WEIGHTS_DIR_ENV, "").strip()
    return os.path.abspath(os.path.expanduser(value)) if value else None


def imported_dir() -> str:
    """Where imported weights go: ``<weights folder>/imported``; without a chosen folder, the
    same place under torch hub's directory (``$TORCH_HOME/dlt-imported``, ~/.cache/torch)."""
    base = weights_dir()
    if base:
        return os.path.join(base, IMPORTED)
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "torch")
    return os.path.join(torch_home, "dlt-imported")


def imported_weights_path(timm_name: str) -> str:
    """The file Import Pretrained Weights writes for a timm model (tag included when given)."""
    return os.path.join(imported_dir(), timm_name.replace("/", "_") + ".safetensors")
