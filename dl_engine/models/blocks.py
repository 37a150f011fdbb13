"""Layers shared by the pixel classifiers (U-Net decoder, PSPNet, DeepLab).

Sizes are never assumed: every upsampling goes to the exact size of the map it joins, so
inputs of any size (not only multiples of 32) work.
"""

from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ConvBnRelu(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, dilation: int = 1):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, padding=dilation * (kernel // 2), dilation=dilation, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )


def resize(x: torch.Tensor, size) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def encode(encoder: nn.Module, x: torch.Tensor, nhwc: bool) -> List[torch.Tensor]:
    """The encoder's feature maps, shallow to deep, as (N, C, H, W)."""
    feats = encoder(x)
    return [f.permute(0, 3, 1, 2) for f in feats] if nhwc else list(feats)


def decoder_width(reduction: int) -> int:
    """Decoder channels at a reduction (256 at 1/16 … 16 at full size), as in common U-Nets."""
    return max(16, min(256, 16 * int(reduction)))


class UpBlock(nn.Module):
    """Upsample to the skip's size, concatenate the skip, two 3x3 conv-BN-ReLU."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = ConvBnRelu(in_ch + skip_ch, out_ch)
        self.conv2 = ConvBnRelu(out_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat([resize(x, skip.shape[-2:]), skip], dim=1)
        return self.conv2(self.conv1(x))


class UnetDecoder(nn.Module):
    """U-Net upsampling path (like fastai's DynamicUnet): from the deepest map up through
    every encoder skip, then to the input size, where the input bands join once more
    (fastai's "last cross") for pixel-sharp edges."""

    def __init__(self, deep_ch: int, skip_channels: Sequence[int], skip_reductions: Sequence[int],
                 in_channels: int):
        super().__init__()
        blocks, ch = [], deep_ch
        for skip_ch, reduction in zip(skip_channels, skip_reductions):  # deep to shallow
            out = decoder_width(reduction)
            blocks.append(UpBlock(ch, skip_ch, out))
            ch = out
        self.blocks = nn.ModuleList(blocks)
        self.final = ConvBnRelu(ch + in_channels, ch)
        self.out_channels = ch

    def forward(self, deep: torch.Tensor, skips: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        for block, skip in zip(self.blocks, skips):
            deep = block(deep, skip)
        return self.final(torch.cat([resize(deep, x.shape[-2:]), x.to(deep.dtype)], dim=1))
