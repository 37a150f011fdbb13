"""The resumable checkpoint of a run, written at the end of every epoch into
``<OUT_FOLDER>/checkpoint/`` and removed when the run finishes. It holds only tensors and
plain values, so it loads with ``torch.load(..., weights_only=True)``. A run resumes
(ARGUMENTS ``resume true``) only from a checkpoint of the same model, backbone and data."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Dict, Optional

import torch

FOLDER = "checkpoint"


def path_for(out_folder: str) -> str:
    return os.path.join(out_folder, FOLDER, "last.pt")


def fingerprint(**items: Any) -> str:
    return json.dumps(items, sort_keys=True, default=str)


def save(path: str, state: Dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill during the write leaves the previous checkpoint intact


def load(path: str) -> Optional[Dict[str, Any]]:
    if not os.path.isfile(path):
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def remove(out_folder: str) -> None:
    shutil.rmtree(os.path.join(out_folder, FOLDER), ignore_errors=True)


def cpu_state(module: torch.nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
