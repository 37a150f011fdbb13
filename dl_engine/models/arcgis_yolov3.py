"""arcgis.learn's YOLOv3 network (``YOLOv3_Model``, arcgis.learn 2.4.4), written for torch alone
so that its state dict has arcgis.learn's names, shapes and order ("module_list.0.conv.weight",
"module_list.2.module_list.0.1.batch_norm.running_var", …, "module_list.28.conv.bias"): a
package we train loads in arcgis.learn (``YOLOv3.from_model``), and one arcgis.learn trained
loads here. Checked against arcgis.learn (tests/data/arcgis_layouts/yolov3_*.json).

Layout (``module_list``, 29 entries; conv → batch norm → LeakyReLU 0.1 blocks named
conv/batch_norm/leaky; residual blocks hold pairs of 1x1 (half width) and 3x3 convs):
  0-10  Darknet-53: 32-ch stem, then per stage a stride-2 3x3 conv and 1, 2, 8, 8, 4 residual
        pairs (64 … 1024 ch); the outputs of 6 (stride 8) and 8 (stride 16) are kept
  11-14 two residual pairs without the shortcut, 1x1 to 512 (kept), 3x3, output 1x1 (stride 32)
  15-22 1x1 to 256, ×2 nearest upsample (16, no weights), joined with 8; 1x1, 3x3, one pair
        without shortcut, 1x1 to 256 (kept), 3x3, output (stride 16)
  23-28 1x1 to 128, upsample (24), joined with 6; 1x1, 3x3, two pairs without shortcut,
        output (stride 8)
Each output is a 1x1 conv with bias: 3 anchors x (x, y, w, h, objectness, C classes). Anchor k
of the 9 (pixels, ModelParameters.anchors, in the emd's order) belongs to the stride-8 output
for k = 0..2, stride 16 for 3..5 and stride 32 for 6..8 (arcgis.learn's ANCH_MASK).

Input: arcgis.learn removes its data normalisation for YOLOv3, so the network sees RGB as
pixels / 255; multispectral input as Pro normalises it (NormalizationStats, as ours).
``ArcgisYolov3`` takes this engine's normalised input and, for 8-bit RGB (ImageNet
statistics), first undoes the ImageNet mean/std (``imagenet_input``).

Detections follow arcgis.learn's ``postprocess`` (what Pro's ArcGISObjectDetector runs):
score = objectness x class probability, every (box, class) at least ``threshold`` kept,
per-class greedy NMS at ``nms_overlap`` (at most 200 per class), boxes scaled as arcgis.learn
scales them to the chip (x / (chip - 1), clipped to 0..1, times chip; none left without area),
ordered by class then score. Without a threshold (the trainer's validation) it takes the
Detector defaults (0.05, NMS 0.5); Detect Objects passes its own (Pro's defaults: 0.1 and 0.1).
Training uses the loss of yolov3.py (YOLOBase).

The body's weights come from timm's Darknet-53 (``backbones.create_encoder``: the same 52
convolutions in the same order; its ImageNet weights were trained with LeakyReLU 0.01), so
pretrained weights and band adaptation work as for every backbone. arcgis.learn itself starts
from Darknet's COCO weights, which it downloads; without them it starts from random weights.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms

from .det_base import no_autocast
from .yolov3 import YOLOBase, init_output

BODY = 11  # module_list[:BODY] is Darknet-53
OUTPUTS = (28, 22, 14)  # output convs, finest level first
PER_CLASS_LIMIT = 200  # arcgis.learn's nms(limit=200)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConvBlock(nn.Sequential):
    """arcgis.learn's add_conv: conv (no bias) → batch norm → LeakyReLU 0.1."""

    def __init__(self, cin: int, cout: int, ksize: int, stride: int = 1):
        super().__init__(OrderedDict(
            conv=nn.Conv2d(cin, cout, ksize, stride, ksize // 2, bias=False),
            batch_norm=nn.BatchNorm2d(cout),
            leaky=nn.LeakyReLU(0.1, inplace=True)))


class ResBlock(nn.Module):
    """``nblocks`` pairs of 1x1 (half width) and 3x3 convs, each pair added to its input
    when ``shortcut``."""

    def __init__(self, ch: int, nblocks: int = 1, shortcut: bool = True):
        super().__init__()
        self.shortcut = shortcut
        self.module_list = nn.ModuleList(nn.ModuleList([ConvBlock(ch, ch // 2, 1), ConvBlock(ch // 2, ch, 3)])
                                         for _ in range(nblocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for first, second in self.module_list:
            h = second(first(x))
            x = x + h if self.shortcut else h
        return x


class Output(nn.Module):
    """arcgis.learn's YOLOLayer holds only this 1x1 conv (decoding happens outside)."""

    def __init__(self, cin: int, num_fg: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, 3 * (5 + num_fg), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _modules(in_ch: int, num_fg: int) -> nn.ModuleList:
    c = ConvBlock
    return nn.ModuleList([
        c(in_ch, 32, 3), c(32, 64, 3, 2), ResBlock(64),  # 0-2
        c(64, 128, 3, 2), ResBlock(128, 2),  # 3-4
        c(128, 256, 3, 2), ResBlock(256, 8),  # 5-6: stride 8, kept
        c(256, 512, 3, 2), ResBlock(512, 8),  # 7-8: stride 16, kept
        c(512, 1024, 3, 2), ResBlock(1024, 4),  # 9-10: stride 32
        ResBlock(1024, 2, shortcut=False), c(1024, 512, 1), c(512, 1024, 3), Output(1024, num_fg),  # 11-14
        c(512, 256, 1), nn.Upsample(scale_factor=2, mode="nearest"), c(768, 256, 1), c(256, 512, 3),  # 15-18
        ResBlock(512, 1, shortcut=False), c(512, 256, 1), c(256, 512, 3), Output(512, num_fg),  # 19-22
        c(256, 128, 1), nn.Upsample(scale_factor=2, mode="nearest"), c(384, 128, 1), c(128, 256, 3),  # 23-26
        ResBlock(256, 2, shortcut=False), Output(256, num_fg),  # 27-28
    ])


class ArcgisYolov3(YOLOBase):
    """arcgis.learn's YOLOv3_Model layout under this engine's Detector contract (det_base.py)."""

    takes_thresholds = True  # detect applies the tool's threshold and NMS overlap (detection.predict_as_pro)

    def __init__(self, in_channels: int, num_classes: int, anchors: Sequence[Sequence[float]],
                 imagenet_input: bool = False):
        super().__init__(num_classes, anchors)
        self.module_list = _modules(int(in_channels), self.num_fg)
        for i in OUTPUTS:
            init_output(self.module_list[i].conv, self.num_fg)
        scale = torch.ones(1, int(in_channels), 1, 1)
        shift = torch.zeros(1, int(in_channels), 1, 1)
        if imagenet_input:  # our ImageNet-normalised RGB back to arcgis.learn's pixels / 255
            scale[0, :3, 0, 0] = torch.tensor(IMAGENET_STD[:int(in_channels)])
            shift[0, :3, 0, 0] = torch.tensor(IMAGENET_MEAN[:int(in_channels)])
        self.register_buffer("in_scale", scale, persistent=False)
        self.register_buffer("in_shift", shift, persistent=False)

    def body_parameters(self) -> List[nn.Parameter]:
        return list(self.module_list[:BODY].parameters())

    def load_body(self, timm_darknet: nn.Module) -> None:
        """Copy timm's Darknet-53 (features_only) into modules 0-10: the same tensors in the same order."""
        source = list(timm_darknet.state_dict().values())
        target = self.module_list[:BODY].state_dict()
        if len(source) != len(target) or any(a.shape != b.shape for a, b in zip(source, target.values())):
            raise ValueError("the backbone is not Darknet-53: its tensors do not match arcgis.learn's body")
        self.module_list[:BODY].load_state_dict(OrderedDict(zip(target, source)))

    def _raw(self, images: torch.Tensor) -> List[torch.Tensor]:
        """Per level (finest first): (N, 3, H, W, 5 + C) float32 outputs, as arcgis.learn views them."""
        m = self.module_list
        x = images * self.in_scale.to(images.dtype) + self.in_shift.to(images.dtype)
        for i in range(7):
            x = m[i](x)
        s8 = x
        x = m[8](m[7](x))
        s16 = x
        x = m[12](m[11](m[10](m[9](x))))
        o32 = m[14](m[13](x))
        x = m[15](x)
        x = torch.cat([F.interpolate(x, size=s16.shape[-2:], mode="nearest"), s16], 1)  # m[16]: x2 nearest
        x = m[20](m[19](m[18](m[17](x))))
        o16 = m[22](m[21](x))
        x = m[23](x)
        x = torch.cat([F.interpolate(x, size=s8.shape[-2:], mode="nearest"), s8], 1)  # m[24]
        o8 = m[28](m[27](m[26](m[25](x))))
        outs = []
        for y in (o8, o16, o32):
            y = y.float()
            n, _, h, w = y.shape
            outs.append(y.view(n, 3, 5 + self.num_fg, h, w).permute(0, 1, 3, 4, 2))
        return outs

    def detect(self, images, threshold: Optional[float] = None,
               nms_overlap: Optional[float] = None) -> List[Dict[str, torch.Tensor]]:
        threshold = self.score_thresh if threshold is None else float(threshold)
        nms_overlap = self.nms_thresh if nms_overlap is None else float(nms_overlap)
        outs = self._raw(images)
        height, width = images.shape[-2:]
        with no_autocast(images.device.type):
            boxes, scores = [], []
            for level in (2, 1, 0):  # arcgis.learn's order: stride 32 first
                out = outs[level]
                n, _, h, w, _ = out.shape
                sy, sx = height / h, width / w
                gy, gx = torch.meshgrid(torch.arange(h, device=out.device, dtype=torch.float32),
                                        torch.arange(w, device=out.device, dtype=torch.float32), indexing="ij")
                anchors = self.anchor_wh[3 * level:3 * level + 3].view(1, 3, 1, 1, 2)
                cx = (torch.sigmoid(out[..., 0]) + gx) * sx
                cy = (torch.sigmoid(out[..., 1]) + gy) * sy
                wh = torch.exp(out[..., 2:4]) * anchors
                xyxy = torch.stack([cx - wh[..., 0] / 2, cy - wh[..., 1] / 2,
                                    cx + wh[..., 0] / 2, cy + wh[..., 1] / 2], -1)
                boxes.append(xyxy.reshape(n, -1, 4))
                scores.append((torch.sigmoid(out[..., 4:5]) * torch.sigmoid(out[..., 5:])).reshape(n, -1, self.num_fg))
            boxes, scores = torch.cat(boxes, 1), torch.cat(scores, 1)
            return [_postprocess(boxes[i], scores[i], (height, width), threshold, nms_overlap)
                    for i in range(images.shape[0])]


def _postprocess(boxes: torch.Tensor, scores: torch.Tensor, size, threshold: float,
                 nms_overlap: float) -> Dict[str, torch.Tensor]:
    """One image, as arcgis.learn's postprocess: (box, class) pairs scoring at least
    ``threshold``, greedy NMS per class on the unclipped boxes, then scaled to the chip."""
    height, width = size
    idx = torch.nonzero(scores >= threshold)
    b, s, cls = boxes[idx[:, 0]], scores[idx[:, 0], idx[:, 1]], idx[:, 1]
    kept = []
    for c in torch.unique(cls).tolist():  # ascending, as arcgis.learn's loop over unique labels
        members = torch.nonzero(cls == c).squeeze(1)
        # greedy NMS; arcgis.learn suppresses at IoU >= nms_overlap, torchvision above it
        keep = batched_nms(b[members], s[members], cls[members], nms_overlap)[:PER_CLASS_LIMIT]
        kept.append(members[keep])
    order = torch.cat(kept) if kept else idx.new_zeros(0)
    # arcgis.learn maps pixels to -1..1 with (chip - 1), clipped, and Pro maps them back with chip;
    # boxes left without area (wholly outside the chip) are dropped there (fastai's ImageBBox)
    scale = torch.tensor([width, height, width, height], dtype=b.dtype, device=b.device)
    b = (b[order] / (scale - 1)).clamp(0, 1) * scale
    ok = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    return {"boxes": b[ok].float(), "scores": s[order][ok].float(), "labels": (cls[order][ok] + 1).to(torch.int64)}


def build(encoder, in_channels: int, num_classes: int, anchors: Sequence[Sequence[float]],
          imagenet_input: bool) -> ArcgisYolov3:
    """The network with ``encoder`` (timm's Darknet-53 from create_encoder) as its body's weights."""
    module = ArcgisYolov3(in_channels, num_classes, anchors, imagenet_input=imagenet_input)
    module.load_body(encoder.model)
    return module
