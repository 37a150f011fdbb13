"""arcgis.learn's UnetClassifier network: fastai v1's DynamicUnet over a torchvision ResNet body,
written for torch alone so that its state dict has arcgis.learn's names and shapes
("layers.0.0.weight", "layers.4.shuf.conv.0.weight", …) and a package we train loads in
arcgis.learn (``UnetClassifier.from_model``), and one arcgis.learn trained loads here.

Layout (``layers`` as fastai's SequentialEx holds them, for a chip of side s):
  0 the body: conv1, bn1, relu, maxpool, layer1..layer4 (``nn.Sequential``, keys 0..7)
  1 BatchNorm2d, 2 ReLU, 3 middle: two 3x3 convs (C -> 2C -> C)
  4.. one UnetBlock per body layer where the map size changes (deepest first): a 1x1 conv +
      PixelShuffle up, BatchNorm of the skip, concatenation, two 3x3 convs
  then a final PixelShuffle up, a resize to the input when s is odd (no weights, but it takes
  an index), the input concatenated (no weights, an index), a residual block (bottleneck: half
  the width inside), a 1x1 head.
Convolutions have a bias and no norm layer: arcgis.learn calls fastai's ``unet_learner``
without ``norm_type``, whose default (the ``NormType`` class itself) matches neither Batch nor
Weight norm. Everything was checked against arcgis.learn 2.4.4 (tests/data/arcgis_layouts/).

The body's modules are timm's ResNet modules (the same names and computation as torchvision's),
so pretrained weights and band adaptation come from ``backbones.create_encoder``.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .pixel import ARCGIS_UNET_BACKBONES as RESNETS

BODY = ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4")


def supports(backbone_name: str) -> bool:
    """Whether arcgis.learn's layout is built for this backbone (emd name; torchvision's plain ResNets)."""
    return str(backbone_name).lower() in RESNETS


def conv_layer(ni: int, nf: int, ks: int = 3, activ: bool = True) -> nn.Sequential:
    """fastai's conv_layer as arcgis.learn gets it: conv with bias (+ ReLU); keys 0.weight, 0.bias."""
    conv = nn.Conv2d(ni, nf, ks, padding=(ks - 1) // 2, bias=True)
    nn.init.kaiming_normal_(conv.weight)
    nn.init.zeros_(conv.bias)
    return nn.Sequential(conv, nn.ReLU(inplace=True)) if activ else nn.Sequential(conv)


def batchnorm(nf: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(nf)
    with torch.no_grad():  # fastai's batchnorm_2d start
        bn.bias.fill_(1e-3)
        bn.weight.fill_(1.0)
    return bn


class PixelShuffleUp(nn.Module):
    """fastai's PixelShuffle_ICNR (no blur): 1x1 conv to 4·nf, ReLU, pixel shuffle x2. The conv
    starts ICNR (the four sub-pixels of an output channel share a kernel: no checkerboard)."""

    def __init__(self, ni: int, nf: int):
        super().__init__()
        self.conv = conv_layer(ni, nf * 4, ks=1, activ=False)
        with torch.no_grad():
            base = nn.init.kaiming_normal_(torch.empty(nf, ni, 1, 1))
            self.conv[0].weight.copy_(base.repeat_interleave(4, dim=0))
        self.shuf = nn.PixelShuffle(2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuf(self.relu(self.conv(x)))


class UnetBlock(nn.Module):
    """Upsample, join the (batch-normalised) skip, two 3x3 convs; ``final`` halves the width.
    ``shuffle``, ``norm`` and ``conv`` make its parts: this U-Net's by default, PSPNet's in
    arcgis_pspnet.py (fastai's same block with batch norm in the convs)."""

    def __init__(self, up_in: int, skip_in: int, final: bool, shuffle=None, norm=None, conv=None):
        super().__init__()
        shuffle, norm, conv = shuffle or PixelShuffleUp, norm or batchnorm, conv or conv_layer
        self.shuf = shuffle(up_in, up_in // 2)
        self.bn = norm(skip_in)
        ni = up_in // 2 + skip_in
        self.out_channels = ni // 2 if final else ni
        self.conv1 = conv(ni, self.out_channels)
        self.conv2 = conv(self.out_channels, self.out_channels)
        self.relu = nn.ReLU()

    def forward(self, up_in: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = self.shuf(up_in)
        if up.shape[-2:] != skip.shape[-2:]:
            up = F.interpolate(up, skip.shape[-2:], mode="nearest")
        return self.conv2(self.conv1(self.relu(torch.cat([up, self.bn(skip)], dim=1))))


class ResBlock(nn.Module):
    """fastai's res_block (not dense): x + two 3x3 convs of x; ``layers`` as its SequentialEx."""

    def __init__(self, nf: int, bottle: bool):
        super().__init__()
        inner = nf // 2 if bottle else nf
        self.layers = nn.ModuleList([conv_layer(nf, inner), conv_layer(inner, nf), nn.Identity()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers[1](self.layers[0](x))


def _half(size: int) -> int:
    return (size + 1) // 2  # a stride-2 conv (or pool) with padding (k-1)/2: ceil(size / 2)


def body_sizes(chip_size: int) -> List[int]:
    """The side of each body layer's output for a chip of ``chip_size`` (conv1 … layer4)."""
    c1 = _half(chip_size)
    mp = _half(c1)
    l2 = _half(mp)
    l3 = _half(l2)
    return [c1, c1, c1, mp, mp, l2, l3, _half(l3)]


def skip_indices(sizes: Sequence[int]) -> List[int]:
    """fastai's _get_sfs_idxs: body layers after which the map size changes, deepest first."""
    idx = [i for i in range(len(sizes) - 1) if sizes[i] != sizes[i + 1]]
    if sizes[0] != sizes[1]:
        idx = [0] + idx
    return list(reversed(idx))


class ArcgisUnet(nn.Module):
    """DynamicUnet(body, num_classes, img_size=(chip_size, chip_size), bottle=True, last_cross=True),
    as arcgis.learn's UnetClassifier calls fastai's unet_learner.

    ``forward(x)`` -> logits (N, num_classes, H, W); the size of ``x`` may differ from
    ``chip_size`` (maps are resized where sizes disagree, as fastai does inside the blocks).
    """

    def __init__(self, body: nn.Sequential, in_channels: int, num_classes: int, chip_size: int,
                 channels: Sequence[int], bottle: bool = True):
        super().__init__()
        # channels: of each body layer's output (conv1 … layer4)
        layers, up = decoder_layers(self, body, channels, body_sizes(int(chip_size)), int(chip_size),
                                    norm=batchnorm, conv=conv_layer, block=UnetBlock)
        layers.append(nn.Identity())  # MergeLayer(dense=True): concatenates the input
        layers.append(ResBlock(up + in_channels, bottle))
        layers.append(conv_layer(up + in_channels, num_classes, ks=1, activ=False))
        self.layers = nn.ModuleList(layers)

    @property
    def encoder(self) -> nn.Sequential:
        return self.layers[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, n = decode(self, x)
        h = torch.cat([h, x], dim=1)  # last_cross: the input joins the decoder's output
        return self.layers[n + 2](self.layers[n + 1](h))


def decoder_layers(unet: nn.Module, encoder: nn.Module, channels: Sequence[int], sizes: Sequence[int],
                   chip_size: int, norm, conv, block, shuffle=None) -> Tuple[List[nn.Module], int]:
    """fastai DynamicUnet's layers before its head, for UnetClassifier's and PSPNet's U-Nets: the
    encoder, norm, ReLU, the middle convs, one ``block`` per skip (deepest first), the last pixel
    shuffle (``shuffle``, PixelShuffleUp by default) and the slot of fastai's resize layer.
    ``sizes``: the map side after each encoder layer. Sets what ``decode`` reads on ``unet``; returns the layers and their output channels."""
    unet.skips = skip_indices(sizes)
    ni = int(channels[-1])
    layers: List[nn.Module] = [encoder, norm(ni), nn.ReLU(), nn.Sequential(conv(ni, ni * 2), conv(ni * 2, ni))]
    up = ni
    for i, idx in enumerate(unet.skips):
        layers.append(block(up, int(channels[idx]), final=i == len(unet.skips) - 1))
        up = layers[-1].out_channels
    unet.n_blocks = len(unet.skips)
    size = sizes[unet.skips[-1]] if unet.skips else sizes[-1]
    unet.final_up = chip_size != sizes[0]
    if unet.final_up:
        layers.append((shuffle or PixelShuffleUp)(up, up))
        size *= 2
    unet.resize_slot = size != chip_size  # fastai inserts a (weightless) resize layer here
    if unet.resize_slot:
        layers.append(nn.Identity())
    return layers, up


def decode(unet: nn.Module, x: torch.Tensor) -> Tuple[torch.Tensor, int]:
    """fastai DynamicUnet's pass up to its head, for both of arcgis.learn's variants (this U-Net and
    PSPNet's, arcgis_pspnet.py): body with skips, middle, U-Net blocks, the final pixel shuffle, the
    resize to the input. Returns the map and the index of the next layer in ``unet.layers``."""
    stored: Dict[int, torch.Tensor] = {}
    h = x
    for i, layer in enumerate(unet.layers[0]):
        h = layer(h)
        if i in unet.skips:
            stored[i] = h
    h = unet.layers[3](unet.layers[2](unet.layers[1](h)))
    for k, idx in enumerate(unet.skips):
        h = unet.layers[4 + k](h, stored[idx])
    n = 4 + unet.n_blocks
    if unet.final_up:
        h = unet.layers[n](h)
        n += 1
    if h.shape[-2:] != x.shape[-2:]:
        h = F.interpolate(h, x.shape[-2:], mode="nearest")
    return h, n + (1 if unet.resize_slot else 0)


def resnet_body(encoder_model: nn.Module) -> nn.Sequential:
    """The body as torchvision's ``nn.Sequential(*list(resnet.children())[:-2])``, made of the
    timm encoder's own modules (their keys are torchvision's)."""
    return nn.Sequential(*[getattr(encoder_model, name) for name in BODY])


def body_channels(body: nn.Sequential, in_channels: int) -> List[int]:
    """Output channels of each body layer (conv1 … layer4)."""
    c1 = body[0].out_channels
    out = [c1, c1, c1, c1]
    for layer in body[4:]:
        last = layer[-1]
        conv = getattr(last, "conv3", None) or last.conv2
        out.append(conv.out_channels)
    return out


def build(encoder, in_channels: int, num_classes: int, chip_size: int, bottle: bool = True) -> ArcgisUnet:
    """The network over a ``backbones.Encoder`` of a torchvision ResNet (``supports``)."""
    if not supports(encoder.name):
        raise ValueError(f"arcgis.learn's U-Net layout is built for {', '.join(RESNETS)}, not {encoder.name}")
    body = resnet_body(encoder.model)
    return ArcgisUnet(body, in_channels, num_classes, chip_size, body_channels(body, in_channels), bottle=bottle)

