"""Inputs a hostile user or a failing machine hands the tools: small rasters, hostile model
packages (zip bombs, escaping members, links, pickled code, odd .emd values) and the checks a
user would make afterwards (no staging left, nothing extracted, the parameter named)."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, Iterable, Optional, Union

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

CRS_UTM = CRS.from_epsg(32617)
ORIGIN = (500000.0, 3320000.0)
PIXEL = 0.5

# An emd of this engine's shape (what the reader checks before weights are loaded).
EMD = {"Framework": "PyTorch", "ModelName": "TestUnetClassifier", "ModelFile": "m.pth", "ImageHeight": 32,
       "ImageWidth": 32, "ExtractBands": [0, 1, 2], "Classes": [{"Value": 1, "Name": "a", "Color": [1, 2, 3]}],
       "ModelParameters": {"backbone": "resnet34", "backend": "pytorch"},
       "Engine": {"name": "deeplearningtools", "model_type": "UNET"}}

Member = Union[bytes, tuple]  # bytes, or (ZipInfo, bytes)


def raster(path, width: int = 40, height: int = 40, bands: int = 3, dtype: str = "uint8", crs=CRS_UTM,
           seed: int = 0) -> str:
    """A georeferenced (or, with crs=None, CRS-less) random raster."""
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "ui" else None
    high = min(info.max, 250) if info else 1.0
    data = (rng.random((bands, height, width)) * high + (1 if info else 0)).astype(dtype)
    profile = dict(driver="GTiff", width=width, height=height, count=bands, dtype=dtype,
                   transform=Affine(PIXEL, 0, ORIGIN[0], 0, -PIXEL, ORIGIN[1]))
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return str(path)


def box_in_pixels(col0: float, row0: float, col1: float, row1: float):
    """A shapely box in map coordinates from pixel columns/rows of ``raster``."""
    import shapely

    return shapely.box(ORIGIN[0] + col0 * PIXEL, ORIGIN[1] - row1 * PIXEL, ORIGIN[0] + col1 * PIXEL,
                       ORIGIN[1] - row0 * PIXEL)


def make_zip(path, members: Dict[str, Member], emd: Optional[dict] = EMD, compression=zipfile.ZIP_DEFLATED) -> str:
    """A zip at ``path``; the emd is added as m.emd unless ``emd`` is None."""
    with zipfile.ZipFile(path, "w", compression) as zf:
        if emd is not None:
            zf.writestr("m.emd", json.dumps(emd))
        for name, data in members.items():
            if isinstance(data, tuple):
                zf.writestr(data[0], data[1])
            else:
                zf.writestr(name, data)
    return str(path)


def weights_bytes(obj=None) -> bytes:
    """A torch.save'd state dict (or ``obj``) as bytes."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj if obj is not None else {"w": torch.arange(4.0)}, buffer)
    return buffer.getvalue()


class Payload:
    """Unpickling this creates ``marker``: what a malicious .pth does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def temp_entries(prefix: str) -> set:
    """Entries of the temporary folder whose names start with ``prefix`` (what a reader extracts to)."""
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith(prefix)}


def staging_left(folder) -> list:
    """Hidden staging folders (``.<name>.partial-*``) anywhere under ``folder``."""
    found = []
    for root, dirs, files in os.walk(folder):
        found += [os.path.join(root, n) for n in dirs + files if ".partial-" in n]
    return found


def tree_size(folder: Union[str, Path]) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _d, fs in os.walk(folder) for f in fs)


def names(paths: Iterable) -> list:
    return sorted(os.path.basename(str(p)) for p in paths)
