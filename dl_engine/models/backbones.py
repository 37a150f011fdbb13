"""Backbones: BACKBONE_MODEL (arcpy keyword or ``timm:<name>``) as a timm feature extractor.

- arcpy keywords map to timm models (``KEYWORDS``); ``timm:<name>`` (optionally
  ``timm:<name>.<pretrained tag>``) takes any timm model that builds with ``features_only``.
- Pretrained weights come only from what is already on disk: the Hugging Face hub cache
  (where timm downloads to) and torch hub's ``checkpoints`` folder (timm's old URLs and, for
  resnet/resnext/wide_resnet/densenet/vgg, torchvision's files as arcgis.learn/fastai cache
  them). Nothing here opens a network connection: files are read by us
  (safetensors or ``torch.load(weights_only=True)``) and handed to timm as a state dict.
- Any band count: the first convolution takes ``in_channels``; with pretrained weights its
  kernels follow WEIGHT_INIT_SCHEME (``first_conv_weight``).

torch and timm are imported inside the functions, so resolving a keyword stays cheap.
"""

from __future__ import annotations

import difflib
import glob
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlparse

from ..errors import InputError

PARAMETER = "BACKBONE_MODEL"
TIMM_PREFIX = "timm:"
SCHEMES = ("RANDOM", "RED_BAND", "ALL_RANDOM")

# arcpy BACKBONE_MODEL keyword -> timm model (each checked against timm.list_models()).
KEYWORDS: Dict[str, str] = {
    **{f"RESNET{n}": f"resnet{n}" for n in (18, 34, 50, 101, 152)},
    "RESNEXT50": "resnext50_32x4d",
    "RESNEXT101": "resnext101_32x8d",
    "WIDE_RESNET50": "wide_resnet50_2",
    "WIDE_RESNET101": "wide_resnet101_2",
    **{f"DENSENET{n}": f"densenet{n}" for n in (121, 161, 169, 201)},
    **{f"VGG{n}{bn}": f"vgg{n}{bn.lower()}" for n in (11, 13, 16, 19) for bn in ("", "_BN")},
    "MOBILENET_V2": "mobilenetv2_100",
    "MOBILENET_V3_LARGE": "mobilenetv3_large_100",
    "MOBILENET_V3_SMALL": "mobilenetv3_small_100",
    "DARKNET53": "darknet53",
    "CSPDARKNET53": "cspdarknet53",
    **{f"EFFICIENTNET_B{n}": f"efficientnet_b{n}" for n in range(6)},
    # timm has weights for B6/B7 only in the TensorFlow ports ("same" padding)
    "EFFICIENTNET_B6": "tf_efficientnet_b6",
    "EFFICIENTNET_B7": "tf_efficientnet_b7",
    **{f"CONVNEXT_{s.upper()}": f"convnext_{s}" for s in ("tiny", "small", "base", "large")},
}

# Other spellings found in arcgis.learn emds (ModelParameters.backbone), for reading them back.
ALIASES: Dict[str, str] = {
    "mobilenet_v2": "MOBILENET_V2",
    "mobilenet_v3_large": "MOBILENET_V3_LARGE",
    "mobilenet_v3_small": "MOBILENET_V3_SMALL",
    "resnext50": "RESNEXT50",
    "resnext101": "RESNEXT101",
    "wide_resnet50": "WIDE_RESNET50",
    "wide_resnet101": "WIDE_RESNET101",
}

# timm models whose torchvision checkpoints (torch hub "<name>-<hash>.pth") timm reads as they
# are or through its own key filter; the share of weights loaded is checked anyway.
_TORCHVISION_FILES = frozenset(
    [f"resnet{n}" for n in (18, 34, 50, 101, 152)]
    + ["resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2"]
    + [f"densenet{n}" for n in (121, 161, 169, 201)]
    + [f"vgg{n}{bn}" for n in (11, 13, 16, 19) for bn in ("", "_bn")])

# A cached file counts as this backbone's weights when it supplies this share of the
# encoder's parameters (the rest is e.g. a converted first conv); below, it is another model's.
_MIN_LOADED = 0.9


@dataclass
class Encoder:
    model: Any  # timm features_only nn.Module: forward(x) -> list of feature maps, shallow to deep
    channels: List[int]  # channels of each feature map
    reductions: List[int]  # input size / feature size of each map (2, 4, 8, 16, 32 for a resnet)
    name: str  # for the emd: "resnet34" (arcpy keyword) or "timm:convnext_tiny"
    timm_name: str  # what timm built: "resnet34"
    pretrained_loaded: bool
    output_stride: int  # the deepest map's reduction (16 for a dilated DeepLab backbone)
    nhwc: bool = False  # the maps come as (N, H, W, C) (some transformer backbones)


def accepted_backbones() -> List[str]:
    return list(KEYWORDS)


def resolve_backbone(backbone: str) -> Tuple[str, str]:
    """(name for the emd, timm model name) of a BACKBONE_MODEL value.

    Takes an arcpy keyword (any case), ``timm:<name>``, or the resolved names this engine and
    arcgis.learn write to the emd ("resnet34", "mobilenet_v2"), so an emd can be read back.
    """
    text = str(backbone or "").strip()
    if text.lower().startswith(TIMM_PREFIX):
        model = text[len(TIMM_PREFIX):].strip().lower()
        _check_timm_name(model)
        return TIMM_PREFIX + model, model
    keyword = ALIASES.get(text.lower(), text.upper())
    if keyword in KEYWORDS:
        return KEYWORDS[keyword], KEYWORDS[keyword]
    if text.lower() in KEYWORDS.values():
        return text.lower(), text.lower()
    raise InputError(PARAMETER, f"unknown backbone {text!r}; accepted: {', '.join(KEYWORDS)} "
                               f"or timm:<name> (a timm model that supports features_only)")


def _check_timm_name(model: str) -> None:
    import timm

    arch = model.split(".", 1)[0]
    if not arch or not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.6)
        hint = f"; close names: {', '.join(close)}" if close else ""
        raise InputError(PARAMETER, f"timm has no model {arch!r}{hint}; accepted: "
                                   f"{', '.join(KEYWORDS)} or timm:<name> (see timm.list_models())")


def check_scheme(scheme: Optional[str]) -> str:
    value = str(scheme or "RANDOM").strip().upper()
    if value not in SCHEMES:
        raise InputError("WEIGHT_INIT_SCHEME", f"unknown scheme {scheme!r}; accepted: {', '.join(SCHEMES)}")
    return value


def create_encoder(backbone: str, in_channels: int, pretrained: bool = True,
                   weight_init_scheme: str = "RANDOM", log: Callable[[str], None] = print,
                   output_stride: Optional[int] = None,
                   rgb_bands: Optional[Sequence[int]] = None) -> Encoder:
    """A timm ``features_only`` network for ``in_channels`` bands.

    ``output_stride`` (8 or 16) asks for a dilated backbone; backbones without one keep their
    normal strides (the Encoder's ``output_stride`` says what was built). ``pretrained`` loads
    cached weights when there are any, else the weights are random and ``log`` says so.
    ``rgb_bands``: the input channels that are red, green, blue (default the first three).
    """
    scheme = check_scheme(weight_init_scheme)
    name, timm_name = resolve_backbone(backbone)
    in_channels = int(in_channels)
    if in_channels < 1:
        raise ValueError(f"in_channels must be at least 1, not {in_channels}")
    extra = {"output_stride": int(output_stride)} if output_stride else {}

    model, loaded = None, False
    if pretrained:
        for path in find_cached_weights(timm_name):
            state = read_state_dict(path, log)
            if state is None:
                continue
            model, extra = _pretrained(name, timm_name, in_channels, state, scheme, rgb_bands, extra, log)
            if model is not None:
                loaded = True
                log(f"pretrained weights for {name}: {path}")
                break
            log(f"cached weights {path} do not fit {name}: skipped")
        if not loaded:
            log(f"no cached pretrained weights for {name}: training starts from random weights")
    if model is None:
        model, extra = _create(name, timm_name, in_channels, extra, log)

    info = model.feature_info
    reductions = [int(r) for r in info.reduction()]
    return Encoder(model=model, channels=[int(c) for c in info.channels()], reductions=reductions,
                   name=name, timm_name=timm_name, pretrained_loaded=loaded, output_stride=max(reductions),
                   nhwc=str(getattr(model, "output_fmt", "NCHW")).upper().endswith("NHWC"))


def _create(name: str, timm_name: str, in_channels: int, extra: Dict[str, Any], log,
            state: Optional[Dict[str, Any]] = None):
    """(model, the extra kwargs it was built with); dilation dropped where timm has none."""
    import timm

    kwargs: Dict[str, Any] = dict(features_only=True, in_chans=in_channels)
    if state is not None:  # timm applies its own key filters and drops the classifier
        kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(state_dict=state))
    try:
        with _quiet_timm():
            return timm.create_model(timm_name, **kwargs, **extra), extra
    except (TypeError, AssertionError, ValueError, NotImplementedError) as exc:
        if not extra:
            raise InputError(PARAMETER, f"{name} cannot be built as a feature extractor "
                                       f"(features_only): {exc}") from None
        log(f"{name} has no dilated variant (output_stride {extra['output_stride']}): "
            f"it keeps its normal strides")
        return _create(name, timm_name, in_channels, {}, log, state)
    except RuntimeError as exc:
        raise InputError(PARAMETER, f"{name} cannot be built as a feature extractor "
                                   f"(features_only): {exc}") from None


def _pretrained(name, timm_name, in_channels, state, scheme, rgb_bands, extra, log):
    """(the encoder with ``state`` loaded, extra kwargs); (None, extra) when it does not fit."""
    try:
        rgb, extra = _create(name, timm_name, 3, extra, log, state=state)
    except Exception:  # noqa: BLE001 - tensors of another network (timm's key filters fail variously)
        return None, extra
    if loaded_fraction(rgb, state) < _MIN_LOADED:
        return None, extra
    if in_channels == 3:
        return rgb, extra
    model, extra = _create(name, timm_name, in_channels, extra, log)
    _copy_adapted(rgb, model, scheme, rgb_bands, log)
    return model, extra


def _copy_adapted(source, target, scheme: str, rgb_bands, log) -> None:
    """Copy a 3-band network's weights into the same network for other band counts: tensors
    that differ only by input channels (the first conv) go through ``first_conv_weight``."""
    src, dst = source.state_dict(), target.state_dict()
    for key, value in dst.items():
        old = src.get(key)
        if old is None:
            continue
        if old.shape == value.shape:
            dst[key] = old
        elif old.dim() == 4 and old.shape[1] == 3 and old.shape[0] == value.shape[0] \
                and old.shape[2:] == value.shape[2:]:
            dst[key] = first_conv_weight(old, value, scheme, rgb_bands)
            log(f"first layer {key}: {value.shape[1]} bands from the RGB weights ({scheme})")
        else:
            log(f"{key}: random weights (pretrained shape {tuple(old.shape)}, needed {tuple(value.shape)})")
    target.load_state_dict(dst)


def first_conv_weight(pretrained, random, scheme: str = "RANDOM", rgb_bands: Optional[Sequence[int]] = None):
    """First-conv kernels (O, C, kh, kw) for C bands from pretrained RGB kernels (O, 3, kh, kw).

    - ALL_RANDOM: all of ``random``.
    - Fewer than 3 bands: band i takes pretrained kernel i (one band: the red kernel).
    - Otherwise the RGB bands (``rgb_bands``, default the first three) take the R, G, B
      kernels; the other bands keep ``random`` (RANDOM) or copy the red kernel (RED_BAND).
    """
    scheme = check_scheme(scheme)
    out = random.detach().clone()
    bands = out.shape[1]
    if scheme == "ALL_RANDOM":
        return out
    pretrained = pretrained.detach().to(out.dtype)
    if bands < 3:
        out[:] = pretrained[:, :bands]
        return out
    rgb = list(rgb_bands) if rgb_bands is not None else [0, 1, 2]
    if len(rgb) != 3 or len(set(rgb)) != 3 or not all(0 <= int(b) < bands for b in rgb):
        raise ValueError(f"rgb_bands must be 3 distinct band indices below {bands}, not {rgb_bands!r}")
    for j, band in enumerate(rgb):
        out[:, int(band)] = pretrained[:, j]
    if scheme == "RED_BAND":
        for band in range(bands):
            if band not in rgb:
                out[:, band] = pretrained[:, 0]
    return out


def loaded_fraction(model, state: Dict[str, Any]) -> float:
    """Share of ``model``'s parameter values (by count) found as-is among ``state``'s tensors.

    Key names may differ (timm's filters rename, feature wrappers flatten), so tensors are
    matched by shape and value; a file of another network matches next to nothing.
    """
    import torch

    by_shape: Dict[tuple, list] = {}
    for tensor in state.values():
        if torch.is_tensor(tensor) and tensor.is_floating_point():
            by_shape.setdefault(tuple(tensor.shape), []).append(tensor)
    total = hit = 0
    for param in model.parameters():
        value = param.detach()
        total += value.numel()
        head = value.reshape(-1)[:8]
        for cand in by_shape.get(tuple(value.shape), ()):
            if torch.equal(cand.reshape(-1)[:8].to(value.dtype), head) and torch.equal(cand.to(value.dtype), value):
                hit += value.numel()
                break
    return hit / max(total, 1)


def find_cached_weights(timm_name: str) -> List[str]:
    """Files on disk that may hold ``timm_name``'s pretrained weights, best first.

    Without a pretrained tag every tag of the architecture is looked for, the default first.
    Looks only at local files: the Hugging Face hub cache (HF_HUB_CACHE / HF_HOME) and torch
    hub's checkpoints folder (TORCH_HOME).
    """
    import timm
    import torch

    arch, _, tag = timm_name.partition(".")
    try:
        names = [timm_name] if tag else [arch] + [n for n in timm.list_pretrained(f"{arch}.*")]
    except Exception:  # noqa: BLE001 - an architecture without pretrained configs
        names = [timm_name]
    checkpoints = os.path.join(torch.hub.get_dir(), "checkpoints")
    found: List[str] = []
    for cfg_name in names:
        try:
            cfg = timm.models.get_pretrained_cfg(cfg_name)
        except Exception:  # noqa: BLE001
            cfg = None
        if cfg is None:
            continue
        if cfg.file and os.path.isfile(cfg.file):
            found.append(cfg.file)
        if cfg.hf_hub_id:
            found += _hf_cached(cfg.hf_hub_id, cfg.hf_hub_filename)
        if cfg.url:
            path = os.path.join(checkpoints, os.path.basename(urlparse(cfg.url).path))
            if os.path.isfile(path):
                found.append(path)
    if arch in _TORCHVISION_FILES:  # torchvision's "<name>-<hash>.pth", any version
        found += sorted(glob.glob(os.path.join(glob.escape(checkpoints), f"{arch}-*.pth")))
    return list(dict.fromkeys(found))


def _hf_cached(hub_id: str, filename: Optional[str]) -> List[str]:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return []
    repo, _, revision = hub_id.partition("@")
    cache_dir = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE") or (
        os.path.join(os.environ["HF_HOME"], "hub") if os.environ.get("HF_HOME") else None)
    out = []
    for name in [filename] if filename else ["model.safetensors", "pytorch_model.bin"]:
        try:
            path = try_to_load_from_cache(repo, name, cache_dir=cache_dir, revision=revision or None)
        except Exception:  # noqa: BLE001 - a malformed cache is no cache
            path = None
        if isinstance(path, str) and os.path.isfile(path):
            out.append(path)
    return out


def read_state_dict(path: str, log: Callable[[str], None] = print) -> Optional[Dict[str, Any]]:
    """A weight file's tensors, never unpickling code (safetensors or weights_only)."""
    import torch

    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path, device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a broken cache file must not stop training
        log(f"cannot read cached weights {path}: {exc}")
        return None
    for key in ("state_dict_ema", "model_ema", "state_dict", "model"):  # training checkpoints
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        log(f"cached weights {path} hold no state dict")
        return None
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state.items() if torch.is_tensor(v)}


@contextmanager
def _quiet_timm():
    """timm logs every adapted key while loading; what matters is logged by us."""
    logger = logging.getLogger("timm")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
