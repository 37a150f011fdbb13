"""torchvision's detection models (RetinaNet, Faster R-CNN, Mask R-CNN) behind our
``Detector`` contract (det_base.py).

torchvision decides between losses and detections by ``self.training`` of the model and of
its RPN / RoI heads / transform. Here the caller decides: targets → losses, none →
detections, whatever the mode; the mode itself only says whether batch norm layers (in the
backbone) update their statistics. So a validation loss is computed in eval mode without
touching the statistics, and detections can be asked for in training mode.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, List, Optional

import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from .det_base import Detector, amp_state, no_autocast


class PassThroughTransform(GeneralizedRCNNTransform):
    """No normalisation (the data layer did it, for any band count) and no resizing (the chip
    is the input size; any tile size at inference); images are padded to a multiple of 32
    into one batch, as torchvision does."""

    def __init__(self):
        super().__init__(min_size=32, max_size=4096, image_mean=[0.0], image_std=[1.0], size_divisible=32)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        return image

    def resize(self, image: torch.Tensor, target: Optional[Dict[str, torch.Tensor]] = None):
        return image, target


class TorchvisionDetector(Detector):
    """``net``: a torchvision detection model whose backbone is an ``EncoderFPN``."""

    def __init__(self, net, backbone):
        super().__init__()
        self.net = net
        assert net.backbone is backbone

    def _logic(self) -> List[torch.nn.Module]:
        mods = [self.net]
        for name in ("rpn", "roi_heads", "transform"):
            mod = getattr(self.net, name, None)
            if mod is not None:
                mods.append(mod)
        return mods

    @contextmanager
    def _mode(self, training: bool):
        mods = self._logic()
        saved = [m.training for m in mods]
        for m in mods:
            m.training = training
        try:
            yield
        finally:
            for m, t in zip(mods, saved):
                m.training = t

    def losses(self, images, targets) -> Dict[str, torch.Tensor]:
        self.net.backbone.amp = amp_state(images.device.type)
        targets = [{k: v for k, v in t.items()} for t in targets]
        for t in targets:
            t["boxes"] = t["boxes"].float()
        with self._mode(True), no_autocast(images.device.type):
            losses = self.net(list(images), targets)
        return {k: v.float() for k, v in losses.items()}

    def detect(self, images) -> List[Dict[str, torch.Tensor]]:
        self.net.backbone.amp = amp_state(images.device.type)
        with self._mode(False), no_autocast(images.device.type):
            raw = self.net(list(images))
        out = []
        for r in raw:
            keep = r["labels"] >= 1
            d = {"boxes": r["boxes"][keep].float(), "scores": r["scores"][keep].float(),
                 "labels": r["labels"][keep].to(torch.int64)}
            if "masks" in r:
                m = r["masks"][keep].float()
                d["masks"] = m[:, 0] if m.dim() == 4 else m
            out.append(d)
        return out
