"""U-Net (arcgis.learn UnetClassifier): timm encoder + U-Net decoder over all its skips."""

from __future__ import annotations

import torch
from torch import nn

from .backbones import Encoder
from .blocks import UnetDecoder, encode


class UNet(nn.Module):
    def __init__(self, encoder: Encoder, in_channels: int, num_classes: int):
        super().__init__()
        self.encoder = encoder.model
        self.nhwc = encoder.nhwc
        self.decoder = UnetDecoder(encoder.channels[-1], encoder.channels[-2::-1], encoder.reductions[-2::-1],
                                   in_channels)
        self.head = nn.Conv2d(self.decoder.out_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = encode(self.encoder, x, self.nhwc)
        return self.head(self.decoder(feats[-1], feats[-2::-1], x))
