"""Open a trained model (.dlpk or .emd) safely (ARCHITECTURE.md, Security).

- A .dlpk is checked before anything is read from it (``archive``: names, links, member count,
  total size, compression ratios) and must hold exactly one .emd at its root (as arcgis.learn
  requires). Nothing is extracted but the weights file, and only when they are loaded: the
  .emd is read straight from the zip. Errors name the user's .dlpk, never a temporary path.
- Weights are read with ``torch.load(weights_only=True)``: a pickled object is refused, not
  run. No Python file of a package is ever imported or run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import zipfile
from typing import Any, Dict, List, Optional

from ..errors import InputError
from ..memory_budget import check_fits
from .archive import MAX_TEXT_BYTES, CheckedZip, member_parts, refuse

PARAMETER = "PRETRAINED_MODEL"
TILE_BYTES_PER_BAND_PIXEL = 4  # float32: the least a tile costs as the network's input


class ModelPackage:
    """A model definition and its weights. Use as a context manager (or call ``close``) to
    remove the temporary folder a .dlpk's weights are extracted to."""

    def __init__(self, path: str, emd_path: str, emd: Dict[str, Any], parameter: str,
                 temp_dir: Optional[str] = None, archive: Optional[CheckedZip] = None):
        self.path = path  # what was given: the .dlpk or the .emd
        self.emd_path = emd_path
        self.emd = emd
        self.parameter = parameter
        self._temp_dir = temp_dir
        self._archive = archive  # a .dlpk, checked; members are read from it on demand

    # ---- what the emd says ----------------------------------------------------------------------

    @property
    def folder(self) -> str:
        return os.path.dirname(self.emd_path)

    @property
    def engine(self) -> Dict[str, Any]:
        e = self.emd.get("Engine")
        return e if isinstance(e, dict) else {}

    @property
    def is_ours(self) -> bool:
        """Written by this engine (else e.g. arcgis.learn's own networks, whose weights differ)."""
        return self.engine.get("name") == "deeplearningtools"

    @property
    def model_name(self) -> str:
        return str(self.emd.get("ModelName") or "")

    @property
    def model_type(self) -> Optional[str]:
        """The MODEL_TYPE keyword ("UNET"): ours from Engine, else from ModelName via the registry."""
        if self.engine.get("model_type"):
            return str(self.engine["model_type"])
        from ..models.registry import spec_for_model_name

        spec = spec_for_model_name(self.model_name)
        return spec.keyword if spec is not None else None

    @property
    def backbone(self) -> Optional[str]:
        params = self.emd.get("ModelParameters")
        value = params.get("backbone") if isinstance(params, dict) else None
        return value or self.emd.get("backbone")  # SSD writes it at the top level

    @property
    def backbone_keyword(self) -> Optional[str]:
        return self.engine.get("backbone_keyword") or self.backbone

    @property
    def arguments(self) -> Dict[str, Any]:
        args = self.engine.get("arguments")
        return dict(args) if isinstance(args, dict) else {}

    @property
    def extract_bands(self) -> List[Any]:
        bands = self.emd.get("ExtractBands")
        return list(bands) if isinstance(bands, list) else [0, 1, 2]

    @property
    def num_bands(self) -> int:
        return len(self.extract_bands)

    @property
    def classes(self) -> List[Dict[str, Any]]:
        return [c for c in self.emd.get("Classes") or [] if isinstance(c, dict)]

    @property
    def chip_size(self) -> Optional[int]:
        """ImageHeight (the model's tile size in pixels); None when the emd gives none. A value that
        is not a whole number, or a tile that would not fit in memory, is an InputError."""
        if self.emd.get("ImageHeight") in (None, ""):
            return None
        height = self._tile_side("ImageHeight")
        width = self._tile_side("ImageWidth") if self.emd.get("ImageWidth") not in (None, "") else height
        bands = max(self.num_bands, 1)
        what = f"one {bands}-band tile and its output as 32-bit floats"
        per_pixel = TILE_BYTES_PER_BAND_PIXEL * (bands + 1)
        if height == width:  # the usual square tile: the largest square that fits
            check_fits(self.parameter, height, lambda v: v * v * per_pixel, what,
                       shown=f"{self.path}: ImageHeight {height} (and ImageWidth {width})")
        for key, value, other in (("ImageHeight", height, width), ("ImageWidth", width, height)):
            check_fits(self.parameter, value, lambda v, o=other: v * o * per_pixel, what,
                       shown=f"{self.path}: {key} {value} (with {'ImageWidth' if key == 'ImageHeight' else 'ImageHeight'}"
                             f" {other})")
        return height

    def _tile_side(self, key: str) -> int:
        value = self.emd.get(key)
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise InputError(self.parameter, f"{self.path}: {key} {value!r} is not a number; the emd must give "
                                                 f"the model's tile size in pixels (e.g. 256)") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
                or not float(value).is_integer() or value < 1:
            raise InputError(self.parameter, f"{self.path}: {key} {value!r} is not a tile size; the emd must give "
                                             f"a whole number of pixels of at least 1 (e.g. 256)")
        return int(value)

    @property
    def normalization_stats(self) -> Optional[Dict[str, List[float]]]:
        stats = self.emd.get("NormalizationStats")
        return stats if isinstance(stats, dict) else None

    @property
    def is_multispectral(self) -> bool:
        return bool(self.emd.get("IsMultispectral"))

    @property
    def model_file(self) -> str:
        """The weights file: ``ModelFile`` relative to the emd (for a .dlpk, where it is extracted to)."""
        rel = self._model_file_name()
        path = os.path.normpath(os.path.join(self.folder, *re.split(r"[\\/]+", rel)))
        if self._temp_dir is not None and not _inside(path, self._temp_dir):
            raise InputError(self.parameter, f"{self.path}: ModelFile {rel!r} points outside the package")
        return path

    def _model_file_name(self) -> str:
        rel = self.emd.get("ModelFile")
        if not isinstance(rel, str) or not rel.strip():
            raise InputError(self.parameter, f"{self.shown(self.emd_path)} names no ModelFile")
        return rel.strip()

    def shown(self, path: str) -> str:
        """How a file of the package is named to the user: a .dlpk's member as '<dlpk> (its <member>)'."""
        if self._temp_dir is not None and _inside(path, self._temp_dir):
            return f"{self.path} (its {os.path.relpath(path, self._temp_dir).replace(os.sep, '/')})"
        return path

    # ---- weights -------------------------------------------------------------------------------

    def load_state_dict(self) -> Dict[str, Any]:
        """The weights as name → tensor on the CPU. Anything but plain tensors is refused."""
        import pickle

        import torch

        path = self._weights_on_disk()
        shown = self.shown(path)
        if not os.path.isfile(path):
            raise InputError(self.parameter, f"the weights file {shown} named by {self.shown(self.emd_path)} "
                                             f"does not exist")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            detail = _unpickler_detail(e).replace(path, shown)
            if "global" in detail.lower():  # a class or function reference: what runs code when unpickled
                raise InputError(self.parameter, f"{shown} holds Python objects besides weights; it is refused "
                                                f"because loading them could run code ({detail})") from None
            raise InputError(self.parameter, f"{shown} cannot be read as PyTorch weights: {detail}") from None
        except MemoryError:
            raise InputError(self.parameter, f"{shown} does not fit in memory "
                                             f"({_human(os.path.getsize(path))} of weights)") from None
        except Exception as e:  # a damaged or foreign file: torch raises RuntimeError and others
            raise InputError(self.parameter, f"{shown} cannot be read as PyTorch weights: "
                                             f"{_first_line(e).replace(path, shown)}") from None
        if isinstance(data, dict) and isinstance(data.get("model"), dict) and "opt" in data:
            data = data["model"]  # fastai's Learner.save(with_opt=True)
        if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
            raise InputError(self.parameter, f"{shown} does not hold a state dict (a mapping of names to tensors)")
        return data

    def _weights_on_disk(self) -> str:
        """The weights file's path; a .dlpk's weights member is extracted (alone) on first use."""
        path = self.model_file
        if self._archive is None or os.path.exists(path):
            return path
        info = self._archive.find(_parts(os.path.relpath(path, self._temp_dir)))
        if info is None:
            return path  # reported as missing by the caller
        os.makedirs(os.path.dirname(path), exist_ok=True)
        extracted = self._archive.extract_member(info, os.path.dirname(path))
        if extracted != path:
            os.replace(extracted, path)
        return path

    # ---- life cycle ----------------------------------------------------------------------------

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()
            self._archive = None
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def __enter__(self) -> "ModelPackage":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):  # a forgotten close() should not leave the extracted weights behind
        try:
            self.close()
        except Exception:
            pass


def open_package(path, parameter: str = PARAMETER) -> ModelPackage:
    """Open a .dlpk (checked; its .emd read from the zip) or an .emd."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise InputError(parameter, f"{path} does not exist or is not a file; give a .emd or .dlpk")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".emd":
        return ModelPackage(path, path, _read_emd(path, parameter), parameter)
    if ext != ".dlpk" and not zipfile.is_zipfile(path):
        raise InputError(parameter, f"{path} is neither a .emd nor a .dlpk")
    archive = CheckedZip(path, parameter)
    temp_dir = None
    try:
        emd_name = root_emd(archive.infos, path, parameter)
        emd = _parse_emd(archive.read_text(archive.find([emd_name])), f"{path} (its {emd_name})", parameter)
        temp_dir = tempfile.mkdtemp(prefix="dlpk-")
        return ModelPackage(path, os.path.join(temp_dir, emd_name), emd, parameter, temp_dir, archive)
    except BaseException:
        archive.close()
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)
        raise


# ---- dlpk ---------------------------------------------------------------------------------------

def root_emd(infos: List[zipfile.ZipInfo], where: str, parameter: str) -> str:
    """The name of the one .emd at a .dlpk's root (arcgis.learn's rule)."""
    emds = [i.filename for i in infos if not i.is_dir() and len(_parts(i.filename)) == 1
            and i.filename.lower().endswith(".emd")]
    if len(emds) != 1:
        refuse(where, parameter, f"a .dlpk must hold exactly one .emd at its root; it holds {len(emds)}"
               + (f" ({', '.join(emds)})" if emds else ""))
    return "/".join(_parts(emds[0]))


_parts = member_parts


def _inside(path: str, folder: str) -> bool:
    real = os.path.realpath(path)
    root = os.path.realpath(folder)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _read_emd(path: str, parameter: str) -> Dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TEXT_BYTES + 1)
    except OSError as e:
        raise InputError(parameter, f"{path} cannot be read: {_first_line(e)}") from None
    if len(data) > MAX_TEXT_BYTES:
        raise InputError(parameter, f"{path} is larger than the {_human(MAX_TEXT_BYTES)} a model definition can be")
    return _parse_emd(data, path, parameter)


def _parse_emd(data: bytes, where: str, parameter: str) -> Dict[str, Any]:
    try:
        emd = json.loads(data.decode("utf-8-sig"))
    except (ValueError, RecursionError) as e:
        raise InputError(parameter, f"{where} cannot be read as JSON: {_first_line(e)}") from None
    if not isinstance(emd, dict):
        raise InputError(parameter, f"{where} does not hold a JSON object")
    return emd


def _human(n: float) -> str:
    from ..memory_budget import human

    return human(n)


def _unpickler_detail(e: BaseException) -> str:
    """The useful part of torch's long weights_only message ("Unsupported global: GLOBAL io.open …")."""
    m = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\s+was not an allowed|\n\n|$)", str(e), re.S)
    return " ".join(m.group(1).split()) if m else _first_line(e)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
