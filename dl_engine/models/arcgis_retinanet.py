"""arcgis.learn's RetinaNet network (its ``RetinaNetModel``, after fastai's RetinaNet notebook),
written for torch alone so that its state dict has arcgis.learn 2.4.4's names and shapes
("encoder.4.0.conv1.weight", "c5top5.weight", "classifier.0.2.running_mean", …): a package we
train loads in arcgis.learn (``RetinaNet.from_model``) and one arcgis.learn trained loads here.

Layout, for a ResNet body (checked against arcgis.learn: tests/data/arcgis_layouts/retinanet_*):
  encoder        the body: conv1, bn1, relu, maxpool, layer1..layer4 (keys 0..7)
  c5top5         1x1 conv C5 -> P5;  c5top6: 3x3 stride-2 conv C5 -> P6;  p6top7: ReLU, 3x3 stride 2
  merges.0 / .1  a 1x1 lateral conv of C4 / C3, resized (nearest) to twice the coarser level and
                 added to it upsampled x2 (so P4 = 2 x P5 in size, P3 = 4 x P5, whatever the chip)
  smoothers.0-2  3x3 convs on P3, P4, P5
  classifier, box_regressor: shared over P3..P7, four (3x3 conv with bias, ReLU, BatchNorm) then
                 a 3x3 conv to anchors x classes (foreground only, sigmoid) / anchors x 4
All convolutions have a bias.

Anchors and boxes are arcgis.learn's: coordinates (y, x) scaled to [-1, 1] over the chip, anchors
(centre y, centre x, height, width) on each level's cell centres, per cell ``ratios`` (outer) x
``scales`` (inner) of size 4 x scale x cell x (sqrt(ratio), 1/sqrt(ratio)). Training targets are
(dy, dx, log dh, log dw) / (0.1, 0.1, 0.2, 0.2) and the loss is arcgis.learn's RetinaNetFocalLoss
(smooth L1 on matched anchors: IoU above 0.5; focal loss, gamma 2, background weighted 0.25 and
objects 0.75, on all but the ignored anchors: IoU 0.4 to 0.5; divided by the matches). One
difference: a chip without objects trains every anchor as background (arcgis.learn skips it).

Detections are what ArcGIS Pro's ArcGISObjectDetector gets from such a package (arcgis.learn's
``get_predictions``): sigmoid scores, one label per anchor (its best class), kept above the
threshold, boxes clipped to the chip, then non-maximum suppression over all classes together.
Pro decodes a box's *size* from the centre outputs (``sizes = anchor size x exp(0.1 x (dy, dx))``,
as fastai's notebook does): the trained size outputs are not used. It is kept here on purpose, so
that a package gives the same boxes in QGIS and in ArcGIS Pro.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .arcgis_unet import body_channels, resnet_body
from .det_base import Detector, PRE_NMS_TOP, empty_detections, no_autocast

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
CHANNELS = 256
FINAL_BIAS = -4.0
BOX_SCALE = (0.1, 0.1, 0.2, 0.2)  # arcgis.learn's division of the box targets
MATCH_IOU, BACKGROUND_IOU = 0.5, 0.4
FOCAL_GAMMA, FOCAL_ALPHA = 2.0, 0.25


def supports(backbone_name: str) -> bool:
    """Whether arcgis.learn's layout is built for this backbone (emd name; torchvision's ResNets)."""
    return str(backbone_name).lower() in RESNETS


def _conv(ni: int, nf: int, ks: int = 3, stride: int = 1) -> nn.Conv2d:
    """fastai's conv2d: bias, kaiming-normal weights, zero bias."""
    conv = nn.Conv2d(ni, nf, ks, stride=stride, padding=ks // 2, bias=True)
    nn.init.kaiming_normal_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class LateralMerge(nn.Module):
    """P(k) from P(k+1) and the body's C(k): keys ``conv_lat.*``."""

    def __init__(self, channels: int, lateral_in: int):
        super().__init__()
        self.conv_lat = _conv(lateral_in, channels, ks=1)

    def forward(self, coarse: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
        size = (coarse.shape[2] * 2, coarse.shape[3] * 2)
        return F.interpolate(self.conv_lat(lateral), size=size) + F.interpolate(coarse, scale_factor=2)


def head(outputs: int, final_bias: float, channels: int = CHANNELS, n_conv: int = 4) -> nn.Sequential:
    """arcgis.learn's _head_subnet: fastai conv_layers (conv, ReLU, BatchNorm), then the output conv.
    arcgis.learn zeroes that conv's weights (no gradient reaches the rest on the first step); here
    they start small, as in the RetinaNet paper (std 0.01), with its bias (-4 for the classes)."""
    layers: List[nn.Module] = [nn.Sequential(_conv(channels, channels), nn.ReLU(inplace=True),
                                             nn.BatchNorm2d(channels)) for _ in range(n_conv)]
    last = _conv(channels, outputs)
    with torch.no_grad():
        last.weight.normal_(0, 0.01)
        last.bias.fill_(final_bias)
    return nn.Sequential(*layers, last)


def run_head(subnet: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The head on one level. A 1 x 1 level of a one-chip batch has one value per channel, from
    which batch norm cannot take statistics: it then uses its running ones (as in eval)."""
    for layer in subnet:
        if isinstance(layer, nn.Sequential) and layer[2].training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            conv, act, bn = layer
            x = F.batch_norm(act(conv(x)), bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        else:
            x = layer(x)
    return x


# ---- arcgis.learn's anchors and box coding ([-1, 1] coordinates, (y, x) first) --------------------

def cell_centres(h: int, w: int) -> torch.Tensor:
    """(h * w, 2) cell centres (y, x) in [-1, 1], row by row (arcgis.learn's create_grid)."""
    ys = torch.linspace(-1 + 1 / h, 1 - 1 / h, h) if h > 1 else torch.tensor([0.0])
    xs = torch.linspace(-1 + 1 / w, 1 - 1 / w, w) if w > 1 else torch.tensor([0.0])
    grid = torch.empty((h, w, 2))
    grid[:, :, 0] = torch.outer(ys, torch.ones(w))
    grid[:, :, 1] = torch.outer(torch.ones(h), xs)
    return grid.view(-1, 2)


def make_anchors(sizes: Sequence[Tuple[int, int]], ratios: Sequence[float], scales: Sequence[float]) -> torch.Tensor:
    """(A, 4) anchors (cy, cx, h, w) for levels of ``sizes`` (h, w), in the order of the head
    outputs: level, row, column, ratio, scale."""
    aspects = torch.tensor([[[s * math.sqrt(r), s * math.sqrt(1 / r)] for s in scales] for r in ratios]).view(-1, 2)
    out = []
    for h, w in sizes:
        sized = 4 * (aspects * torch.tensor([2 / h, 2 / w])).unsqueeze(0)
        grid = cell_centres(h, w).unsqueeze(1)
        n, a = grid.size(0), aspects.size(0)
        out.append(torch.cat([grid.expand(n, a, 2), sized.expand(n, a, 2)], 2).view(-1, 4))
    return torch.cat(out, 0)


def cthw_to_tlbr(boxes: torch.Tensor) -> torch.Tensor:
    return torch.cat([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], 1)


def tlbr_to_cthw(boxes: torch.Tensor) -> torch.Tensor:
    return torch.cat([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], 1)


def iou_cthw(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(len(a), len(b)) IoU of centre/size boxes."""
    ta, tb = cthw_to_tlbr(a), cthw_to_tlbr(b)
    lo = torch.max(ta[:, None, :2], tb[None, :, :2])
    hi = torch.min(ta[:, None, 2:], tb[None, :, 2:])
    inter = (hi - lo).clamp(min=0).prod(-1)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return inter / (union + 1e-8)


def greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, overlap: float) -> torch.Tensor:
    """Indices kept by arcgis.learn's own NMS on cthw boxes, over all classes: its sort of the
    scores and its IoU, so that boxes of equal scores (a saturated sigmoid gives many 1.0) are
    kept as Pro keeps them."""
    order = scores.argsort(descending=True)
    boxes = boxes[order]
    rest = torch.arange(len(order), device=boxes.device)
    keep = []
    while len(rest):
        keep.append(rest[0])
        rest = rest[iou_cthw(boxes[rest], boxes[rest[:1]])[:, 0] <= overlap]
    return order[torch.stack(keep)] if keep else order[:0]


def encode(boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Training targets of cthw ``boxes`` on ``anchors`` (arcgis.learn's bbox_to_activ)."""
    centres = (boxes[:, :2] - anchors[:, :2]) / anchors[:, 2:]
    sizes = torch.log(boxes[:, 2:] / anchors[:, 2:] + 1e-8)
    return torch.cat([centres, sizes], 1) / boxes.new_tensor([BOX_SCALE])


def decode(acts: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """cthw boxes from the box outputs as arcgis.learn's activ_to_bbox (what Pro runs) decodes
    them: the size from the centre outputs (see the module doc)."""
    acts = acts * acts.new_tensor([BOX_SCALE])
    centres = anchors[:, 2:] * acts[:, :2] + anchors[:, :2]
    sizes = anchors[:, 2:] * torch.exp(acts[:, :2])
    return torch.cat([centres, sizes], 1)


def to_pixels(tlbr: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[-1, 1] (y0, x0, y1, x1) -> chip pixels (x0, y0, x1, y1)."""
    scale = tlbr.new_tensor([w, h, w, h]) / 2
    return (tlbr[:, [1, 0, 3, 2]] + 1) * scale


def to_unit(xyxy: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Chip pixels (x0, y0, x1, y1) -> [-1, 1] (y0, x0, y1, x1)."""
    scale = xyxy.new_tensor([h, w, h, w]) / 2
    return xyxy[:, [1, 0, 3, 2]] / scale - 1


# ---- the network --------------------------------------------------------------------------------

class ArcgisRetinaNet(Detector):
    """arcgis.learn's RetinaNetModel on a ResNet ``body`` (``encoder``), with the Detector contract:
    ``losses`` (arcgis.learn's focal loss) and ``detect`` (Pro's post-processing)."""

    takes_thresholds = True  # detect applies the tool's threshold and NMS overlap (detection.predict_as_pro)

    def __init__(self, body: nn.Sequential, channels: Sequence[int], num_classes: int, scales: Sequence[float],
                 ratios: Sequence[float]):
        super().__init__()
        self.n_classes = max(int(num_classes) - 1, 1)  # foreground classes: no background output
        self.scales = [float(s) for s in scales]
        self.ratios = [float(r) for r in ratios]
        n_anchors = len(self.scales) * len(self.ratios)
        c3, c4, c5 = (int(c) for c in channels[-3:])
        self.encoder = body
        self.c5top5 = _conv(c5, CHANNELS, ks=1)
        self.c5top6 = _conv(c5, CHANNELS, stride=2)
        self.p6top7 = nn.Sequential(nn.ReLU(), _conv(CHANNELS, CHANNELS, stride=2))
        self.merges = nn.ModuleList([LateralMerge(CHANNELS, c4), LateralMerge(CHANNELS, c3)])
        self.smoothers = nn.ModuleList([_conv(CHANNELS, CHANNELS) for _ in range(3)])
        self.classifier = head(self.n_classes * n_anchors, FINAL_BIAS)
        self.box_regressor = head(4 * n_anchors, 0.0)

    def levels(self, x: torch.Tensor) -> List[torch.Tensor]:
        """P3..P7."""
        feats = []
        h = x
        for layer in self.encoder:
            h = layer(h)
            feats.append(h)
        c3, c4, c5 = feats[-3], feats[-2], feats[-1]
        p6 = self.c5top6(c5)
        p = [self.c5top5(c5), p6, self.p6top7(p6)]
        p = [self.merges[0](p[0], c4)] + p
        p = [self.merges[1](p[0], c3)] + p
        for i, smooth in enumerate(self.smoothers):
            p[i] = smooth(p[i])
        return p

    def raw(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, List[Tuple[int, int]]]:
        """(class logits (N, A, K), box outputs (N, A, 4), level sizes) in float32: arcgis.learn's
        forward."""
        p = self.levels(x)
        n = x.shape[0]
        cls = torch.cat([run_head(self.classifier, q).permute(0, 2, 3, 1).reshape(n, -1, self.n_classes)
                         for q in p], 1)
        box = torch.cat([run_head(self.box_regressor, q).permute(0, 2, 3, 1).reshape(n, -1, 4) for q in p], 1)
        return cls.float(), box.float(), [(int(q.shape[2]), int(q.shape[3])) for q in p]

    def forward(self, images, targets=None, threshold: Optional[float] = None, nms_overlap: Optional[float] = None):
        if targets is not None:
            return self.losses(images, targets)
        return self.detect(images, threshold, nms_overlap)

    def anchors(self, sizes, device) -> torch.Tensor:
        return make_anchors(sizes, self.ratios, self.scales).to(device)

    # ---- the Detector contract ------------------------------------------------------------------

    def losses(self, images, targets) -> Dict[str, torch.Tensor]:
        cls, box, sizes = self.raw(images)
        h, w = images.shape[-2:]
        with no_autocast(images.device.type):
            anchors = self.anchors(sizes, images.device)
            box_loss, cls_loss = box.new_zeros(()), box.new_zeros(())
            for i, t in enumerate(targets):
                gt = tlbr_to_cthw(to_unit(t["boxes"].float().reshape(-1, 4), h, w))
                matches = torch.full((anchors.shape[0],), -1, dtype=torch.int64, device=anchors.device)
                if len(gt):
                    best, idx = iou_cthw(anchors, gt).max(1)
                    matches = torch.where(best > MATCH_IOU, idx, torch.where(best < BACKGROUND_IOU, -1, -2))
                pos = matches >= 0
                if pos.any():
                    box_loss = box_loss + F.smooth_l1_loss(box[i][pos], encode(gt[matches[pos]], anchors[pos]))
                valid = matches >= -1
                target = torch.zeros_like(cls[i])
                target[pos, t["labels"][matches[pos]] - 1] = 1.0
                logits, target = cls[i][valid], target[valid]
                p = torch.sigmoid(logits)
                weights = (target * (1 - p) + (1 - target) * p).pow(FOCAL_GAMMA)
                weights = weights * ((1 - target) * FOCAL_ALPHA + target * (1 - FOCAL_ALPHA))
                focal = F.binary_cross_entropy_with_logits(logits, target, weights.detach(), reduction="sum")
                cls_loss = cls_loss + focal / pos.sum().clamp(min=1)
            n = max(len(targets), 1)
        return {"loss_box": box_loss / n, "loss_classifier": cls_loss / n}

    def detect(self, images, threshold: Optional[float] = None, nms_overlap: Optional[float] = None
               ) -> List[Dict[str, torch.Tensor]]:
        """Pro's detections: above ``threshold`` (default score_thresh), suppressed over all classes
        at ``nms_overlap`` (default nms_thresh). Without a threshold given, at most max_detections
        per chip, the best PRE_NMS_TOP candidates entering suppression."""
        given = threshold is not None
        thresh = float(threshold) if given else self.score_thresh
        overlap = float(nms_overlap) if nms_overlap is not None else self.nms_thresh
        cls, box, sizes = self.raw(images)
        h, w = images.shape[-2:]
        out = []
        with no_autocast(images.device.type):
            anchors = self.anchors(sizes, images.device)
            for i in range(images.shape[0]):
                scores, labels = torch.sigmoid(cls[i]).max(1)
                keep = scores > thresh
                if not given and int(keep.sum()) > PRE_NMS_TOP:
                    keep = keep & (scores >= scores[keep].topk(PRE_NMS_TOP).values[-1])
                boxes = decode(box[i][keep], anchors[keep])
                scores, labels = scores[keep], labels[keep]
                cthw = tlbr_to_cthw(cthw_to_tlbr(boxes).clamp(-1, 1))
                nonzero = cthw[:, 2] * cthw[:, 3] != 0
                cthw, scores, labels = cthw[nonzero], scores[nonzero], labels[nonzero]
                if not len(scores):
                    out.append(empty_detections(images.device))
                    continue
                kept = greedy_nms(cthw, scores, overlap)
                if not given:
                    kept = kept[:self.max_detections]
                out.append({"boxes": to_pixels(cthw_to_tlbr(cthw[kept]), h, w), "scores": scores[kept],
                            "labels": labels[kept].to(torch.int64) + 1})
        return out


def build(encoder, num_classes: int, scales: Sequence[float], ratios: Sequence[float]) -> ArcgisRetinaNet:
    """The network over a ``backbones.Encoder`` of a torchvision ResNet (``supports``)."""
    if not supports(encoder.name):
        raise ValueError(f"arcgis.learn's RetinaNet layout is built for {', '.join(RESNETS)}, not {encoder.name}")
    body = resnet_body(encoder.model)
    return ArcgisRetinaNet(body, body_channels(body, 0), num_classes, scales, ratios)
