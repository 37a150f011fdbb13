"""Training augmentation, applied to the image AND its labels (mask, instance masks, boxes) so
they stay aligned: the keywords (AUGMENTATION, AUGMENTATION_PARAMETERS) parsed here, the
transforms done by torchvision.transforms.v2 on tensors (on any device, the GPU included).

AUGMENTATION:

- ``DEFAULT``: a random element of the dihedral group — flips and quarter turns — in
  MAP_SPACE (north-up chips, where any orientation is as real as another); nothing in
  PIXEL_SPACE (oblique or image-space chips, where up is up), as arcgis.learn does.
  Chips that are not square only get flips (a quarter turn would change their shape).
- ``NONE``: nothing.
- ``CUSTOM``: the transforms of AUGMENTATION_PARAMETERS.

AUGMENTATION_PARAMETERS syntax: transforms separated by ``;`` (or new lines), each
``name [value] [p]``. ``value`` is a number or a range ``a,b`` (also written ``(a, b)`` or
``[a, b]``) from which a number is drawn uniformly; ``p`` is the probability that the
transform is applied. ``value=…`` and ``p=…`` may be written with their keys. The
transforms and their meaning follow ArcGIS Pro's Train Deep Learning Model (fastai's):

==============  ==========================================================  ============
name            value                                                       default
==============  ==========================================================  ============
flip            —   (horizontal and vertical flip, each with probability p)  p 0.5
rotate90        —   (with probability p, a quarter, half or 3/4 turn)        p 0.5
dihedral        —   (one of the 8 flips/turns, uniformly; = DEFAULT)         p 1.0
rotate          degrees: a number d turns by [-d, d], a range a,b by [a, b]  30; p 0.5
zoom            scale >= 1 (a number s: [1, s]), random centre              1,1.2; p 1.0
brightness      change 0..1, 0.5 = unchanged, 0 darkest, 1 lightest          0.4,0.6; p 1.0
contrast        scale >= 0, 1 = unchanged, 0 grey, > 1 more contrast         0.75,1.5; p 1.0
==============  ==========================================================  ============

Example: ``flip 0.5; rotate90 0.5; rotate 15 0.3; zoom 1,1.3 0.5; brightness 0.35,0.65; contrast 0.8,1.25``.

Brightness and contrast work on each band scaled to 0..1 by its range (the export's band
minimum and maximum; 0..255 for 8-bit RGB), as fastai's logit-space transforms, and only on
the image (never on labels). Rotations and zooms resample the image bilinearly and label
rasters by nearest neighbour (rotate's positive angles turn counter-clockwise, about the chip's
centre); what comes from outside the chip is 0 / background; boxes become the bounds of their
turned corners, clipped to the chip, and boxes left empty are dropped. Flips and quarter turns
are exact (no resampling).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import List, Optional, Tuple

import numpy as np

from ..errors import InputError
from .samples import Sample

AUGMENTATION_MODES = ("DEFAULT", "NONE", "CUSTOM")


@dataclass(frozen=True)
class _Spec:
    default_value: Optional[Tuple[float, float]]
    default_p: float
    takes_value: bool
    value_name: str = "value"


TRANSFORMS = {
    "flip": _Spec(None, 0.5, False),
    "rotate90": _Spec(None, 0.5, False),
    "dihedral": _Spec(None, 1.0, False),
    "rotate": _Spec((-30.0, 30.0), 0.5, True, "degrees"),
    "zoom": _Spec((1.0, 1.2), 1.0, True, "scale"),
    "brightness": _Spec((0.4, 0.6), 1.0, True, "change"),
    "contrast": _Spec((0.75, 1.5), 1.0, True, "scale"),
}
GEOMETRIC = ("flip", "rotate90", "dihedral", "rotate", "zoom")


@dataclass(frozen=True)
class Transform:
    name: str
    value: Optional[Tuple[float, float]] = None  # range to draw from
    p: float = 1.0


@dataclass
class Augmentation:
    """A list of transforms; call it on a Sample with a numpy Generator."""

    transforms: List[Transform] = field(default_factory=list)
    # Band ranges for brightness/contrast (e.g. Normalization.band_min/band_max); None: each chip's own.
    value_range: Optional[Tuple[np.ndarray, np.ndarray]] = None

    @property
    def is_identity(self) -> bool:
        return not self.transforms

    def ordered(self) -> List[Transform]:
        """Geometric transforms first (in the order given), then photometric ones."""
        return [t for t in self.transforms if t.name in GEOMETRIC] + \
               [t for t in self.transforms if t.name not in GEOMETRIC]

    def apply(self, t: dict, rng: np.random.Generator) -> dict:
        """The transforms on a chip's tv_tensors (``augment_tensors``)."""
        for tr in self.ordered():
            if tr.name != "flip" and tr.p < 1.0 and rng.random() >= tr.p:  # flip draws its own two chances
                continue
            t = _APPLY[tr.name](t, tr, rng, self)
        return t

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if self.is_identity:
            return sample
        return _transform_sample(sample, lambda t: self.apply(t, rng))


# ---- construction -------------------------------------------------------------------------------

def make_augmentation(mode: str = "DEFAULT", parameters: Optional[str] = None, image_space: str = "MAP_SPACE",
                      value_range: Optional[Tuple[np.ndarray, np.ndarray]] = None) -> Augmentation:
    """AUGMENTATION (DEFAULT, NONE, CUSTOM) and AUGMENTATION_PARAMETERS → an Augmentation."""
    mode = (mode or "DEFAULT").strip().upper()
    if mode not in AUGMENTATION_MODES:
        raise InputError("AUGMENTATION", f"unknown augmentation {mode!r}; use one of {', '.join(AUGMENTATION_MODES)}")
    if mode == "NONE":
        return Augmentation([], value_range)
    if mode == "DEFAULT":
        transforms = [] if str(image_space).upper() == "PIXEL_SPACE" else [Transform("dihedral", None, 1.0)]
        return Augmentation(transforms, value_range)
    if not parameters or not str(parameters).strip():
        raise InputError("AUGMENTATION_PARAMETERS", "AUGMENTATION CUSTOM needs AUGMENTATION_PARAMETERS, e.g. "
                                                   "'flip 0.5; rotate90 0.5; brightness 0.4,0.6'; transforms: "
                                                   + ", ".join(TRANSFORMS))
    return Augmentation(parse_augmentation_parameters(parameters), value_range)


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^({_NUMBER})(?:,({_NUMBER}))?$")


def parse_augmentation_parameters(text: str) -> List[Transform]:
    """Parse AUGMENTATION_PARAMETERS (syntax in this module's docstring)."""
    out = []
    for entry in re.split(r"[;\n]", str(text)):
        entry = entry.strip()
        if not entry:
            continue
        m = re.match(r"^([A-Za-z_]\w*)(.*)$", entry)
        name = m.group(1).lower() if m else ""
        if name not in TRANSFORMS:
            raise InputError("AUGMENTATION_PARAMETERS",
                            f"unknown transform {entry.split()[0]!r} in {entry!r}; valid: {', '.join(TRANSFORMS)} "
                            "(syntax: 'name [value] [p]; …')")
        spec = TRANSFORMS[name]
        args = _arguments(m.group(2), entry)
        value, p, single = None, None, False
        positional = []
        for a in args:
            if "=" in a:
                key, v = a.split("=", 1)
                key = key.lower()
                if key == "p":
                    p = _number(v, entry)
                elif key in (spec.value_name, "value") and spec.takes_value:
                    value, single = _range(v, entry)
                else:
                    raise InputError("AUGMENTATION_PARAMETERS", f"{name} takes "
                                    f"{spec.value_name + ' and ' if spec.takes_value else ''}p, not {key!r} "
                                    f"(in {entry!r})")
            else:
                positional.append(a)
        if spec.takes_value and positional and value is None:
            value, single = _range(positional.pop(0), entry)
        if positional and p is None:
            p = _number(positional.pop(0), entry)
        if positional:
            raise InputError("AUGMENTATION_PARAMETERS", f"too many values in {entry!r}; write "
                                                       f"'{name}{' value' if spec.takes_value else ''} [p]'")
        _check_value(name, value, entry)
        if value is None:
            value = spec.default_value
        elif name == "rotate" and single:
            value = (-abs(value[0]), abs(value[0]))  # one number: the largest angle either way
        elif name == "zoom" and single:
            value = (1.0, value[0])  # one number: the largest scale
        p = spec.default_p if p is None else p
        if not 0.0 <= p <= 1.0:
            raise InputError("AUGMENTATION_PARAMETERS", f"the probability in {entry!r} must be between 0 and 1")
        out.append(Transform(name, value, float(p)))
    if not out:
        raise InputError("AUGMENTATION_PARAMETERS", "no transform given; valid: " + ", ".join(TRANSFORMS))
    return out


def _arguments(rest: str, entry: str) -> List[str]:
    """The arguments after a transform's name: ``value p`` separated by blanks (``a,b`` is a
    range, brackets optional), or call style ``(value, p=…)`` right after the name, where
    commas separate arguments and a range needs its brackets: ``rotate(degrees=(10, 40), p=0.5)``."""
    call = rest.startswith("(") and rest.rstrip().endswith(")")
    text = rest.strip()[1:-1] if call else rest
    text = re.sub(r"\s*=\s*", "=", text)
    if not call:
        text = re.sub(r"\s*,\s*", ",", text)
    args, depth, current = [], 0, ""
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth < 0:
                raise InputError("AUGMENTATION_PARAMETERS", f"unbalanced brackets in {entry!r}")
        if depth == 0 and (ch.isspace() or (call and ch == ",")):
            if current:
                args.append(current)
            current = ""
        else:
            current += ch
    if depth != 0:
        raise InputError("AUGMENTATION_PARAMETERS", f"unbalanced brackets in {entry!r}")
    if current:
        args.append(current)
    return [re.sub(r"[()\[\]\s]", "", a) for a in args]


def _number(text: str, entry: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise InputError("AUGMENTATION_PARAMETERS", f"{text!r} in {entry!r} is not a number") from None
    if not math.isfinite(v):
        raise InputError("AUGMENTATION_PARAMETERS", f"{text!r} in {entry!r} is not a finite number")
    return v


def _range(text: str, entry: str) -> Tuple[Tuple[float, float], bool]:
    """((low, high), True when a single number was given)."""
    m = _RANGE.match(text)
    if not m:
        raise InputError("AUGMENTATION_PARAMETERS", f"{text!r} in {entry!r} is not a number or a range 'a,b'")
    a = float(m.group(1))
    b = float(m.group(2)) if m.group(2) is not None else a
    return (min(a, b), max(a, b)), m.group(2) is None


def _check_value(name: str, value, entry: str) -> None:
    if value is None:
        return
    lo, hi = value
    bad = {"zoom": lo < 1.0 or hi < 1.0, "brightness": lo < 0.0 or hi > 1.0, "contrast": lo < 0.0}.get(name, False)
    if bad:
        rule = {"zoom": "at least 1", "brightness": "between 0 and 1", "contrast": "at least 0"}[name]
        raise InputError("AUGMENTATION_PARAMETERS", f"the {name} value in {entry!r} must be {rule}")


# ---- transforms: torchvision.transforms.v2 on tensors --------------------------------------------
#
# Each transform draws its parameters from the chip's numpy Generator (seeded by seed, epoch and
# chip: the same on every run and in any loader worker) and applies them with torchvision's v2
# functional API to tv_tensors, so the image (Image: bilinear), the label rasters (Mask: nearest)
# and the boxes (BoundingBoxes: their turned corners' bounds, clipped to the chip) move together.
# The tensors may live on any device: ``augment_tensors`` works on a chip already on the GPU.

def augment_tensors(augmentation: Augmentation, rng: np.random.Generator, image, image2=None, mask=None,
                    instance_masks=None, boxes=None):
    """The transforms on torch tensors (any device): image/image2 (bands, h, w) float, mask (h, w),
    instance_masks (n, h, w), boxes (n, 4) xmin, ymin, xmax, ymax in pixels. Returns the same
    five (None stays None; boxes left empty dropped) and the indices of the boxes kept."""
    return _transform(lambda t: augmentation.apply(t, rng), image, image2, mask, instance_masks, boxes)


def _transform(fn, image, image2=None, mask=None, instance_masks=None, boxes=None):
    """``fn`` on the chip's tensors as tv_tensors: (image, image2, mask, instance_masks, boxes), kept."""
    import torch
    from torchvision import tv_tensors

    h, w = int(image.shape[-2]), int(image.shape[-1])
    t = {"image": tv_tensors.Image(image)}
    if image2 is not None:
        t["image2"] = tv_tensors.Image(image2)
    if mask is not None:
        t["mask"] = tv_tensors.Mask(mask)
    if instance_masks is not None:
        t["instance_masks"] = tv_tensors.Mask(instance_masks)
    if boxes is not None:
        t["boxes"] = tv_tensors.BoundingBoxes(boxes.float().reshape(-1, 4), format="XYXY", canvas_size=(h, w))
    plain = {k: v.as_subclass(torch.Tensor) for k, v in fn(t).items()}
    keep = out_boxes = None
    if boxes is not None:
        b = plain["boxes"]
        keep = torch.nonzero((b[:, 2] - b[:, 0] > 0) & (b[:, 3] - b[:, 1] > 0)).flatten()
        out_boxes = b[keep]
    return (plain["image"], plain.get("image2"), plain.get("mask"), plain.get("instance_masks"), out_boxes), keep


def _transform_sample(sample: Sample, fn) -> Sample:
    """``fn`` (on tv_tensors) applied to a numpy Sample: a new Sample, boxes and classes following."""
    import torch

    def tensor(a):
        return None if a is None else torch.from_numpy(np.ascontiguousarray(a))

    instances = sample.instance_masks is not None  # their boxes are the bounds of what is left of them
    (image, image2, mask, instance, boxes), keep = _transform(
        fn, tensor(sample.image), tensor(sample.image2), tensor(sample.mask), tensor(sample.instance_masks),
        None if sample.boxes is None or instances else tensor(sample.boxes))

    def array(a, dtype=None):
        return None if a is None else np.ascontiguousarray(a.numpy(), dtype=dtype)
    out = replace(sample, image=array(image, np.float32), image2=array(image2), mask=array(mask))
    if instances:
        return out.with_geometry(out.image, out.image2, out.mask, array(instance), None, out.width, out.height)
    if sample.boxes is not None:
        out = replace(out, boxes=array(boxes, np.float32), box_classes=sample.box_classes[keep.numpy()])
    return out


def _is_square(t) -> bool:
    return t["image"].shape[-1] == t["image"].shape[-2]


def _each(t, fn):
    """``fn`` on every tv_tensor of the chip (torchvision dispatches on the type: images bilinear,
    masks nearest, boxes by their corners)."""
    return {k: fn(v) for k, v in t.items()}


def _dihedral_tensors(t, turns: int, hflip: bool):
    """``turns`` quarter turns counter-clockwise, then a left-right flip: the 8 elements of the
    dihedral group of a square (exact: no resampling)."""
    from torchvision.transforms.v2 import functional as F

    if turns % 4:
        t = _each(t, lambda v: F.rotate(v, 90.0 * (turns % 4), expand=True))
    if hflip:
        t = _each(t, F.horizontal_flip)
    return t


def _flip(t, tr, rng, aug):
    from torchvision.transforms.v2 import functional as F

    if rng.random() < tr.p:
        t = _each(t, F.horizontal_flip)
    if rng.random() < tr.p:
        t = _each(t, F.vertical_flip)
    return t


def _rotate90(t, tr, rng, aug):
    turns = int(rng.integers(1, 4)) if _is_square(t) else 2  # a half turn keeps any shape
    return _dihedral_tensors(t, turns, False)


def _dihedral(t, tr, rng, aug):
    turns = int(rng.integers(0, 4))
    hflip = bool(rng.integers(0, 2))
    if not _is_square(t):
        turns &= 2  # only the half turn keeps the shape: flips left-right and up-down
    return _dihedral_tensors(t, turns, hflip)


def _rotate(t, tr, rng, aug):
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    angle = float(rng.uniform(*tr.value))  # degrees, counter-clockwise, about the chip's centre
    return _each(t, lambda v: F.rotate(v, angle, interpolation=InterpolationMode.BILINEAR, fill=0))


def _zoom(t, tr, rng, aug):
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    scale = float(rng.uniform(*tr.value))
    h, w = int(t["image"].shape[-2]), int(t["image"].shape[-1])
    ch, cw = max(1, int(round(h / scale))), max(1, int(round(w / scale)))
    if (ch, cw) == (h, w):
        return t
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return _each(t, lambda v: F.resized_crop(v, top, left, ch, cw, [h, w], interpolation=InterpolationMode.BILINEAR,
                                             antialias=False))


def _unit(image, aug: Augmentation):
    """The image scaled to 0..1 per band (by the export's band range, else the chip's own), and the
    function that scales it back."""
    import torch

    x = image.as_subclass(torch.Tensor).float()
    bands = x.shape[0]
    if aug.value_range is not None and len(aug.value_range[0]) == bands:
        lo = torch.as_tensor(np.asarray(aug.value_range[0], np.float32), device=x.device)
        hi = torch.as_tensor(np.asarray(aug.value_range[1], np.float32), device=x.device)
    else:
        flat = x.reshape(bands, -1)
        lo, hi = flat.nan_to_num(float("inf")).amin(1), flat.nan_to_num(float("-inf")).amax(1)
    span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))[:, None, None]
    lo = lo[:, None, None]
    u = ((x - lo) / span).clamp(1e-6, 1 - 1e-6)
    return u, lambda v: v * span + lo


def _photometric(t, aug, change):
    """``change`` (logits -> logits) on the image only, as fastai's logit-space lighting."""
    import torch
    from torchvision import tv_tensors

    u, back = _unit(t["image"], aug)
    out = dict(t)
    out["image"] = tv_tensors.Image(back(torch.sigmoid(change(torch.logit(u)))))
    return out


def _brightness(t, tr, rng, aug):
    change = float(np.clip(rng.uniform(*tr.value), 1e-6, 1 - 1e-6))
    return _photometric(t, aug, lambda v: v + math.log(change / (1 - change)))


def _contrast(t, tr, rng, aug):
    scale = float(rng.uniform(*tr.value))
    return _photometric(t, aug, lambda v: v * scale)


_APPLY = {"flip": _flip, "rotate90": _rotate90, "dihedral": _dihedral, "rotate": _rotate, "zoom": _zoom,
          "brightness": _brightness, "contrast": _contrast}


def dihedral(sample: Sample, transpose: bool, hflip: bool, vflip: bool) -> Sample:
    """Exact flips/turns of a Sample: transpose first, then flip left-right, then up-down."""
    from torchvision.transforms.v2 import functional as F

    def fn(t):
        if transpose:  # = a quarter turn counter-clockwise, then an up-down flip
            t = _each(_dihedral_tensors(t, 1, False), F.vertical_flip)
        if hflip:
            t = _each(t, F.horizontal_flip)
        if vflip:
            t = _each(t, F.vertical_flip)
        return t
    return _transform_sample(sample, fn)


__all__ = ["AUGMENTATION_MODES", "TRANSFORMS", "Transform", "Augmentation", "make_augmentation",
           "parse_augmentation_parameters", "augment_tensors", "dihedral"]
