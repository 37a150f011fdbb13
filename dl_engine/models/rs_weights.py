"""Remote-sensing backbone weights: torchgeo's ResNet weights for Sentinel-2, Sentinel-1 and
Landsat, chosen with BACKBONE_MODEL ``torchgeo:<Enum>.<MEMBER>`` (e.g.
``torchgeo:ResNet50_Weights.SENTINEL2_ALL_MOCO``).

torchgeo itself is not a dependency (it brings lightning, kornia, segmentation-models-pytorch,
pandas, geopandas, … and moves numpy): this module is our own table of its weights, read from
``torchgeo/models/resnet.py`` and ``swin.py`` (torchgeo 0.8): the file URL (a torch hub name
``<name>-<sha256 prefix>.pth``, checked on download by ``weights._fetch_url``), the timm
architecture the state dict belongs to (timm's key names, as torchgeo loads them), the bands in
the order the first convolution expects them, and the normalisation the weights were trained
with, written in arcgis.learn's form so that training and the emd's NormalizationStats (hence
inference) use it unchanged::

    x' = (x - min) / (max - min),   model input = (x' - mean) / std    (mean 0, std 1 unless given)

- SSL4EO-S12 Sentinel-2 (MoCo, DINO, DeCUR; 13 bands or RGB): L1C digital numbers / 10000.
- SSL4EO-L Landsat (MoCo, SimCLR): the dataset's uint8 scaling, ``(x - min) / (max - min)``
  with reflectance 0..0.4 for TOA bands, 248.15..318.15 K for thermal bands and
  ``(0 + 0.2) / 0.0000275``..``(0.3 + 0.2) / 0.0000275`` for Collection 2 Level-2 SR numbers
  (torchgeo's ``experiments/ssl4eo/landsat/compress_*.sh``, then its ``/ 255`` transform).
- Satlas Sentinel-2: the 8-bit true-colour bands / 255, the other bands / 8160.
- SSL4EO-S12 Sentinel-1 (MoCo, DeCUR): backscatter in dB, ``(x - mean) / std``.

torchgeo also clips Landsat and Satlas inputs to 0..1; arcgis.learn's normalisation has no clip,
so values outside min..max pass as they are (in training and inference alike). torchgeo's resize
and centre crop belong to its scene-classification benchmarks, not to the weights.

``find(backbone)`` gives a table entry (None for other backbones), ``check_bands`` refuses an
export whose bands are not the ones the weights expect (``InputError("BACKBONE_MODEL", …)``
naming them in order), ``prepare_training_data`` applies both to training's data.

Standard library at import (numpy and the normalisation class inside the functions).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import InputError

PARAMETER = "BACKBONE_MODEL"
PREFIX = "torchgeo:"
HF_HOSTS = ("https://hf.co/", "https://huggingface.co/")  # rewritten to HF_ENDPOINT when one is set


@dataclass(frozen=True)
class RSWeights:
    """One set of torchgeo weights."""

    name: str  # "ResNet50_Weights.SENTINEL2_ALL_MOCO" (torchgeo's enum and member)
    arch: str  # the timm model the state dict belongs to: "resnet50"
    url: str
    bands: Tuple[str, ...]  # in the order of the first convolution's input channels
    band_min: Tuple[float, ...]  # the normalisation (module docstring), one value per band
    band_max: Tuple[float, ...]
    sensor: str
    dataset: str  # SSL4EO-S12, SSL4EO-L, SatlasPretrain
    method: str  # moco, simclr, dino, decur, satlas
    mean: Optional[Tuple[float, ...]] = None  # scaled mean (default 0)
    std: Optional[Tuple[float, ...]] = None  # scaled std (default 1)
    note: str = ""  # how the weights' inputs were scaled, for the log

    @property
    def backbone(self) -> str:
        """The BACKBONE_MODEL value (and the emd's ModelParameters.backbone)."""
        return PREFIX + self.name

    @property
    def in_chans(self) -> int:
        return len(self.bands)

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def hash_prefix(self) -> str:
        """The sha256 prefix in the file name (torch hub's rule)."""
        found = re.search(r"-([0-9a-f]{8,})\.pth$", self.filename)
        return found.group(1) if found else ""

    @property
    def scaled_mean(self) -> Tuple[float, ...]:
        return self.mean if self.mean is not None else (0.0,) * self.in_chans

    @property
    def scaled_std(self) -> Tuple[float, ...]:
        return self.std if self.std is not None else (1.0,) * self.in_chans

    def download_url(self) -> str:
        """The URL, on HF_ENDPOINT (a mirror) when one is set and the file is on the hub."""
        endpoint = os.environ.get("HF_ENDPOINT", "").strip().rstrip("/")
        for host in HF_HOSTS:
            if endpoint and self.url.startswith(host):
                return endpoint + "/" + self.url[len(host):]
        return self.url

    def pretrained_cfg(self) -> SimpleNamespace:
        """What ``weights`` reads of a timm pretrained config: a URL to download into torch hub's
        checkpoints (the file name carries the hash checked), no Hugging Face hub entry."""
        return SimpleNamespace(url=self.download_url(), hf_hub_id=None, hf_hub_filename=None, file=None)

    def describe_normalization(self) -> str:
        """The normalisation in words, for the log."""
        lo, hi = self.band_min, self.band_max
        if self.mean is not None:
            parts = [f"{b}: (x {'-' if m >= 0 else '+'} {abs(m):g}) / {s:g}"
                     for b, m, s in zip(self.bands, self.scaled_mean, self.scaled_std)]
            return "; ".join(parts)
        groups: List[Tuple[float, float, List[str]]] = []
        for band, a, b in zip(self.bands, lo, hi):
            if groups and groups[-1][:2] == (a, b):
                groups[-1][2].append(band)
            else:
                groups.append((a, b, [band]))
        text = []
        for a, b, names in groups:
            formula = f"x / {b:g}" if a == 0 else f"(x - {a:.6g}) / {b - a:.6g}"
            text.append(f"{formula} for {', '.join(names)}" if len(groups) > 1 else formula)
        return "; ".join(text)


# ---- the table ---------------------------------------------------------------------------------------

# Band lists (torchgeo's, spelled as ESA and USGS name the bands; matching ignores case, leading
# zeros and the SR_ prefix).
S2_ALL = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
S2_RGB = ("B04", "B03", "B02")
SATLAS_MS = ("B04", "B03", "B02", "B05", "B06", "B07", "B08", "B11", "B12")
S1 = ("VV", "VH")
TM_TOA = ("B1", "B2", "B3", "B4", "B5", "B6", "B7")
ETM_TOA = ("B1", "B2", "B3", "B4", "B5", "B6_VCID_1", "B6_VCID_2", "B7", "B8")
ETM_SR = ("SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B7")
OLI_TIRS_TOA = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11")
OLI_SR = ("SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7")

# SSL4EO-L's uint8 scaling (torchgeo experiments/ssl4eo/landsat/compress_*.sh)
REFLECTANCE = (0.0, 0.4)  # TOA reflectance
KELVIN = (273.15 - 25, 273.15 + 45)  # TOA brightness temperature
SR_NUMBERS = ((0 + 0.2) / 0.0000275, (0.3 + 0.2) / 0.0000275)  # Collection 2 Level-2 SR (scale 2.75e-5, offset -0.2)
THERMAL = frozenset(["B6", "B6_VCID_1", "B6_VCID_2", "B10", "B11"])  # thermal bands of the TOA products

LANDSAT_URL = "https://hf.co/torchgeo/ssl4eo_landsat/resolve/1c88bb51b6e17a21dde5230738fa38b74bd74f76/"
SATLAS_URL = "https://hf.co/torchgeo/satlas/resolve/081d6607431bf36bdb59c223777cbb267131b8f2/"

_LANDSAT = {  # product: (bands, sensor, SR numbers or TOA)
    "TM_TOA": (TM_TOA, "Landsat 4-5 TM, Collection 2 Level-1 TOA", False),
    "ETM_TOA": (ETM_TOA, "Landsat 7 ETM+, Collection 2 Level-1 TOA", False),
    "ETM_SR": (ETM_SR, "Landsat 7 ETM+, Collection 2 Level-2 surface reflectance", True),
    "OLI_TIRS_TOA": (OLI_TIRS_TOA, "Landsat 8-9 OLI/TIRS, Collection 2 Level-1 TOA", False),
    "OLI_SR": (OLI_SR, "Landsat 8-9 OLI, Collection 2 Level-2 surface reflectance", True),
}

# (enum, product, method): sha256 prefix of torchgeo's file
_LANDSAT_FILES = {
    ("ResNet18", "TM_TOA", "MOCO"): "1c691b4f", ("ResNet18", "TM_TOA", "SIMCLR"): "d2d38ace",
    ("ResNet18", "ETM_TOA", "MOCO"): "bb88689c", ("ResNet18", "ETM_TOA", "SIMCLR"): "4d813f79",
    ("ResNet18", "ETM_SR", "MOCO"): "4f078acd", ("ResNet18", "ETM_SR", "SIMCLR"): "8e8543b4",
    ("ResNet18", "OLI_TIRS_TOA", "MOCO"): "a3002f51", ("ResNet18", "OLI_TIRS_TOA", "SIMCLR"): "b0635cc6",
    ("ResNet18", "OLI_SR", "MOCO"): "660e82ed", ("ResNet18", "OLI_SR", "SIMCLR"): "7bced5be",
    ("ResNet50", "TM_TOA", "MOCO"): "ba1ce753", ("ResNet50", "TM_TOA", "SIMCLR"): "a1c93432",
    ("ResNet50", "ETM_TOA", "MOCO"): "e9a84d5a", ("ResNet50", "ETM_TOA", "SIMCLR"): "70b5575f",
    ("ResNet50", "ETM_SR", "MOCO"): "1266cde3", ("ResNet50", "ETM_SR", "SIMCLR"): "e5d185d7",
    ("ResNet50", "OLI_TIRS_TOA", "MOCO"): "de7f5e0f", ("ResNet50", "OLI_TIRS_TOA", "SIMCLR"): "030cebfe",
    ("ResNet50", "OLI_SR", "MOCO"): "ff580dad", ("ResNet50", "OLI_SR", "SIMCLR"): "94f78913",
}

S2_L1C = "Sentinel-2 L1C (top of atmosphere)"
S2_NOTE = "SSL4EO-S12: Sentinel-2 L1C digital numbers (reflectance x 10000)"


def _s2(enum: str, member: str, url: str, bands: Tuple[str, ...], method: str) -> RSWeights:
    n = len(bands)
    return RSWeights(f"{enum}_Weights.{member}", enum.lower(), url, bands, (0.0,) * n, (10000.0,) * n,
                     S2_L1C if n == 13 else S2_L1C + ", red, green, blue", "SSL4EO-S12", method, note=S2_NOTE)


def _landsat(enum: str, product: str, method: str) -> RSWeights:
    bands, sensor, sr = _LANDSAT[product]
    lo = [SR_NUMBERS[0] if sr else (KELVIN[0] if b in THERMAL else REFLECTANCE[0]) for b in bands]
    hi = [SR_NUMBERS[1] if sr else (KELVIN[1] if b in THERMAL else REFLECTANCE[1]) for b in bands]
    digest = _LANDSAT_FILES[(enum, product, method)]
    url = f"{LANDSAT_URL}{enum.lower()}_landsat_{product.lower()}_{method.lower()}-{digest}.pth"
    note = ("SSL4EO-L: Collection 2 Level-2 SR digital numbers" if sr else
            "SSL4EO-L: TOA reflectance (0..1) and brightness temperature (kelvin)")
    return RSWeights(f"{enum}_Weights.LANDSAT_{product}_{method}", enum.lower(), url, bands, tuple(lo), tuple(hi),
                     sensor, "SSL4EO-L", method.lower(), note=note + ", scaled as the dataset's uint8 chips")


def _satlas(enum: str, member: str, filename: str) -> RSWeights:
    ms = "_MS_" in member
    bands = SATLAS_MS if ms else S2_RGB
    hi = tuple(255.0 if b in S2_RGB else 8160.0 for b in bands)
    sensor = "Sentinel-2 (Satlas)" + (": 8-bit true colour B04, B03, B02 and L1C B05..B12" if ms
                                     else ": 8-bit true colour (TCI)")
    return RSWeights(f"{enum}_Weights.{member}", enum.lower(), SATLAS_URL + filename, bands, (0.0,) * len(bands), hi,
                     sensor, "SatlasPretrain", "satlas",
                     note="SatlasPretrain: 8-bit true-colour bands, L1C digital numbers for the others")


def _s1(member: str, url: str, method: str) -> RSWeights:
    return RSWeights(f"ResNet50_Weights.{member}", "resnet50", url, S1, (0.0, 0.0), (1.0, 1.0),
                     "Sentinel-1 GRD, VV and VH backscatter in dB", "SSL4EO-S12", method,
                     mean=(-12.59, -20.26), std=(5.26, 5.91), note="SSL4EO-S12: Sentinel-1 GRD backscatter (dB)")


def _table() -> Dict[str, RSWeights]:
    entries = [
        _s2("ResNet18", "SENTINEL2_ALL_MOCO", "https://hf.co/torchgeo/resnet18_sentinel2_all_moco/resolve/"
            "5b8cddc9a14f3844350b7f40b85bcd32aed75918/resnet18_sentinel2_all_moco-59bfdff9.pth", S2_ALL, "moco"),
        _s2("ResNet18", "SENTINEL2_RGB_MOCO", "https://hf.co/torchgeo/resnet18_sentinel2_rgb_moco/resolve/"
            "e1c032e7785fd0625224cdb6699aa138bb304eec/resnet18_sentinel2_rgb_moco-e3a335e3.pth", S2_RGB, "moco"),
        _s2("ResNet50", "SENTINEL2_ALL_MOCO", "https://hf.co/torchgeo/resnet50_sentinel2_all_moco/resolve/"
            "da4f3c9dbe09272eb902f3b37f46635fa4726879/resnet50_sentinel2_all_moco-df8b932e.pth", S2_ALL, "moco"),
        _s2("ResNet50", "SENTINEL2_ALL_DINO", "https://hf.co/torchgeo/resnet50_sentinel2_all_dino/resolve/"
            "d7f14bf5530d70ac69d763e58e77e44dbecfec7c/resnet50_sentinel2_all_dino-d6c330e9.pth", S2_ALL, "dino"),
        _s2("ResNet50", "SENTINEL2_ALL_DECUR", "https://huggingface.co/torchgeo/decur/resolve/"
            "eba7ae5945d482a4319be046d34b552db5dd9950/rn50_ssl4eo-s12_ms_decur_ep100-fc6b09ff.pth", S2_ALL, "decur"),
        _s2("ResNet50", "SENTINEL2_RGB_MOCO", "https://hf.co/torchgeo/resnet50_sentinel2_rgb_moco/resolve/"
            "efd9723b59a88e9dc1420dc1e96afb25b0630a3c/resnet50_sentinel2_rgb_moco-2b57ba8b.pth", S2_RGB, "moco"),
        _s1("SENTINEL1_ALL_MOCO", "https://hf.co/torchgeo/resnet50_sentinel1_all_moco/resolve/"
            "e79862c667853c10a709bdd77ea8ffbad0e0f1cf/resnet50_sentinel1_all_moco-906e4356.pth", "moco"),
        _s1("SENTINEL1_ALL_DECUR", "https://huggingface.co/torchgeo/decur/resolve/"
            "9328eeb90c686a88b30f8526ed757b4bc0f12027/rn50_ssl4eo-s12_sar_decur_ep100-f0e69ba2.pth", "decur"),
    ]
    entries += [_landsat(enum, product, method) for (enum, product, method) in _LANDSAT_FILES]
    satlas = {
        "ResNet50": {"MI_MS": "da5413d2", "MI_RGB": "e79bb7fe", "SI_MS": "1f454cc6", "SI_RGB": "45fc6972"},
        "ResNet152": {"MI_MS": "fd35b4bb", "MI_RGB": "67563ac5", "SI_MS": "4500c6cb", "SI_RGB": "f4d24c3c"},
    }
    for enum, files in satlas.items():
        for kind, digest in files.items():
            entries.append(_satlas(enum, f"SENTINEL2_{kind}_SATLAS",
                                   f"sentinel2_{enum.lower()}_{kind.lower()}-{digest}.pth"))
    return {w.name: w for w in entries}


WEIGHTS: Dict[str, RSWeights] = _table()
# torchgeo's newer names for the Sentinel-1 weights (ALL is deprecated there)
ALIASES: Dict[str, str] = {"ResNet50_Weights.SENTINEL1_GRD_MOCO": "ResNet50_Weights.SENTINEL1_ALL_MOCO",
                           "ResNet50_Weights.SENTINEL1_GRD_DECUR": "ResNet50_Weights.SENTINEL1_ALL_DECUR"}


def accepted() -> List[str]:
    """Every BACKBONE_MODEL value of this table."""
    return [w.backbone for w in WEIGHTS.values()]


def is_remote_sensing(backbone: str) -> bool:
    return str(backbone or "").strip().lower().startswith(PREFIX)


def find(backbone: str) -> Optional[RSWeights]:
    """The weights a BACKBONE_MODEL ``torchgeo:<Enum>.<MEMBER>`` names (any case); None for any
    other backbone; ``InputError`` for a torchgeo name the table does not have."""
    if not is_remote_sensing(backbone):
        return None
    text = str(backbone).strip()[len(PREFIX):].strip()
    by_lower = {k.lower(): v for k, v in WEIGHTS.items()}
    by_lower.update({k.lower(): WEIGHTS[v] for k, v in ALIASES.items()})
    found = by_lower.get(text.lower())
    if found is not None:
        return found
    close = difflib.get_close_matches(text.lower(), list(by_lower), n=3, cutoff=0.6)
    hint = f"; close: {', '.join(PREFIX + by_lower[c].name for c in close)}" if close else ""
    raise InputError(PARAMETER, f"torchgeo has no ResNet weights {text!r} that this version loads{hint}; "
                               f"accepted: {', '.join(accepted())}")


# ---- the export's bands ------------------------------------------------------------------------------

_BAND_CODE = re.compile(r"^(?:SR_)?B0*(\d{1,2})(A?)(_VCID_\d)?(?=$|[\s_\-(.:,])", re.IGNORECASE)


def band_code(name: str) -> Optional[str]:
    """A band name as a comparable code ("B01", "b1", "B1_coastal" → "B1"; "B8a" → "B8A"; "SR_B4"
    → "B4"; "VV"), or None for names that are no band code ("Band_1", "Red", "")."""
    text = str(name or "").strip().upper()
    if text in ("VV", "VH", "HH", "HV"):
        return text
    found = _BAND_CODE.match(text)
    if not found:
        return None
    return f"B{int(found.group(1))}{found.group(2)}{found.group(3) or ''}"


def check_bands(weights: RSWeights, num_bands: int, band_names: Sequence[str] = ()) -> None:
    """Refuse an export whose bands are not those ``weights`` were trained on: the band count,
    and the names and their order where every band of the export has a band code as its name
    (B01…B12, B8A, SR_B1…, VV/VH). ``InputError("BACKBONE_MODEL", …)`` says which bands the
    weights need, in which order."""
    names = [str(n or "").strip() for n in band_names]
    codes = [band_code(n) for n in names]
    wanted = [band_code(b) for b in weights.bands]
    count_wrong = int(num_bands) != weights.in_chans
    named = bool(names) and len(names) == int(num_bands) and all(codes)
    if not count_wrong and (not named or codes == wanted):
        return
    has = f"{int(num_bands)} band(s)" + (f" ({', '.join(names)})" if any(names) else "")
    same_count = [w.backbone for w in WEIGHTS.values() if w.in_chans == int(num_bands)]
    others = (f"; weights for {int(num_bands)} band(s): {', '.join(same_count)}" if same_count and count_wrong
              else "")
    raise InputError(PARAMETER, f"{weights.backbone} needs the {weights.in_chans} bands of {weights.sensor} in this "
                               f"order: {', '.join(weights.bands)}; the export has {has}. Export those bands in that "
                               f"order, or choose another BACKBONE_MODEL{others}")


# ---- the normalisation -------------------------------------------------------------------------------

def normalization(weights: RSWeights):
    """The weights' normalisation as a ``data.normalization.Normalization`` over every band
    (arcgis.learn's NormalizationStats: min, max, scaled mean and std as the module docstring
    says; ``band_mean`` is the raw value that normalises to 0 — what NoData pixels become —,
    ``band_std`` the raw spread of one unit)."""
    import numpy as np

    from ..data.normalization import Normalization

    lo = np.asarray(weights.band_min, np.float64)
    hi = np.asarray(weights.band_max, np.float64)
    mean = np.asarray(weights.scaled_mean, np.float64)
    std = np.asarray(weights.scaled_std, np.float64)
    return Normalization("band_stats", list(range(weights.in_chans)), lo, hi, lo + mean * (hi - lo),
                         std * (hi - lo), mean, std)


def prepare_training_data(td, backbone: str, log: Callable[[str], None] = print) -> Optional[RSWeights]:
    """For torchgeo weights (None otherwise): check the export's bands (``check_bands``) and
    normalise as the weights were trained (``td.normalization``, hence the emd's
    NormalizationStats and inference)."""
    weights = find(backbone)
    if weights is None:
        return None
    data = td.data
    check_bands(weights, data.num_bands, getattr(data, "band_names", ()) or ())
    td.normalization = normalization(weights)
    log(f"{weights.backbone}: {weights.dataset} {weights.method} weights for {weights.sensor} "
        f"({', '.join(weights.bands)}); chips are normalised as the weights were trained: "
        f"{weights.describe_normalization()} ({weights.note}); the emd's NormalizationStats say the same "
        f"for inference")
    return weights
