"""YOLOv3 (arcgis.learn's YOLOv3) on a registry backbone (DARKNET53 by default).

- Neck and heads as in YOLOv3: the three deepest backbone maps (strides 8, 16, 32), each
  level a five-conv block (512, 256, 128 channels) fed by the deeper level upsampled, a
  3x3 conv and a 1x1 output of 3 anchors x (4 box + 1 objectness + C classes); conv →
  batch norm → LeakyReLU(0.1).
- ``anchors``: 9 (width, height) pairs in pixels, smallest first: 3 per level, the
  smallest on the finest level.
- Loss (summed, divided by the batch size): every object is assigned to its cell on the
  level of its best-fitting anchor by shape (and to any other anchor fitting with IoU > 0.5):
  centre offsets by sigmoid cross-entropy, log width/height by squared error (both weighted
  2 - box area share), objectness by sigmoid cross-entropy on every cell except predictions
  already overlapping an object (IoU > 0.5, ignored), classes by sigmoid cross-entropy.
- Detections: score = objectness x class probability.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import box_iou

from .det_base import ConvBN, Detector, encoder_features, no_autocast, postprocess

WIDTHS = (128, 256, 512)  # block widths of the stride 8, 16, 32 levels
ASSIGN_IOU = 0.5  # extra anchors an object is assigned to (shape IoU)
IGNORE_IOU = 0.5  # predictions overlapping an object this much are not trained as background
OBJ_BIAS = -4.6  # initial objectness ~1 %


def _block(cin: int, mid: int) -> nn.Sequential:
    return nn.Sequential(ConvBN(cin, mid, 1, leaky=True), ConvBN(mid, mid * 2, 3, leaky=True),
                         ConvBN(mid * 2, mid, 1, leaky=True), ConvBN(mid, mid * 2, 3, leaky=True),
                         ConvBN(mid * 2, mid, 1, leaky=True))


def init_output(conv: nn.Conv2d, num_fg: int) -> None:
    """An output conv (3 anchors x (4 + 1 + C)) that starts near zero, objectness and classes ~1 %."""
    nn.init.normal_(conv.weight, std=0.01)
    bias = conv.bias.data.view(3, 5 + num_fg)
    bias.zero_()
    bias[:, 4] = OBJ_BIAS
    bias[:, 5:] = OBJ_BIAS


class YOLOBase(Detector):
    """YOLOv3's loss, box decoding and detections over three output levels; subclasses give the
    network (``_raw``). ``anchors``: 9 (width, height) pixel pairs, anchor k on level k // 3
    (finest first): the order arcgis.learn's ANCH_MASK gives them too."""

    def __init__(self, num_classes: int, anchors: Sequence[Sequence[float]]):
        super().__init__()
        self.num_fg = max(int(num_classes) - 1, 1)
        self.register_buffer("anchor_wh", torch.tensor([[float(w), float(h)] for w, h in anchors],
                                                       dtype=torch.float32), persistent=False)

    def _raw(self, images: torch.Tensor) -> List[torch.Tensor]:
        """Per level (finest first): (N, 3, H, W, 5 + C) float32 outputs."""
        raise NotImplementedError

    def _decode(self, out: torch.Tensor, level: int, height: int, width: int) -> torch.Tensor:
        """(N, 3, H, W, 4) xyxy boxes in pixels of one level's outputs."""
        _, _, h, w, _ = out.shape
        sy, sx = height / h, width / w
        gy, gx = torch.meshgrid(torch.arange(h, device=out.device, dtype=torch.float32),
                                torch.arange(w, device=out.device, dtype=torch.float32), indexing="ij")
        cx = (torch.sigmoid(out[..., 0]) + gx) * sx
        cy = (torch.sigmoid(out[..., 1]) + gy) * sy
        anchors = self.anchor_wh[3 * level:3 * level + 3].view(1, 3, 1, 1, 2)
        wh = torch.exp(out[..., 2:4].clamp(max=6.0)) * anchors
        return torch.stack([cx - wh[..., 0] / 2, cy - wh[..., 1] / 2, cx + wh[..., 0] / 2, cy + wh[..., 1] / 2], -1)

    # ---- the Detector contract --------------------------------------------------------------

    def losses(self, images, targets) -> Dict[str, torch.Tensor]:
        outs = self._raw(images)
        height, width = images.shape[-2:]
        n = images.shape[0]
        with no_autocast(images.device.type):
            box_loss = outs[0].new_zeros(())
            obj_loss = outs[0].new_zeros(())
            cls_loss = outs[0].new_zeros(())
            assigned = self._assign(outs, targets, height, width)
            for level, out in enumerate(outs):
                obj_target = torch.zeros(out.shape[:4], device=out.device)
                weight = torch.ones_like(obj_target)
                with torch.no_grad():  # predictions that already cover an object: not background
                    boxes = self._decode(out.detach(), level, height, width)
                    for b, t in enumerate(targets):
                        if t["boxes"].numel():
                            best = box_iou(boxes[b].reshape(-1, 4), t["boxes"].float()).max(1).values
                            weight[b].view(-1)[best > IGNORE_IOU] = 0.0
                b, a, gj, gi, txy, twh, scale, labels = assigned[level]
                if b.numel():
                    p = out[b, a, gj, gi]
                    weight[b, a, gj, gi] = 1.0
                    obj_target[b, a, gj, gi] = 1.0
                    box_loss = box_loss + (scale[:, None] * F.binary_cross_entropy_with_logits(
                        p[:, 0:2], txy, reduction="none")).sum()
                    box_loss = box_loss + (0.5 * scale[:, None] * (p[:, 2:4] - twh) ** 2).sum()
                    onehot = torch.zeros_like(p[:, 5:])
                    onehot[torch.arange(len(labels), device=p.device), labels - 1] = 1.0
                    cls_loss = cls_loss + F.binary_cross_entropy_with_logits(p[:, 5:], onehot, reduction="sum")
                obj_loss = obj_loss + (weight * F.binary_cross_entropy_with_logits(
                    out[..., 4], obj_target, reduction="none")).sum()
        return {"loss_box": box_loss / n, "loss_objectness": obj_loss / n, "loss_classifier": cls_loss / n}

    def _assign(self, outs, targets, height: int, width: int):
        """Per level: (image, anchor, row, column, centre targets, size targets, weight, labels)."""
        device = outs[0].device
        per_level = [[[] for _ in range(8)] for _ in outs]
        for b, t in enumerate(targets):
            boxes, labels = t["boxes"].float(), t["labels"]
            if boxes.numel() == 0:
                continue
            wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-3)
            cxy = (boxes[:, :2] + boxes[:, 2:]) / 2
            inter = torch.min(wh[:, None], self.anchor_wh[None]).prod(-1)
            iou = inter / (wh.prod(-1)[:, None] + self.anchor_wh.prod(-1)[None] - inter)  # (G, 9)
            chosen = iou > ASSIGN_IOU
            chosen[torch.arange(len(boxes), device=device), iou.argmax(1)] = True
            g_idx, k_idx = torch.nonzero(chosen, as_tuple=True)
            for g, k in zip(g_idx.tolist(), k_idx.tolist()):
                level, a = divmod(k, 3)
                if level >= len(outs):
                    continue
                _, _, h, w, _ = outs[level].shape
                sx, sy = width / w, height / h
                gx, gy = float(cxy[g, 0]) / sx, float(cxy[g, 1]) / sy
                gi, gj = min(max(int(gx), 0), w - 1), min(max(int(gy), 0), h - 1)
                row = per_level[level]
                row[0].append(b)
                row[1].append(a)
                row[2].append(gj)
                row[3].append(gi)
                row[4].append([min(max(gx - gi, 0.0), 1.0), min(max(gy - gj, 0.0), 1.0)])
                row[5].append(torch.log(wh[g] / self.anchor_wh[k]))
                row[6].append(2.0 - float(wh[g].prod()) / float(height * width))
                row[7].append(int(labels[g]))
        out = []
        for row in per_level:
            if not row[0]:
                empty = torch.zeros(0, dtype=torch.int64, device=device)
                out.append((empty, empty, empty, empty, torch.zeros((0, 2), device=device),
                            torch.zeros((0, 2), device=device), torch.zeros(0, device=device), empty))
                continue
            ints = [torch.tensor(v, dtype=torch.int64, device=device) for v in row[:4]]
            out.append((*ints, torch.tensor(row[4], dtype=torch.float32, device=device), torch.stack(row[5]),
                        torch.tensor(row[6], dtype=torch.float32, device=device),
                        torch.tensor(row[7], dtype=torch.int64, device=device)))
        return out

    def detect(self, images) -> List[Dict[str, torch.Tensor]]:
        outs = self._raw(images)
        height, width = images.shape[-2:]
        results = []
        with no_autocast(images.device.type):
            boxes = torch.cat([self._decode(o, lvl, height, width).reshape(o.shape[0], -1, 4)
                               for lvl, o in enumerate(outs)], 1)
            scores = torch.cat([(torch.sigmoid(o[..., 4:5]) * torch.sigmoid(o[..., 5:])).reshape(o.shape[0], -1,
                                                                                                 self.num_fg)
                                for o in outs], 1)
            for i in range(images.shape[0]):
                results.append(postprocess(boxes[i], scores[i], (height, width), self.score_thresh,
                                           self.nms_thresh, self.max_detections))
        return results


class YOLOv3(YOLOBase):
    """Our own YOLOv3: any registry encoder, neck and heads as in the module doc."""

    def __init__(self, encoder, num_classes: int, anchors: Sequence[Sequence[float]]):
        super().__init__(num_classes, anchors)
        self.encoder = encoder.model
        self.nhwc = bool(encoder.nhwc)
        c3, c4, c5 = [int(c) for c in list(encoder.channels)[-3:]] if len(encoder.channels) >= 3 else \
            [int(encoder.channels[-1])] * 3
        w3, w4, w5 = WIDTHS
        out = 3 * (5 + self.num_fg)
        self.block5 = _block(c5, w5)
        self.head5 = nn.Sequential(ConvBN(w5, w5 * 2, 3, leaky=True), nn.Conv2d(w5 * 2, out, 1))
        self.up5 = ConvBN(w5, w4, 1, leaky=True)
        self.block4 = _block(w4 + c4, w4)
        self.head4 = nn.Sequential(ConvBN(w4, w4 * 2, 3, leaky=True), nn.Conv2d(w4 * 2, out, 1))
        self.up4 = ConvBN(w4, w3, 1, leaky=True)
        self.block3 = _block(w3 + c3, w3)
        self.head3 = nn.Sequential(ConvBN(w3, w3 * 2, 3, leaky=True), nn.Conv2d(w3 * 2, out, 1))
        for head in (self.head3, self.head4, self.head5):
            init_output(head[-1], self.num_fg)

    def _raw(self, images: torch.Tensor) -> List[torch.Tensor]:
        """Per level (finest first): (N, 3, H, W, 5 + C) float32 outputs."""
        feats = encoder_features(self.encoder, self.nhwc, images)
        f3, f4, f5 = (feats[-3:] if len(feats) >= 3 else [feats[-1]] * 3)
        x5 = self.block5(f5)
        x4 = self.block4(torch.cat([F.interpolate(self.up5(x5), size=f4.shape[-2:]), f4], 1))
        x3 = self.block3(torch.cat([F.interpolate(self.up4(x4), size=f3.shape[-2:]), f3], 1))
        outs = []
        for x, head in ((x3, self.head3), (x4, self.head4), (x5, self.head5)):
            y = head(x).float()
            n, _, h, w = y.shape
            outs.append(y.view(n, 3, 5 + self.num_fg, h, w).permute(0, 1, 3, 4, 2).contiguous())
        return outs
