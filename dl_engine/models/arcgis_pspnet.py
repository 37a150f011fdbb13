"""arcgis.learn's PSPNetClassifier network, written for torch alone so that its state dict has
arcgis.learn 2.4.4's names and shapes (tests/data/arcgis_layouts/pspnetclassifier_*.json) and
packages cross both ways.

The body is the ResNet dilated as arcgis.learn's DeepLab dilates it (arcgis_deeplab.dilate_body:
output stride 8; numbered keys for every ResNet, resnet101 included). Two networks on it:
- use_unet (arcgis.learn's default): fastai v1's DynamicUnet (``last_cross=False``, batch norm)
  over an encoder of [body..., pyramid pooling, 3x3 conv to 512]; with vggv2 (its default) wrapped
  as ``model`` and its logits resized to the input (bilinear, align_corners=True). Unlike
  UnetClassifier's (arcgis_unet.py) its convolutions are conv, ReLU, BatchNorm without bias, the
  pixel-shuffle convolutions weight-normalised (``weight_g``, ``weight_v``), the head conv + BatchNorm.
- without use_unet: pyramid pooling and a 3x3 conv + 1x1 head on layer4 (``ppm``, ``final``), an
  auxiliary 1x1 head on layer3 (``aux_logits``), resized to the input (bilinear, align_corners=True).
The auxiliary heads (arcgis.learn trains them with 0.4 times their loss) keep their place; here they
join the graph with weight 0 in training (every parameter gets a gradient, for DistributedDataParallel).
"""

from __future__ import annotations

import math
from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .arcgis_deeplab import dilate_body
from .arcgis_unet import UnetBlock, body_sizes, decode, decoder_layers, resnet_body

FINAL_CHANNELS = 512  # arcgis.learn's 3x3 conv after the pyramid pooling in the U-Net encoder


def _anchor(module: nn.Module) -> torch.Tensor:
    return 0.0 * sum(p.sum() for p in module.parameters())


class PyramidPooling(nn.Module):
    """arcgis.learn's _PyramidPoolingModule: per size, pool, 1x1 conv, BatchNorm, ReLU, resized back
    (bilinear, align_corners=True), concatenated after the input."""

    def __init__(self, ni: int, nf: int, sizes: Sequence[int]):
        super().__init__()
        self.features = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(int(s)), nn.Conv2d(ni, nf, 1, bias=False),
                          nn.BatchNorm2d(nf, momentum=0.95), nn.ReLU(inplace=True)) for s in sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = [x]
        for f in self.features:
            pooled = f[1](f[0](x))
            bn = f[2]
            if self.training and pooled.shape[0] * pooled.shape[2] * pooled.shape[3] == 1:
                # one value per channel has no batch statistics: use the running ones
                pooled = F.batch_norm(pooled, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
            else:
                pooled = bn(pooled)
            out.append(F.interpolate(f[3](pooled), x.shape[-2:], mode="bilinear", align_corners=True))
        return torch.cat(out, 1)


def ppm_width(channels: int, sizes: Sequence[int]) -> int:
    return int(channels / len(sizes))


# ---- use_unet: fastai's DynamicUnet with batch norm ------------------------------------------------

class WNConv2d(nn.Module):
    """A 1x1 conv under weight normalisation (torch's weight_norm keys: bias, weight_g, weight_v)."""

    def __init__(self, ni: int, nf: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(nf))
        v = nn.init.kaiming_normal_(torch.empty(nf // 4, ni, 1, 1)).repeat_interleave(4, dim=0)  # ICNR start
        self.weight_g = nn.Parameter(v.flatten(1).norm(dim=1).view(nf, 1, 1, 1))
        self.weight_v = nn.Parameter(v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight_v * (self.weight_g / self.weight_v.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
        return F.conv2d(x, w, self.bias)


def conv_bn(ni: int, nf: int, ks: int = 3, activ: bool = True) -> nn.Sequential:
    """fastai's conv_layer with NormType.Batch: conv (no bias), ReLU, BatchNorm (no ReLU: conv, BN)."""
    conv = nn.Conv2d(ni, nf, ks, padding=(ks - 1) // 2, bias=False)
    nn.init.kaiming_normal_(conv.weight)
    return nn.Sequential(conv, nn.ReLU(inplace=True), nn.BatchNorm2d(nf)) if activ else \
        nn.Sequential(conv, nn.BatchNorm2d(nf))


class PixelShuffleUp(nn.Module):
    """fastai's PixelShuffle_ICNR with NormType.Batch: weight-normalised 1x1 conv to 4·nf, ReLU, shuffle x2."""

    def __init__(self, ni: int, nf: int):
        super().__init__()
        self.conv = nn.Sequential(WNConv2d(ni, nf * 4))
        self.shuf = nn.PixelShuffle(2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuf(self.relu(self.conv(x)))


def psp_unet_block(up_in: int, skip_in: int, final: bool) -> UnetBlock:
    """fastai's U-Net block as PSPNet's U-Net has it: weight-normalised pixel shuffle, batch norm in the convs."""
    return UnetBlock(up_in, skip_in, final, shuffle=PixelShuffleUp, norm=nn.BatchNorm2d, conv=conv_bn)


def encoder_sizes(chip_size: int) -> List[int]:
    """Map side after each encoder layer: the body's, with layer3 and layer4 dilated (no stride),
    then the pyramid pooling and the 3x3 conv."""
    sizes = body_sizes(chip_size)[:6]
    return sizes + [sizes[5]] * 4


class PSPDynamicUnet(nn.Module):
    """DynamicUnet(encoder, n_classes, last_cross=False) as arcgis.learn builds it for PSPNet."""

    def __init__(self, encoder: nn.Sequential, channels: Sequence[int], num_classes: int, chip_size: int):
        super().__init__()
        layers, up = decoder_layers(self, encoder, channels, encoder_sizes(int(chip_size)), int(chip_size),
                                    norm=nn.BatchNorm2d, conv=conv_bn, block=psp_unet_block, shuffle=PixelShuffleUp)
        layers.append(conv_bn(up, num_classes, ks=1, activ=False))
        self.layers = nn.ModuleList(layers)

    @property
    def encoder(self) -> nn.Sequential:
        return self.layers[0][:8]  # the ResNet body (not the pyramid pooling after it)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, n = decode(self, x)  # last_cross=False: the head takes the decoder's output alone
        return self.layers[n](h)


class PSPUnet(nn.Module):
    """arcgis.learn's vggv2 wrapper: the U-Net as ``model``, its logits resized to the input."""

    def __init__(self, model: PSPDynamicUnet):
        super().__init__()
        self.model = model

    @property
    def encoder(self) -> nn.Sequential:
        return self.model.encoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.model(x), x.shape[-2:], mode="bilinear", align_corners=True)


# ---- without use_unet ------------------------------------------------------------------------------

class ArcgisPSPNet(nn.Module):
    def __init__(self, body: nn.Sequential, aux_channels: int, channels: int, num_classes: int,
                 sizes: Sequence[int]):
        super().__init__()
        self.backbone = body
        width = channels / len(sizes)
        self.ppm = PyramidPooling(channels, int(width), sizes)
        self.final = nn.Sequential(nn.Conv2d(int(width) * len(sizes) + channels, math.ceil(width), 3, padding=1,
                                             bias=False),
                                   nn.BatchNorm2d(math.ceil(width)), nn.ReLU(inplace=True), nn.Dropout(0.1),
                                   nn.Conv2d(math.ceil(width), num_classes, 1))
        self.aux_logits = nn.Conv2d(aux_channels, num_classes, 1)

    @property
    def encoder(self) -> nn.Sequential:
        return self.backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.interpolate(self.final(self.ppm(self.backbone(x))), x.shape[-2:], mode="bilinear", align_corners=True)
        return out + _anchor(self.aux_logits) if self.training else out


def build(encoder, num_classes: int, chip_size: int, pyramid_sizes: Sequence[int], use_unet: bool,
          vggv2: bool = True) -> nn.Module:
    """The network over a ``backbones.Encoder`` of a torchvision ResNet; ``.encoder`` is its body."""
    body = resnet_body(encoder.model)
    dilate_body(body, torchvision_layout=False)
    c3, c4 = int(encoder.channels[-2]), int(encoder.channels[-1])
    if not use_unet:
        return ArcgisPSPNet(body, c3, c4, num_classes, pyramid_sizes)
    width = ppm_width(c4, pyramid_sizes)
    psp = PyramidPooling(c4, width, pyramid_sizes)
    final_conv = nn.Conv2d(width * len(pyramid_sizes) + c4, FINAL_CHANNELS, 3, padding=1)
    enc = nn.Sequential(*body, psp, final_conv)
    c1 = body[0].out_channels
    channels = [c1, c1, c1, c1] + [int(c) for c in encoder.channels[-4:]] + [c4 + width * len(pyramid_sizes),
                                                                             FINAL_CHANNELS]
    unet = PSPDynamicUnet(enc, channels, num_classes, chip_size)
    return PSPUnet(unet) if vggv2 else unet
