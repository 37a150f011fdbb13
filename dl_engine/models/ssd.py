"""Single Shot Detector in the form arcgis.learn's SingleShotDetector gives it (its
``_DynamicSSD``): anchors on one or more square grids laid over the chip, several zooms and
aspect ratios per grid cell, sigmoid class scores without a background class.

- The deepest backbone map goes through a 3x3 conv (256 channels); each grid (largest
  first) takes the previous level through stride-2 convs until it is about the grid's size,
  then exactly grid x grid cells (adaptive pooling, so any tile size works at inference).
  These convs use group norm, not arcgis.learn's batch norm: a 1 x 1 grid then trains with
  any batch size.
- Per cell: len(zooms) x len(ratios) anchors; an anchor of grid g, zoom z, ratio [a, b] is
  z·a/g of the chip wide and z·b/g high, centred on its cell.
- Loss: boxes (smooth L1 on the usual center/size offsets) of anchors matched to an object
  (IoU ≥ 0.5, and every object's best anchor) plus the class scores of every anchor but
  the ignored ones (IoU 0.4..0.5): sigmoid cross-entropy or, with focal_loss, focal loss;
  both divided by the number of matched anchors. ``location_loss_factor`` f weighs them
  f : (1 - f); by default 1 : 1. Chips without objects train every anchor as background.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .det_base import (ConvBN, Detector, decode_boxes, encode_boxes, encoder_features, match_anchors, no_autocast,
                       postprocess, sigmoid_focal_loss)

WIDTH = 256


class SSD(Detector):
    def __init__(self, encoder, num_classes: int, chip_size: int, grids: Sequence[int], zooms: Sequence[float],
                 ratios: Sequence[Sequence[float]], drop: float = 0.3, bias: float = -4.0, focal_loss: bool = False,
                 location_loss_factor: Optional[float] = None):
        super().__init__()
        self.encoder = encoder.model
        self.nhwc = bool(encoder.nhwc)
        self.num_fg = max(int(num_classes) - 1, 1)  # foreground classes (index 0 = background)
        self.grids = sorted({int(g) for g in grids}, reverse=True)
        self.zooms = [float(z) for z in zooms]
        self.ratios = [(float(a), float(b)) for a, b in ratios]
        self.k = len(self.zooms) * len(self.ratios)
        self.focal = bool(focal_loss)
        self.loc_factor = location_loss_factor
        self.stem = ConvBN(int(encoder.channels[-1]), WIDTH, 3, 1, drop=drop, group_norm=True)
        size = max(1, math.ceil(int(chip_size) / max(int(encoder.reductions[-1]), 1)))
        downs = []
        for g in self.grids:  # stride-2 convs until the map is about the grid's size
            steps = []
            while size > g and math.ceil(size / 2) >= g:
                steps.append(ConvBN(WIDTH, WIDTH, 3, 2, drop=drop, group_norm=True))
                size = math.ceil(size / 2)
            downs.append(nn.Sequential(*steps))
        self.downs = nn.ModuleList(downs)
        self.cls_heads = nn.ModuleList(nn.Conv2d(WIDTH, self.k * self.num_fg, 3, padding=1) for _ in self.grids)
        self.box_heads = nn.ModuleList(nn.Conv2d(WIDTH, self.k * 4, 3, padding=1) for _ in self.grids)
        for head in self.cls_heads:
            nn.init.normal_(head.weight, std=0.01)
            nn.init.constant_(head.bias, float(bias))
        for head in self.box_heads:
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)

    # ---- network ----------------------------------------------------------------------------

    def _raw(self, images: torch.Tensor):
        """(class logits (N, A, C), box deltas (N, A, 4)) in float32."""
        x = self.stem(encoder_features(self.encoder, self.nhwc, images)[-1])
        cls, box = [], []
        for g, down, ch, bh in zip(self.grids, self.downs, self.cls_heads, self.box_heads):
            x = down(x)
            y = x
            if y.shape[-2:] != (g, g):
                y = F.adaptive_avg_pool2d(y, g) if min(y.shape[-2:]) >= g else F.interpolate(y, size=(g, g))
            n = y.shape[0]
            cls.append(ch(y).permute(0, 2, 3, 1).reshape(n, -1, self.num_fg))
            box.append(bh(y).permute(0, 2, 3, 1).reshape(n, -1, 4))
        return torch.cat(cls, 1).float(), torch.cat(box, 1).float()

    def anchors(self, height: int, width: int, device) -> torch.Tensor:
        """(A, 4) xyxy in pixels, in the order of the head outputs (grid, row, column, zoom x ratio)."""
        out = []
        for g in self.grids:
            centers = (torch.arange(g, dtype=torch.float32, device=device) + 0.5) / g
            cy, cx = torch.meshgrid(centers * height, centers * width, indexing="ij")
            sizes = torch.tensor([[z * a / g * width, z * b / g * height] for z in self.zooms for a, b in self.ratios],
                                 dtype=torch.float32, device=device)  # (k, 2) width, height
            c = torch.stack([cx, cy], -1).reshape(-1, 1, 2)
            half = sizes.reshape(1, -1, 2) / 2
            out.append(torch.cat([c - half, c + half], -1).reshape(-1, 4))
        return torch.cat(out, 0)

    # ---- the Detector contract --------------------------------------------------------------

    def losses(self, images, targets) -> Dict[str, torch.Tensor]:
        cls, box = self._raw(images)
        with no_autocast(images.device.type):
            anchors = self.anchors(images.shape[-2], images.shape[-1], images.device)
            cls_loss = box.new_zeros(())
            box_loss = box.new_zeros(())
            positives = 0
            for i, t in enumerate(targets):
                gt, labels = t["boxes"].float(), t["labels"]
                matched = match_anchors(anchors, gt)
                pos = matched >= 0
                valid = matched != -2
                target = torch.zeros_like(cls[i])
                if pos.any():
                    target[pos, labels[matched[pos]] - 1] = 1.0
                    deltas = encode_boxes(gt[matched[pos]], anchors[pos])
                    box_loss = box_loss + F.smooth_l1_loss(box[i][pos], deltas, beta=1 / 9, reduction="sum")
                    positives += int(pos.sum())
                if self.focal:
                    cls_loss = cls_loss + sigmoid_focal_loss(cls[i][valid], target[valid])
                else:
                    cls_loss = cls_loss + F.binary_cross_entropy_with_logits(cls[i][valid], target[valid],
                                                                             reduction="sum")
            norm = float(max(positives, 1))
            box_loss, cls_loss = box_loss / norm, cls_loss / norm
            if self.loc_factor is not None:
                f = float(self.loc_factor)
                box_loss, cls_loss = 2 * f * box_loss, 2 * (1 - f) * cls_loss
        return {"loss_box": box_loss, "loss_classifier": cls_loss}

    def detect(self, images) -> List[Dict[str, torch.Tensor]]:
        cls, box = self._raw(images)
        h, w = images.shape[-2:]
        out = []
        with no_autocast(images.device.type):
            anchors = self.anchors(h, w, images.device)
            for i in range(images.shape[0]):
                boxes = decode_boxes(box[i], anchors)
                out.append(postprocess(boxes, torch.sigmoid(cls[i]), (h, w), self.score_thresh, self.nms_thresh,
                                       self.max_detections))
        return out
