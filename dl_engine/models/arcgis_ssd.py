"""arcgis.learn's SingleShotDetector network (SSDVersion 2: fastai's cnn_learner with arcgis.learn's
SSDHeadv2), written for torch alone so that its state dict has arcgis.learn 2.4.4's names and shapes
("0.4.0.conv1.weight", "1.sconvs.0.conv.weight", "1.oconvs.0.oconv1.weight", …): a package
arcgis.learn trained loads here (Detect Objects, PRETRAINED_MODEL) and predicts what Pro predicts.

Layout ("0" the body, "1" the head; checked against arcgis.learn: tests/data/arcgis_layouts/singleshotdetector_*):
  0   the ResNet body: conv1, bn1, relu, maxpool, layer1..layer4; without layer4 when the first grid
      is finer than 8 and differs from layer4's map by more than 4 cells (arcgis.learn's cut -3)
  1   dropout + ReLU on the body's map, ``sconvs.0`` (3x3 conv, ReLU, BatchNorm, dropout: 256
      channels), then per grid (in the order given) ``sconvs.i`` brings the map to grid x grid cells
      (a 3x3 conv of stride 1 or 2, padding 0 or 1, that lands exactly on it; a kernel as large as
      the map for a 1 x 1 grid; else a nearest upsampling to the grid and a 3x3 conv) and
      ``oconvs.i`` gives per cell and anchor the class outputs (background first: K + 1) and 4 box
      outputs. All convolutions have a bias.
Anchors are arcgis.learn's: (y, x) centres of the cells in 0..1, per cell zoom x ratio (outer, inner)
of size zoom x ratio / grid. Boxes decode as centre + tanh(out) / 2 x cell, size x (1 + tanh(out) / 2).

Detections are those of Pro's ArcGISObjectDetector (``_DynamicSSD``: util.get_nms_preds): per
class, sigmoid scores above the threshold, arcgis.learn's NMS on its 50 best, boxes kept when their
bottom edge is below the chip's top. Training is arcgis.learn's loss: each object takes its best
anchor and every anchor whose best IoU with it is above 0.4; L1 on those anchors' corners (0..1)
plus sigmoid cross-entropy (or focal loss, gamma 1, alpha 0.25) of the foreground outputs over all
anchors divided by the class count, summed over the batch; ``location_loss_factor`` f weighs them
f : (1 - f). One difference: a chip without objects trains every anchor as background (arcgis.learn
skips it).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .arcgis_unet import body_channels, body_sizes, resnet_body
from .det_base import Detector, empty_detections, no_autocast

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
WIDTH = 256
TOP_K = 50  # candidates per class entering NMS (Pro's get_nms_preds)


def supports(backbone_name: str) -> bool:
    return str(backbone_name).lower() in RESNETS


def conv_params(in_size: int, out_size: int) -> Tuple[Optional[int], Optional[int], Optional[int]]:
    """(stride, padding, kernel) of a conv taking an in_size map to out_size (arcgis.learn's
    conv_paramsv2); (None, None, None) when none lands exactly."""
    if out_size == 1:
        return 1, 0, in_size
    for pad in (0, 1):
        for stride in (1, 2):
            if ((in_size - 3) + 2 * pad) // stride + 1 == out_size:
                return stride, pad, 3
    return None, None, None


class StdConv(nn.Module):
    """conv, ReLU, BatchNorm, dropout; ``upsample``: a nearest resize to ``size`` first. A training
    step with one value per channel (1 x 1 grid, one chip) uses the running statistics, where
    arcgis.learn's BatchNorm fails."""

    def __init__(self, nin: int, nout: int, size: int = 0, upsample: bool = False, kernel: int = 3, stride: int = 1,
                 padding: int = 1, drop: float = 0.1):
        super().__init__()
        self.upsample = upsample
        self.conv = nn.Conv2d(nin, nout, kernel, stride=stride, padding=padding)
        self.up = nn.Upsample(size)
        self.bn = nn.BatchNorm2d(nout)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = self.up(x)
        x = F.relu(self.conv(x))
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            # one value per channel (a 1 x 1 grid, a batch of one chip: BATCH_SIZE 1, a one-chip
            # training set) has no batch statistics: normalise with the running ones for that step
            bn = self.bn
            x = F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        else:
            x = self.bn(x)
        return self.drop(x)


class OutConv(nn.Module):
    def __init__(self, k: int, nin: int, num_classes: int, bias: float):
        super().__init__()
        self.k = k
        self.oconv1 = nn.Conv2d(nin, num_classes * k, 3, padding=1)
        self.oconv2 = nn.Conv2d(nin, 4 * k, 3, padding=1)
        with torch.no_grad():
            self.oconv1.bias.fill_(bias)

    def forward(self, x: torch.Tensor):
        n = x.shape[0]
        flat = lambda t: t.permute(0, 2, 3, 1).reshape(n, -1, t.shape[1] // self.k)  # noqa: E731
        return flat(self.oconv1(x)), flat(self.oconv2(x))


class SSDHead(nn.Module):
    def __init__(self, grids: Sequence[int], k: int, num_classes: int, num_features: int, num_channels: int,
                 drop: float, bias: float):
        super().__init__()
        self.drop = nn.Dropout(drop)
        self.sconvs = nn.ModuleList([StdConv(num_channels, WIDTH, drop=drop)])
        self.oconvs = nn.ModuleList()
        previous = num_features
        for n, g in enumerate(grids):  # the body's map may match the first grid; a grid equal to the last upsamples
            stride, pad, kernel = conv_params(previous, g) if previous > g or (n == 0 and previous == g) else \
                (None, None, None)
            upsample = stride is None
            if upsample:
                stride, pad, kernel = 1, 1, 3
            self.sconvs.append(StdConv(WIDTH, WIDTH, g, upsample, kernel, stride, pad, drop))
            self.oconvs.append(OutConv(k, WIDTH, num_classes, bias))
            previous = g

    def forward(self, x: torch.Tensor):
        x = self.sconvs[0](self.drop(F.relu(x)))
        classes, boxes = [], []
        for sconv, oconv in zip(self.sconvs[1:], self.oconvs):
            x = sconv(x)
            c, b = oconv(x)
            classes.append(c)
            boxes.append(b)
        return torch.cat(classes, 1), torch.cat(boxes, 1)


def make_anchors(grids: Sequence[int], zooms: Sequence[float], ratios: Sequence[Sequence[float]]
                 ) -> Tuple[torch.Tensor, torch.Tensor]:
    """(anchors (A, 4) centre (y, x) and size in 0..1, cell sizes (A, 1)) as arcgis.learn's
    _create_anchors computes them (float64, then float32)."""
    scales = [(z * i, z * j) for z in zooms for (i, j) in ratios]
    offsets = [1 / (g * 2) for g in grids]
    ys = np.concatenate([np.repeat(np.linspace(o, 1 - o, g), g) for o, g in zip(offsets, grids)])
    xs = np.concatenate([np.tile(np.linspace(o, 1 - o, g), g) for o, g in zip(offsets, grids)])
    centres = np.repeat(np.stack([ys, xs], axis=1), len(scales), axis=0)
    sizes = np.concatenate([np.array([[a / g, b / g] for _ in range(g * g) for a, b in scales]) for g in grids])
    cells = np.concatenate([np.array([1 / g for _ in range(g * g) for _ in scales]) for g in grids])
    return torch.Tensor(np.concatenate([centres, sizes], axis=1)).float(), torch.Tensor(cells).unsqueeze(1)


def to_corners(centres: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    return torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1)


def decode(acts: torch.Tensor, anchors: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """Corners (y0, x0, y1, x1) in 0..1 (arcgis.learn's actn_to_bb)."""
    t = torch.tanh(acts)
    return to_corners(t[:, :2] / 2 * cells + anchors[:, :2], (t[:, 2:] / 2 + 1) * anchors[:, 2:])


def jaccard(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    lo = torch.max(a[:, None, :2], b[None, :, :2])
    hi = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (hi - lo).clamp(min=0).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def top_k_nms(boxes: torch.Tensor, scores: torch.Tensor, overlap: float, top_k: int = TOP_K) -> torch.Tensor:
    """Indices kept by arcgis.learn's SSD NMS (its ascending sort, the ``top_k`` best, IoU <= overlap)."""
    idx = scores.sort(0)[1][-top_k:]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while idx.numel() > 0:
        i = idx[-1]
        keep.append(i)
        idx = idx[:-1]
        if not idx.numel():
            break
        lo = torch.max(boxes[idx, :2], boxes[i, :2])
        hi = torch.min(boxes[idx, 2:], boxes[i, 2:])
        inter = (hi - lo).clamp(min=0).prod(-1)
        iou = inter / ((area[idx] - inter) + area[i])
        idx = idx[iou.le(overlap)]
    return torch.stack(keep)


class ArcgisSSD(Detector):
    """arcgis.learn's SSD (SSDVersion 2) on a ResNet body, with the Detector contract."""

    takes_thresholds = True  # detect applies the tool's threshold and NMS overlap (detection.predict_as_pro)

    def __init__(self, body: nn.Sequential, head: SSDHead, num_classes: int, grids, zooms, ratios, focal_loss=False,
                 location_loss_factor=None):
        super().__init__()
        self.add_module("0", body)
        self.add_module("1", head)
        self.num_classes = int(num_classes)  # with the background output
        self.focal = bool(focal_loss)
        self.loc_factor = location_loss_factor
        anchors, cells = make_anchors(grids, zooms, ratios)
        self.register_buffer("anchors", anchors, persistent=False)
        self.register_buffer("cells", cells, persistent=False)

    @property
    def encoder(self) -> nn.Sequential:
        return self._modules["0"]

    def raw(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        cls, box = self._modules["1"](self._modules["0"](x))
        return cls.float(), box.float()

    def forward(self, images, targets=None, threshold: Optional[float] = None, nms_overlap: Optional[float] = None):
        if targets is not None:
            return self.losses(images, targets)
        return self.detect(images, threshold, nms_overlap)

    def losses(self, images, targets) -> Dict[str, torch.Tensor]:
        cls, box = self.raw(images)
        h, w = images.shape[-2:]
        with no_autocast(images.device.type):
            corners = to_corners(self.anchors[:, :2], self.anchors[:, 2:])
            loc, clas = box.new_zeros(()), box.new_zeros(())
            for i, t in enumerate(targets):
                gt = t["boxes"].float().reshape(-1, 4)[:, [1, 0, 3, 2]] / gt_scale(h, w, box)
                labels = torch.zeros(len(corners), dtype=torch.int64, device=box.device)
                if len(gt):
                    overlaps = jaccard(gt, corners)
                    best_anchor = overlaps.max(1)[1]
                    best, idx = overlaps.max(0)
                    best[best_anchor] = 1.99
                    idx[best_anchor] = torch.arange(len(gt), device=gt.device)
                    pos = best > 0.4
                    labels = torch.where(pos, t["labels"][idx], labels)
                    loc = loc + (decode(box[i][pos], self.anchors[pos], self.cells[pos]) - gt[idx[pos]]).abs().mean()
                target = F.one_hot(labels, self.num_classes)[:, 1:].float()
                logits = cls[i][:, 1:]
                weight = None
                if self.focal:
                    p = logits.sigmoid()
                    pt = p * target + (1 - p) * (1 - target)
                    weight = ((0.25 * target + 0.75 * (1 - target)) * (1 - pt)).detach()
                clas = clas + F.binary_cross_entropy_with_logits(logits, target, weight, reduction="sum") / \
                    (self.num_classes - 1)
            if self.loc_factor is not None:
                loc, clas = self.loc_factor * loc, (1 - self.loc_factor) * clas
        return {"loss_box": loc, "loss_classifier": clas}

    def detect(self, images, threshold: Optional[float] = None, nms_overlap: Optional[float] = None
               ) -> List[Dict[str, torch.Tensor]]:
        """Pro's detections (see the module doc), above ``threshold`` (default score_thresh), NMS at
        ``nms_overlap`` (default nms_thresh)."""
        thresh = float(threshold) if threshold is not None else self.score_thresh
        overlap = float(nms_overlap) if nms_overlap is not None else self.nms_thresh
        cls, box = self.raw(images)
        h, w = images.shape[-2:]
        out = []
        with no_autocast(images.device.type):
            for i in range(images.shape[0]):
                corners = decode(box[i], self.anchors, self.cells)
                conf = cls[i].sigmoid().t()
                boxes, scores, labels = [], [], []
                for c in range(1, len(conf)):
                    mask = conf[c] > thresh
                    if not mask.any():
                        continue
                    b, s = corners[mask], conf[c][mask]
                    kept = top_k_nms(b, s, overlap)
                    boxes.append(b[kept])
                    scores.append(s[kept])
                    labels.append(torch.full((len(kept),), c, dtype=torch.int64, device=b.device))
                if not boxes:
                    out.append(empty_detections(images.device))
                    continue
                b, s, lab = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
                keep = b[:, 2] > 0  # Pro's predictions(): the box's bottom below the chip's top
                b = b[keep][:, [1, 0, 3, 2]] * b.new_tensor([w, h, w, h])
                out.append({"boxes": b, "scores": s[keep], "labels": lab[keep]})
        return out


def gt_scale(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """Chip pixels (y0, x0, y1, x1) -> 0..1."""
    return like.new_tensor([h, w, h, w])


def build(encoder, num_classes: int, chip_size: int, grids: Sequence[int], zooms: Sequence[float],
          ratios: Sequence[Sequence[float]], drop: float = 0.3, bias: float = -4.0, focal_loss: bool = False,
          location_loss_factor: Optional[float] = None) -> ArcgisSSD:
    """arcgis.learn's SSD over a ``backbones.Encoder`` of a torchvision ResNet (``supports``);
    ``grids`` in arcgis.learn's order (the emd's Grids)."""
    if not supports(encoder.name):
        raise ValueError(f"arcgis.learn's SSD layout is built for {', '.join(RESNETS)}, not {encoder.name}")
    grids = [int(g) for g in grids]
    body = resnet_body(encoder.model)
    channels = body_channels(body, 0)
    sizes = body_sizes(int(chip_size))
    features, width = sizes[-1], channels[-1]
    if grids[0] > 8 and abs(features - grids[0]) > 4:  # arcgis.learn cuts the body after layer3
        body = nn.Sequential(*list(body)[:-1])
        features, width = sizes[-2], channels[-2]
    k = len(zooms) * len(ratios)
    head = SSDHead(grids, k, int(num_classes), features, width, drop, bias)
    return ArcgisSSD(body, head, num_classes, grids, [float(z) for z in zooms],
                     [[float(a), float(b)] for a, b in ratios], focal_loss, location_loss_factor)
