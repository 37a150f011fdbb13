"""Training augmentation in numpy, applied to the image AND its labels (mask, instance
masks, boxes) so they stay aligned.

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
rasters by nearest neighbour; what comes from outside the chip is 0 / background; boxes
become the bounds of their turned corners, clipped to the chip.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
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

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        # Geometric transforms first (in the order given), then photometric ones.
        ordered = [t for t in self.transforms if t.name in GEOMETRIC] + \
                  [t for t in self.transforms if t.name not in GEOMETRIC]
        for t in ordered:
            if t.name != "flip" and t.p < 1.0 and rng.random() >= t.p:  # flip draws its own two chances
                continue
            sample = _APPLY[t.name](sample, t, rng, self)
        return sample


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


# ---- transforms ---------------------------------------------------------------------------------

def dihedral(sample: Sample, transpose: bool, hflip: bool, vflip: bool) -> Sample:
    """Exact flips/turns: transpose first, then flip left-right, then up-down."""
    h, w = sample.height, sample.width
    fwd = np.eye(3)
    if transpose:
        fwd = np.array([[0.0, 1, 0], [1, 0, 0], [0, 0, 1]]) @ fwd
        h, w = w, h
    if hflip:
        fwd = np.array([[-1.0, 0, w], [0, 1, 0], [0, 0, 1]]) @ fwd
    if vflip:
        fwd = np.array([[1.0, 0, 0], [0, -1, h], [0, 0, 1]]) @ fwd

    def f(a):
        if a is None:
            return None
        if transpose:
            a = np.swapaxes(a, -1, -2)
        if hflip:
            a = a[..., :, ::-1]
        if vflip:
            a = a[..., ::-1, :]
        return np.ascontiguousarray(a)
    return sample.with_geometry(f(sample.image), f(sample.image2), f(sample.mask), f(sample.instance_masks),
                                fwd[:2], w, h)


def _flip(sample, t, rng, aug):
    hflip = bool(rng.random() < t.p)
    vflip = bool(rng.random() < t.p)
    return dihedral(sample, False, hflip, vflip) if hflip or vflip else sample


def _rotate90(sample, t, rng, aug):
    k = int(rng.integers(1, 4)) if sample.height == sample.width else 2
    # k quarter turns counter-clockwise: 1 = transpose + up-down flip, 2 = both flips, 3 = transpose + left-right
    return dihedral(sample, k != 2, k == 3 or k == 2, k == 1 or k == 2)


def _dihedral(sample, t, rng, aug):
    transpose = bool(rng.integers(0, 2)) and sample.height == sample.width
    return dihedral(sample, transpose, bool(rng.integers(0, 2)), bool(rng.integers(0, 2)))


def _rotate(sample, t, rng, aug):
    angle = math.radians(rng.uniform(*t.value))
    h, w = sample.height, sample.width
    cx, cy = w / 2.0, h / 2.0
    c, s = math.cos(angle), math.sin(angle)
    # Output → input: turn back by the angle about the centre.
    back = np.array([[c, s, cx - c * cx - s * cy], [-s, c, cy + s * cx - c * cy]])
    fwd = np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy]])
    return sample.resampled(back, (h, w), fwd)


def _zoom(sample, t, rng, aug):
    scale = rng.uniform(*t.value)
    if scale <= 1.0:
        return sample
    h, w = sample.height, sample.width
    x0 = rng.uniform(0, w - w / scale)
    y0 = rng.uniform(0, h - h / scale)
    back = np.array([[1 / scale, 0, x0], [0, 1 / scale, y0]])
    fwd = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]])
    return sample.resampled(back, (h, w), fwd)


def _unit(sample: Sample, aug: Augmentation):
    """The image scaled to 0..1 per band, and the function that scales it back."""
    x = sample.image.astype(np.float32)
    bands = x.shape[0]
    if aug.value_range is not None and len(aug.value_range[0]) == bands:
        lo = np.asarray(aug.value_range[0], np.float32)
        hi = np.asarray(aug.value_range[1], np.float32)
    else:
        lo = x.reshape(bands, -1).min(1)
        hi = x.reshape(bands, -1).max(1)
    span = np.where(hi > lo, hi - lo, 1.0).astype(np.float32)[:, None, None]
    lo = lo[:, None, None]
    u = np.clip((x - lo) / span, 1e-6, 1 - 1e-6)
    return u, lambda v: (v * span + lo).astype(np.float32)


def _logit(u):
    return np.log(u / (1 - u))


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _brightness(sample, t, rng, aug):
    change = float(np.clip(rng.uniform(*t.value), 1e-6, 1 - 1e-6))
    u, back = _unit(sample, aug)
    return _with_image(sample, back(_sigmoid(_logit(u) + math.log(change / (1 - change)))))


def _contrast(sample, t, rng, aug):
    scale = rng.uniform(*t.value)
    u, back = _unit(sample, aug)
    return _with_image(sample, back(_sigmoid(_logit(u) * scale)))


def _with_image(sample: Sample, image: np.ndarray) -> Sample:
    from dataclasses import replace
    return replace(sample, image=image)


_APPLY = {"flip": _flip, "rotate90": _rotate90, "dihedral": _dihedral, "rotate": _rotate, "zoom": _zoom,
          "brightness": _brightness, "contrast": _contrast}


__all__ = ["AUGMENTATION_MODES", "TRANSFORMS", "Transform", "Augmentation", "make_augmentation",
           "parse_augmentation_parameters", "dihedral"]
