"""The ArcGIS side of our packages: ``predict_tile`` is what the Python raster function a
package carries (package/inference_function.py) calls for every pixel block Pro hands it.

Pro reads ``ExtractBands`` itself, so ``pixels`` holds only those bands, with ``padding``
pixels of context on each side; the block to return is ``shape`` (the input without its
padding). The model is loaded once per emd (and reloaded if the file changes) and runs
through the same Predictor as the Classify Pixels tool: same normalisation, same class
values (index i -> Classes[i-1].Value, 0 = background).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from .job import TORCH_TYPES

_CACHE: Dict[Tuple[str, str, float], Any] = {}
_LOCK = threading.Lock()


def predict_tile(emd: Union[str, Mapping[str, Any]], pixels: np.ndarray, *, mask: Optional[np.ndarray] = None,
                 shape=None, padding: int = 0, parameters: Optional[Mapping[str, Any]] = None) -> np.ndarray:
    """Class values (1, h, w) of one pixel block (bands, H, W). ``emd``: the .emd path, or the
    emd dict with its path under ``_emd_path`` (as the raster function passes it)."""
    params = dict(parameters or {})
    path = emd if isinstance(emd, (str, os.PathLike)) else (emd or {}).get("_emd_path")
    if not path:
        raise ValueError("predict_tile needs the path of the .emd (ModelFile is found relative to it)")
    predictor, lut = _load(os.fspath(path), str(params.get("device", "auto")))
    x = np.asarray(pixels)
    if x.ndim == 2:
        x = x[None]
    bands = len(predictor.model.normalization.extract_bands)
    if x.shape[0] != bands:
        raise ValueError(f"the model takes {bands} band(s) (ExtractBands); the pixel block has {x.shape[0]}")
    if x.dtype.name not in TORCH_TYPES:
        x = x.astype(np.float32)
    index = predictor.classify_pixels(x[None], _bool(params.get("predict_background", True)),
                                      _bool(params.get("test_time_augmentation", False)))[0]
    values = lut[index]
    if mask is not None:
        m = np.asarray(mask)
        valid = m.astype(bool).any(0) if m.ndim == 3 else m.astype(bool)
        values[~valid] = 0
    H, W = values.shape
    if shape is not None:
        h, w = (int(v) for v in tuple(shape)[-2:])
    else:
        p = int(padding or 0)
        h, w = H - 2 * p, W - 2 * p
    top, left = max(0, (H - h) // 2), max(0, (W - w) // 2)
    return values[top:top + h, left:left + w][None]


def _load(path: str, device: str):
    from ..runtime import choose_runtime
    from .model import load_model
    from .predictor import Predictor
    from .writer import class_table

    path = os.path.abspath(path)
    key = (path, device, os.path.getmtime(path))
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is None:
            model = load_model(path, "classify_pixels")
            predictor = Predictor(model, choose_runtime(device, "auto"), extracted=True)
            table = class_table(model.classes)
            hit = (predictor, table.lut.astype(table.dtype))
            for old in [k for k in _CACHE if k[0] == path]:
                del _CACHE[old]
            _CACHE[key] = hit
        return hit


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "y", "t")
    return bool(value)
