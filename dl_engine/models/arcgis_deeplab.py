"""arcgis.learn's DeepLab network: torchvision's DeepLabV3 head (ASPP) and FCN auxiliary head on a
dilated ResNet body, written for torch alone so that its state dict has arcgis.learn 2.4.4's
names and shapes, and a package we train loads in arcgis.learn (``DeepLab.from_model``) and one
arcgis.learn trained loads here.

arcgis.learn builds two layouts (checked against it: tests/data/arcgis_layouts/deeplab_*.json):
- resnet101 (its default): torchvision's ``deeplabv3_resnet101``. The body's keys are named
  (``backbone.conv1.weight``, ``backbone.layer3.1.conv2.weight``); layer3 and layer4 trade their
  stride for dilation as torchvision's ``replace_stride_with_dilation``: the first block of a
  layer keeps the previous dilation (1 in layer3, 2 in layer4), the others take 2 and 4.
- resnet18, 34, 50, 152: its own ``Deeplab`` over fastai's body, keys numbered
  (``backbone.0.weight``, ``backbone.6.1.conv2.weight``); every 3x3 convolution of layer3 is at
  dilation 2 and of layer4 at dilation 4, every stride there 1.
Either way the output stride is 8, and (pointrend off) keep_dilation changes nothing.
``classifier`` is DeepLabHead(C4, K): ASPP (rates 12, 24, 36, image pooling, 256 wide), 3x3 conv,
1x1 to the classes; ``aux_classifier`` is FCNHead(C3, K) on layer3. The logits are resized to the
input (bilinear, align_corners=False), as arcgis.learn's forward does.

The body's modules are timm's ResNet modules (torchvision's names and computation), so
pretrained weights and band adaptation come from ``backbones.create_encoder``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .arcgis_unet import BODY, resnet_body

ASPP_RATES = (12, 24, 36)
ASPP_CHANNELS = 256
# The one backbone for which arcgis.learn takes torchvision's whole deeplabv3 model (named keys).
TORCHVISION_BACKBONE = "resnet101"
LAYER3, LAYER4 = 6, 7  # positions in the body (conv1, bn1, relu, maxpool, layer1..layer4)


def _conv_bn_relu(ni: int, nf: int, ks: int, dilation: int = 1) -> list:
    pad = dilation if ks == 3 else 0
    return [nn.Conv2d(ni, nf, ks, padding=pad, dilation=dilation, bias=False), nn.BatchNorm2d(nf), nn.ReLU()]


class ASPPPooling(nn.Sequential):
    """Image pooling branch: global average, 1x1 conv, BatchNorm, ReLU, spread back over the map."""

    def __init__(self, ni: int, nf: int):
        super().__init__(nn.AdaptiveAvgPool2d(1), *_conv_bn_relu(ni, nf, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self[1](self[0](x))
        bn = self[2]
        if self.training and pooled.shape[0] == 1:
            # A batch of one pooled value per channel has no batch statistics: normalise it
            # with the running ones (torchvision would raise here).
            pooled = F.batch_norm(pooled, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        else:
            pooled = bn(pooled)
        return F.interpolate(self[3](pooled), size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    def __init__(self, ni: int, rates: Sequence[int] = ASPP_RATES, nf: int = ASPP_CHANNELS):
        super().__init__()
        branches = [nn.Sequential(*_conv_bn_relu(ni, nf, 1))]
        branches += [nn.Sequential(*_conv_bn_relu(ni, nf, 3, int(r))) for r in rates]
        branches.append(ASPPPooling(ni, nf))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(*_conv_bn_relu(len(branches) * nf, nf, 1), nn.Dropout(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([branch(x) for branch in self.convs], dim=1))


def deeplab_head(ni: int, num_classes: int) -> nn.Sequential:
    """torchvision's DeepLabHead: keys 0 (ASPP), 1/2 (3x3 conv, BatchNorm), 4 (classes)."""
    return nn.Sequential(ASPP(ni), *_conv_bn_relu(ASPP_CHANNELS, ASPP_CHANNELS, 3), nn.Conv2d(ASPP_CHANNELS, num_classes, 1))


def fcn_head(ni: int, num_classes: int) -> nn.Sequential:
    """torchvision's FCNHead: 3x3 conv to a quarter of the width, BatchNorm, ReLU, dropout, 1x1."""
    inter = ni // 4
    return nn.Sequential(*_conv_bn_relu(ni, inter, 3), nn.Dropout(0.1), nn.Conv2d(inter, num_classes, 1))


def _dilate(layer: nn.Module, first: int, rest: int) -> None:
    """Stride 1 everywhere in ``layer``; its 3x3 convolutions at dilation ``first`` in its first
    block and ``rest`` in the others (padding = dilation keeps the map size)."""
    for i, block in enumerate(layer.children()):
        d = first if i == 0 else rest
        for m in block.modules():
            if isinstance(m, nn.Conv2d):
                m.stride = (1, 1)
                if m.kernel_size[0] > 1:
                    m.dilation, m.padding = (d, d), (d, d)


def dilate_body(body: nn.Sequential, torchvision_layout: bool) -> None:
    """Output stride 8 as arcgis.learn builds it (module doc)."""
    if torchvision_layout:
        _dilate(body[LAYER3], 1, 2)
        _dilate(body[LAYER4], 2, 4)
    else:
        _dilate(body[LAYER3], 2, 2)
        _dilate(body[LAYER4], 4, 4)


class ArcgisDeepLab(nn.Module):
    """``forward(x)`` -> logits (N, num_classes, H, W) of any input size.

    The auxiliary head keeps its place in the state dict (arcgis.learn trains it with 0.4 times
    its loss and needs its weights to load). Our trainer takes one logits tensor, so in training
    the head's parameters only join the graph with weight 0: every parameter then gets a
    gradient, as DistributedDataParallel without find_unused_parameters requires.
    """

    def __init__(self, body: nn.Sequential, aux_channels: int, channels: int, num_classes: int):
        super().__init__()
        self.backbone = body
        self.classifier = deeplab_head(channels, num_classes)
        self.aux_classifier = fcn_head(aux_channels, num_classes)

    @property
    def encoder(self) -> nn.Sequential:
        return self.backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.backbone(x)
        out = F.interpolate(self.classifier(h), size=x.shape[-2:], mode="bilinear", align_corners=False)
        if self.training:
            out = out + 0.0 * sum(p.sum() for p in self.aux_classifier.parameters())
        return out


def build(encoder, num_classes: int) -> ArcgisDeepLab:
    """The network over a ``backbones.Encoder`` of a torchvision ResNet (resnet18 … resnet152)."""
    torchvision_layout = str(encoder.name).lower() == TORCHVISION_BACKBONE
    body = resnet_body(encoder.model)
    if torchvision_layout:  # named children: backbone.conv1.weight, backbone.layer1.0.conv1.weight
        names = ["relu" if n == "act1" else n for n in BODY]
        body = nn.Sequential(OrderedDict(zip(names, body)))
    dilate_body(body, torchvision_layout)
    return ArcgisDeepLab(body, int(encoder.channels[-2]), int(encoder.channels[-1]), num_classes)
