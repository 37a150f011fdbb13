"""What every detector network shares.

- ``Detector``: the calling convention. ``forward(images, targets=None)``:
  with targets (a list of {"boxes" (n, 4) float xyxy chip pixels, "labels" (n,) int64 1..K,
  ["masks" (n, H, W) uint8]}, one per image) it returns a dict of losses, in training mode
  and in eval mode alike (validation loss: batch norm statistics are not updated in eval);
  without targets it returns the detections, one dict per image: "boxes" (n, 4) float32,
  "scores" (n,), "labels" (n,) int64 1..K, and "masks" (n, H, W) probabilities for
  instance models — every detection scoring at least ``score_thresh`` after per-class NMS.
- Mixed precision: the backbone (and FPN) run under the caller's autocast; heads, losses,
  box coding and NMS run in float32 (box coordinates in bf16 are off by pixels).
- ``EncoderFPN``: a registry encoder (timm features_only) under torchvision's
  FeaturePyramidNetwork.
- box coding, focal loss and per-class NMS post-processing for our own heads (SSD, YOLOv3).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms, box_iou

SCORE_THRESH = 0.05
NMS_THRESH = 0.5
MAX_DETECTIONS = 100
PRE_NMS_TOP = 1000  # candidates per image before NMS


def amp_state(device_type: str) -> Tuple[bool, torch.dtype]:
    """(autocast on, its dtype) for ``device_type`` in the current context."""
    try:
        return torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)
    except (TypeError, AttributeError, RuntimeError):  # older torch
        return False, torch.float32


def no_autocast(device_type: str):
    try:
        return torch.autocast(device_type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()


class Detector(nn.Module):
    """Base of our detector networks (see the module doc)."""

    score_thresh = SCORE_THRESH
    nms_thresh = NMS_THRESH
    max_detections = MAX_DETECTIONS

    def forward(self, images: torch.Tensor, targets: Optional[List[Dict[str, torch.Tensor]]] = None):
        if targets is not None:
            return self.losses(images, targets)
        return self.detect(images)

    def losses(self, images, targets) -> Dict[str, torch.Tensor]:
        raise NotImplementedError

    def detect(self, images) -> List[Dict[str, torch.Tensor]]:
        raise NotImplementedError


class EncoderFPN(nn.Module):
    """The ``levels`` deepest feature maps of a registry encoder under a feature pyramid
    (``out_channels`` each); ``extra`` adds torchvision's "pool" level (Faster/Mask R-CNN)
    or P6/P7 (RetinaNet). Returns an OrderedDict "0", "1", … of float32 maps; the backbone
    runs under the autocast given by ``self.amp`` (set by the detector for each call)."""

    def __init__(self, encoder, levels: int, out_channels: int = 256, extra: Optional[str] = None):
        super().__init__()
        from torchvision.ops.feature_pyramid_network import (FeaturePyramidNetwork, LastLevelMaxPool,
                                                             LastLevelP6P7)

        self.body = encoder.model
        self.nhwc = bool(encoder.nhwc)
        n = len(encoder.channels)
        levels = min(levels, n)
        self.indices = list(range(n - levels, n))
        self.strides = [int(encoder.reductions[i]) for i in self.indices]
        block = None
        if extra == "pool":
            block = LastLevelMaxPool()
            self.strides.append(self.strides[-1] * 2)
        elif extra == "p6p7":
            block = LastLevelP6P7(out_channels, out_channels)
            self.strides += [self.strides[-1] * 2, self.strides[-1] * 4]
        self.fpn = FeaturePyramidNetwork([int(encoder.channels[i]) for i in self.indices], out_channels,
                                         extra_blocks=block)
        self.out_channels = out_channels
        self.amp: Tuple[bool, torch.dtype] = (False, torch.float32)

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        enabled, dtype = self.amp
        with torch.autocast(x.device.type, dtype=dtype, enabled=enabled) if enabled else contextlib.nullcontext():
            feats = self.body(x)
            if self.nhwc:
                feats = [f.permute(0, 3, 1, 2) for f in feats]
            out = self.fpn(OrderedDict((str(k), feats[i]) for k, i in enumerate(self.indices)))
        return OrderedDict((k, v.float()) for k, v in out.items())


def encoder_features(encoder_model, nhwc: bool, x: torch.Tensor) -> List[torch.Tensor]:
    feats = encoder_model(x)
    if nhwc:
        feats = [f.permute(0, 3, 1, 2) for f in feats]
    return list(feats)


# ---- boxes ------------------------------------------------------------------------------------

def encode_boxes(boxes: torch.Tensor, anchors: torch.Tensor, weights=(10.0, 10.0, 5.0, 5.0)) -> torch.Tensor:
    """Regression targets (dx, dy, dw, dh) of ``boxes`` relative to ``anchors`` (both xyxy)."""
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
    bw, bh = (boxes[:, 2] - boxes[:, 0]).clamp(min=1e-3), (boxes[:, 3] - boxes[:, 1]).clamp(min=1e-3)
    bx, by = boxes[:, 0] + 0.5 * bw, boxes[:, 1] + 0.5 * bh
    wx, wy, ww, wh = weights
    return torch.stack([wx * (bx - ax) / aw, wy * (by - ay) / ah, ww * torch.log(bw / aw), wh * torch.log(bh / ah)],
                       dim=1)


def decode_boxes(deltas: torch.Tensor, anchors: torch.Tensor, weights=(10.0, 10.0, 5.0, 5.0)) -> torch.Tensor:
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ax, ay = anchors[:, 0] + 0.5 * aw, anchors[:, 1] + 0.5 * ah
    wx, wy, ww, wh = weights
    clamp = 4.135  # log(1000 / 16), as torchvision
    dx, dy = deltas[:, 0] / wx, deltas[:, 1] / wy
    dw, dh = (deltas[:, 2] / ww).clamp(max=clamp), (deltas[:, 3] / wh).clamp(max=clamp)
    cx, cy = ax + dx * aw, ay + dy * ah
    w, h = aw * torch.exp(dw), ah * torch.exp(dh)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=1)


def match_anchors(anchors: torch.Tensor, gt: torch.Tensor, positive: float = 0.5, negative: float = 0.4
                  ) -> torch.Tensor:
    """Per anchor: the index of its ground-truth box, -1 background, -2 ignored (IoU between
    the thresholds). Each box also keeps its best anchor (so small boxes get one)."""
    matched = torch.full((anchors.shape[0],), -1, dtype=torch.int64, device=anchors.device)
    if gt.numel() == 0:
        return matched
    iou = box_iou(gt, anchors)  # (G, A)
    best, idx = iou.max(dim=0)
    matched = torch.where(best >= positive, idx, torch.where(best >= negative, torch.full_like(idx, -2),
                                                             torch.full_like(idx, -1)))
    best_anchor = iou.argmax(dim=1)
    matched[best_anchor] = torch.arange(gt.shape[0], device=gt.device)
    return matched


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
                       ) -> torch.Tensor:
    """Summed focal loss (Lin et al.)."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.sum()


def postprocess(boxes: torch.Tensor, scores: torch.Tensor, size: Tuple[int, int],
                score_thresh: float = SCORE_THRESH, nms_thresh: float = NMS_THRESH,
                max_detections: int = MAX_DETECTIONS) -> Dict[str, torch.Tensor]:
    """One image: ``boxes`` (A, 4) xyxy, ``scores`` (A, C) per foreground class → the output
    dict (labels 1..C), clipped to the image, per-class NMS."""
    h, w = size
    num_classes = scores.shape[1]
    flat = scores.reshape(-1)
    keep = flat > score_thresh
    idx = torch.nonzero(keep).squeeze(1)
    vals = flat[idx]
    if vals.numel() > PRE_NMS_TOP:
        vals, order = vals.topk(PRE_NMS_TOP)
        idx = idx[order]
    anchor_idx = torch.div(idx, num_classes, rounding_mode="floor")
    labels = idx % num_classes + 1
    b = boxes[anchor_idx]
    b = torch.stack([b[:, 0].clamp(0, w), b[:, 1].clamp(0, h), b[:, 2].clamp(0, w), b[:, 3].clamp(0, h)], dim=1)
    ok = (b[:, 2] - b[:, 0] > 1e-2) & (b[:, 3] - b[:, 1] > 1e-2)
    b, vals, labels = b[ok], vals[ok], labels[ok]
    kept = batched_nms(b, vals, labels, nms_thresh)[:max_detections]
    return {"boxes": b[kept].float(), "scores": vals[kept].float(), "labels": labels[kept].to(torch.int64)}


def empty_detections(device, masks_size: Optional[Sequence[int]] = None) -> Dict[str, torch.Tensor]:
    out = {"boxes": torch.zeros((0, 4), device=device), "scores": torch.zeros((0,), device=device),
           "labels": torch.zeros((0,), dtype=torch.int64, device=device)}
    if masks_size is not None:
        out["masks"] = torch.zeros((0, *masks_size), device=device)
    return out


class ConvBN(nn.Sequential):
    """conv → batch norm (or group norm: maps down to 1 x 1 train with any batch size) →
    activation (LeakyReLU 0.1 for YOLO, ReLU otherwise), optional dropout."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, leaky: bool = False,
                 drop: float = 0.0, group_norm: bool = False):
        norm = nn.GroupNorm(32 if cout % 32 == 0 else 1, cout) if group_norm else nn.BatchNorm2d(cout)
        layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), norm,
                  nn.LeakyReLU(0.1, inplace=True) if leaky else nn.ReLU(inplace=True)]
        if drop > 0:
            layers.append(nn.Dropout(drop))
        super().__init__(*layers)
