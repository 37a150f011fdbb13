"""The model on its device: raw pixel batches in, predictions out.

Raw pixels travel to the device in their own type (uint8 stays uint8: a quarter of the
bytes of float32) and are normalised there with exactly the formulas of training
(data/normalization.py): ImageNet statistics for 8-bit RGB, else NormalizationStats.
"""

from __future__ import annotations

import inspect
from typing import Any, Dict, List

import numpy as np
import torch

from ..data.normalization import Normalization
from ..runtime import Runtime
from .model import LoadedModel


class TorchNormalizer:
    """``Normalization.normalize`` on a (N, bands, H, W) tensor. With ``extracted`` the input
    already holds only the ExtractBands (ArcGIS's raster function hands them so)."""

    def __init__(self, norm: Normalization, device: torch.device, extracted: bool = False):
        b = np.asarray(norm.extract_bands)
        self.bands = None if extracted else torch.as_tensor(b, device=device)
        self.identity = extracted or list(norm.extract_bands) == list(range(len(b)))

        def col(values) -> torch.Tensor:
            return torch.as_tensor(np.asarray(values, np.float32), device=device).view(1, -1, 1, 1)

        if norm.mode == "imagenet":
            from ..data.normalization import IMAGENET_MEAN, IMAGENET_STD
            self.sub, self.div = col(np.asarray(IMAGENET_MEAN) * 255.0), col(np.asarray(IMAGENET_STD) * 255.0)
            self.scaled = None
        else:
            self.sub, self.div = col(norm.band_min[b]), col(norm.band_max[b] - norm.band_min[b])
            self.scaled = (col(norm.scaled_mean[b]), col(norm.scaled_std[b]))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.identity or (self.bands is not None and x.shape[1] != len(self.bands)):
            x = x.index_select(1, self.bands)
        x = (x.float() - self.sub) / self.div
        if self.scaled is not None:
            x = (x - self.scaled[0]) / self.scaled[1]
        return x


class Predictor:
    """A loaded model on the runtime's device, in inference mode."""

    def __init__(self, model: LoadedModel, runtime: Runtime, extracted: bool = False):
        self.model = model
        self.runtime = runtime
        module = model.module.to(runtime.device)
        if runtime.channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module = module.eval()
        self.normalize = TorchNormalizer(model.normalization, runtime.device, extracted)
        self.predict_fn = model.spec.predict
        self._predict_kwargs = _accepted_kwargs(self.predict_fn)

    def inputs(self, raw: np.ndarray) -> torch.Tensor:
        """(N, bands, H, W) raw pixels → normalised float tensor on the device."""
        x = torch.from_numpy(np.ascontiguousarray(raw))
        if self.runtime.is_cuda:
            x = x.pin_memory().to(self.runtime.device, non_blocking=True)
        x = self.normalize(x)
        if self.runtime.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    # ---- pixel models ---------------------------------------------------------------------------

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        with self.runtime.autocast():
            out = self.predict_fn(self.module, x) if self.predict_fn is not None else self.module(x)
        out = out.float()
        if out.shape[-2:] != x.shape[-2:]:  # a network that predicts at a lower resolution
            out = torch.nn.functional.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out

    @torch.inference_mode()
    def classify_pixels(self, raw: np.ndarray, predict_background: bool = True, tta: bool = False) -> np.ndarray:
        """(N, H, W) class indices (uint8 while there are fewer than 256 outputs, else int32)."""
        x = self.inputs(raw)
        if tta:  # flips: identity, left-right, up-down, both; softmax averaged in the input's frame
            scores = None
            for dims in ((), (3,), (2,), (2, 3)):
                xi = torch.flip(x, dims) if dims else x
                p = torch.softmax(self._logits(xi), 1)
                p = torch.flip(p, dims) if dims else p
                scores = p if scores is None else scores + p
        else:
            scores = self._logits(x)
        if self.model.ignored_outputs:  # as Pro does: below every other score, so never the argmax
            scores[:, list(self.model.ignored_outputs)] = scores.min() - 1
        if not predict_background and scores.shape[1] > 1:
            scores = scores[:, 1:]
            index = scores.argmax(1) + 1
        else:
            index = scores.argmax(1)
        dtype = torch.uint8 if scores.shape[1] + 1 <= 256 else torch.int32
        return index.to(dtype).cpu().numpy()

    # ---- detectors and classifiers --------------------------------------------------------------

    @torch.inference_mode()
    def detect(self, raw: np.ndarray, **options: Any) -> List[Dict[str, np.ndarray]]:
        """One dict per image: boxes (n, 4) xmin, ymin, xmax, ymax in chip pixels, scores (n,),
        labels (n,) class indices 1..K, masks (n, H, W) for instance models (numpy, float32)."""
        x = self.inputs(raw)
        kwargs = {k: v for k, v in options.items() if k in self._predict_kwargs}
        with self.runtime.autocast():
            outputs = self.predict_fn(self.module, x, **kwargs)
        return [{k: _numpy(v) for k, v in out.items() if k in ("boxes", "scores", "labels", "masks")}
                for out in outputs]

    @torch.inference_mode()
    def classify(self, raw: np.ndarray) -> np.ndarray:
        """(N, K) class probabilities (float32)."""
        x = self.inputs(raw)
        with self.runtime.autocast():
            if self.predict_fn is not None:
                probs = self.predict_fn(self.module, x)
            else:
                probs = torch.softmax(self.module(x).float(), 1)
        return _numpy(probs)


def _numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.is_floating_point():
            value = value.float()
        return value.cpu().numpy()
    return np.asarray(value)


def _accepted_kwargs(fn) -> set:
    """Keyword options a spec's predict takes besides (module, x), e.g. threshold."""
    if fn is None:
        return set()
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return set()
    return {name for i, (name, p) in enumerate(params.items())
            if i >= 2 and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
