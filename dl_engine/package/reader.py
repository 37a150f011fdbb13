"""Open a trained model (.dlpk or .emd) safely (ARCHITECTURE.md, Security).

- A .dlpk is checked member by member before anything is extracted: no absolute paths,
  drive letters, ``..``, links or other special files, nothing that would land outside the
  extraction folder, and exactly one .emd at the root (as arcgis.learn requires).
- Weights are read with ``torch.load(weights_only=True)``: a pickled object is refused, not
  run. No Python file of a package is ever imported or run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
import zipfile
from typing import Any, Dict, List, Optional

from ..errors import InputError

PARAMETER = "PRETRAINED_MODEL"
_DRIVE = re.compile(r"^[A-Za-z]:")


class ModelPackage:
    """A model definition and its weights. Use as a context manager (or call ``close``) to
    remove the folder a .dlpk was extracted to."""

    def __init__(self, path: str, emd_path: str, emd: Dict[str, Any], parameter: str,
                 temp_dir: Optional[str] = None):
        self.path = path  # what was given: the .dlpk or the .emd
        self.emd_path = emd_path
        self.emd = emd
        self.parameter = parameter
        self._temp_dir = temp_dir

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
        value = self.emd.get("ImageHeight")
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def normalization_stats(self) -> Optional[Dict[str, List[float]]]:
        stats = self.emd.get("NormalizationStats")
        return stats if isinstance(stats, dict) else None

    @property
    def is_multispectral(self) -> bool:
        return bool(self.emd.get("IsMultispectral"))

    @property
    def model_file(self) -> str:
        """The weights file: ``ModelFile`` relative to the emd."""
        rel = self.emd.get("ModelFile")
        if not isinstance(rel, str) or not rel.strip():
            raise InputError(self.parameter, f"{self.emd_path} names no ModelFile")
        path = os.path.normpath(os.path.join(self.folder, *re.split(r"[\\/]+", rel.strip())))
        if self._temp_dir is not None and not _inside(path, self._temp_dir):
            raise InputError(self.parameter, f"{self.path}: ModelFile {rel!r} points outside the package")
        return path

    # ---- weights -------------------------------------------------------------------------------

    def load_state_dict(self) -> Dict[str, Any]:
        """The weights as name → tensor on the CPU. Anything but plain tensors is refused."""
        import pickle

        import torch

        path = self.model_file
        if not os.path.isfile(path):
            raise InputError(self.parameter, f"the weights file {path} named by {self.emd_path} does not exist")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            detail = _unpickler_detail(e)
            if "global" in detail.lower():  # a class or function reference: what runs code when unpickled
                raise InputError(self.parameter, f"{path} holds Python objects besides weights; it is refused "
                                                f"because loading them could run code ({detail})") from None
            raise InputError(self.parameter, f"{path} cannot be read as PyTorch weights: {detail}") from None
        except Exception as e:  # a damaged or foreign file: torch raises RuntimeError and others
            raise InputError(self.parameter, f"{path} cannot be read as PyTorch weights: {_first_line(e)}") from None
        if isinstance(data, dict) and isinstance(data.get("model"), dict) and "opt" in data:
            data = data["model"]  # fastai's Learner.save(with_opt=True)
        if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
            raise InputError(self.parameter, f"{path} does not hold a state dict (a mapping of names to tensors)")
        return data

    # ---- life cycle ----------------------------------------------------------------------------

    def close(self) -> None:
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
    """Open a .dlpk (checked, then extracted to a temporary folder) or an .emd."""
    path = os.path.abspath(os.fspath(path))
    if not os.path.isfile(path):
        raise InputError(parameter, f"{path} does not exist or is not a file; give a .emd or .dlpk")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".emd":
        return ModelPackage(path, path, _read_emd(path, parameter), parameter)
    if ext != ".dlpk" and not zipfile.is_zipfile(path):
        raise InputError(parameter, f"{path} is neither a .emd nor a .dlpk")
    temp_dir = tempfile.mkdtemp(prefix="dlpk-")
    try:
        emd_name = _extract(path, temp_dir, parameter)
        emd_path = os.path.join(temp_dir, emd_name)
        return ModelPackage(path, emd_path, _read_emd(emd_path, parameter), parameter, temp_dir)
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise


# ---- dlpk ---------------------------------------------------------------------------------------

def check_members(infos: List[zipfile.ZipInfo], target: str, where: str, parameter: str = PARAMETER) -> str:
    """Refuse unsafe members (see module doc); returns the name of the one root-level .emd."""
    def refuse(why: str):
        raise InputError(parameter, f"{where} is refused: {why}")

    seen = set()
    for info in infos:
        name = info.filename
        parts = _parts(name)
        if "\x00" in name or not parts:
            refuse(f"member {name!r} has no usable name")
        if name.startswith(("/", "\\")) or _DRIVE.match(name):
            refuse(f"member {name!r} has an absolute path")
        if any(p == ".." for p in parts):
            refuse(f"member {name!r} climbs out of the package ('..')")
        if any(":" in p for p in parts):
            refuse(f"member {name!r} has a ':' in its name")
        mode = info.external_attr >> 16  # Unix mode; its file type bits are 0 in many zips
        if stat.S_ISLNK(mode):
            refuse(f"member {name!r} is a symbolic link")
        if stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            refuse(f"member {name!r} is not a plain file")
        if not _inside(os.path.join(target, *parts), target):
            refuse(f"member {name!r} would be written outside the extraction folder")
        key = "/".join(parts)
        if key in seen and not info.is_dir():
            refuse(f"member {name!r} appears twice")
        seen.add(key)
    emds = [i.filename for i in infos if not i.is_dir() and len(_parts(i.filename)) == 1
            and i.filename.lower().endswith(".emd")]
    if len(emds) != 1:
        refuse(f"a .dlpk must hold exactly one .emd at its root; it holds {len(emds)}"
               + (f" ({', '.join(emds)})" if emds else ""))
    return "/".join(_parts(emds[0]))


def _extract(path: str, target: str, parameter: str) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            emd_name = check_members(infos, target, path, parameter)
            for info in infos:  # by hand: names already checked, nothing written outside target
                dest = os.path.join(target, *_parts(info.filename))
                if info.is_dir():
                    os.makedirs(dest, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                with zf.open(info) as src, open(dest, "xb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except InputError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, RuntimeError, OSError, EOFError, NotImplementedError) as e:
        raise InputError(parameter, f"{path} cannot be extracted as a .dlpk (zip): {_first_line(e)}") from None
    return emd_name


def _parts(name: str) -> List[str]:
    """Path components of a member name; backslashes count as separators (Windows zips)."""
    return [p for p in re.split(r"[\\/]+", name) if p not in ("", ".")]


def _inside(path: str, folder: str) -> bool:
    real = os.path.realpath(path)
    root = os.path.realpath(folder)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def _read_emd(path: str, parameter: str) -> Dict[str, Any]:
    try:
        with open(path, "rb") as f:
            emd = json.loads(f.read().decode("utf-8-sig"))
    except (OSError, ValueError) as e:
        raise InputError(parameter, f"{path} cannot be read as JSON: {_first_line(e)}") from None
    if not isinstance(emd, dict):
        raise InputError(parameter, f"{path} does not hold a JSON object")
    return emd


def _unpickler_detail(e: BaseException) -> str:
    """The useful part of torch's long weights_only message ("Unsupported global: GLOBAL io.open …")."""
    m = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\s+was not an allowed|\n\n|$)", str(e), re.S)
    return " ".join(m.group(1).split()) if m else _first_line(e)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
