"""DeepLabV3+ (arcgis.learn DeepLab): ASPP on a dilated encoder (output stride 16 where the
backbone can dilate, else its normal strides) and a decoder joining the 1/4 feature map."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .backbones import Encoder
from .blocks import ConvBnRelu, encode, resize

ASPP_CHANNELS = 256
LOW_LEVEL_CHANNELS = 48


def aspp_rates(output_stride: int) -> Sequence[int]:
    """The paper's rates (6, 12, 18) at output stride 16, scaled to other strides."""
    return tuple(max(1, round(r * 16 / output_stride)) for r in (6, 12, 18))


class ASPP(nn.Module):
    def __init__(self, in_ch: int, rates: Sequence[int], out_ch: int = ASPP_CHANNELS):
        super().__init__()
        self.branches = nn.ModuleList([ConvBnRelu(in_ch, out_ch, 1)]
                                      + [ConvBnRelu(in_ch, out_ch, 3, dilation=int(r)) for r in rates])
        # Image pooling without BatchNorm: one value per channel when the batch is 1.
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_ch, out_ch, 1), nn.ReLU(inplace=True))
        self.project = nn.Sequential(ConvBnRelu(out_ch * (len(rates) + 2), out_ch, 1), nn.Dropout(0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches] + [resize(self.pool(x), x.shape[-2:])]
        return self.project(torch.cat(outs, dim=1))


def low_level_index(reductions: Sequence[int]) -> int:
    """The feature map nearest 1/4 size (the deepest of those at 1/4), shallower than the last."""
    candidates = range(len(reductions) - 1) or range(len(reductions))
    return min(candidates, key=lambda i: (abs(reductions[i] - 4), -i))


class DeepLabV3Plus(nn.Module):
    def __init__(self, encoder: Encoder, in_channels: int, num_classes: int):
        super().__init__()
        self.encoder = encoder.model
        self.nhwc = encoder.nhwc
        self.low = low_level_index(encoder.reductions)
        self.aspp = ASPP(encoder.channels[-1], aspp_rates(encoder.output_stride))
        self.reduce = ConvBnRelu(encoder.channels[self.low], LOW_LEVEL_CHANNELS, 1)
        self.fuse = nn.Sequential(ConvBnRelu(ASPP_CHANNELS + LOW_LEVEL_CHANNELS, ASPP_CHANNELS),
                                  ConvBnRelu(ASPP_CHANNELS, ASPP_CHANNELS))
        self.head = nn.Conv2d(ASPP_CHANNELS, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = encode(self.encoder, x, self.nhwc)
        low = self.reduce(feats[self.low])
        y = resize(self.aspp(feats[-1]), low.shape[-2:])
        y = self.fuse(torch.cat([y, low], dim=1))
        return resize(self.head(y), x.shape[-2:])
