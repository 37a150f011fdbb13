"""PSPNet (arcgis.learn PSPNetClassifier): pyramid pooling on the deepest encoder map, then
either a U-Net decoder over the encoder's skips (use_unet, arcgis's default) or a 1x1
classifier upsampled to the input size."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .backbones import Encoder
from .blocks import ConvBnRelu, UnetDecoder, encode, resize


class PyramidPooling(nn.Module):
    def __init__(self, in_ch: int, sizes: Sequence[int], out_ch: int):
        super().__init__()
        branch = max(16, in_ch // len(sizes))
        # No BatchNorm in the pooled branches: a 1x1 pooled map has a single value per
        # channel when the batch is 1, which BatchNorm cannot train on.
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(int(s)), nn.Conv2d(in_ch, branch, 1), nn.ReLU(inplace=True))
            for s in sizes)
        self.bottleneck = ConvBnRelu(in_ch + branch * len(sizes), out_ch, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [resize(stage(x), size) for stage in self.stages]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))


class PSPNet(nn.Module):
    def __init__(self, encoder: Encoder, in_channels: int, num_classes: int,
                 pyramid_sizes: Sequence[int] = (1, 2, 3, 6), use_unet: bool = True):
        super().__init__()
        self.encoder = encoder.model
        self.nhwc = encoder.nhwc
        deep = encoder.channels[-1]
        psp_ch = min(512, deep)
        self.ppm = PyramidPooling(deep, pyramid_sizes, psp_ch)
        self.use_unet = bool(use_unet)
        if self.use_unet:
            self.decoder = UnetDecoder(psp_ch, encoder.channels[-2::-1], encoder.reductions[-2::-1], in_channels)
            self.head = nn.Conv2d(self.decoder.out_channels, num_classes, 1)
        else:
            self.head = nn.Sequential(nn.Dropout2d(0.1), nn.Conv2d(psp_ch, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = encode(self.encoder, x, self.nhwc)
        y = self.ppm(feats[-1])
        if self.use_unet:
            return self.head(self.decoder(y, feats[-2::-1], x))
        return resize(self.head(y), x.shape[-2:])
