"""arcgis.learn's FasterRCNN and MaskRCNN networks: torchvision's models as arcgis.learn 2.4.4
builds them on a torchvision ResNet, so that the state dict is arcgis.learn's own (the model's
keys, "backbone.body.conv1.weight", "rpn.head.conv.0.0.weight", "roi_heads.box_predictor…", with
no wrapper prefix) and a package we train loads in ``FasterRCNN.from_model`` /
``MaskRCNN.from_model``, and one arcgis.learn trained loads here.

- resnet50, 101, 152: torchvision's ResNet-FPN (``fasterrcnn_resnet50_fpn`` /
  ``resnet_fpn_backbone``): the body's batch norms are FrozenBatchNorm2d (no
  num_batches_tracked, as arcgis.learn's trained network saves them), FPN levels "0".."3" and
  "pool", anchors 32..512 px (one size per level), aspect ratios 0.5, 1, 2.
- resnet18, 34: fastai's ``create_body`` (the ResNet's children up to layer4 as
  ``backbone.0`` … ``backbone.7``, BatchNorm2d) with no FPN: one stride-32 map of 512 channels;
  arcgis.learn patches the anchor generator to zip the default five sizes with that one map,
  so only 32 px anchors (three ratios) are used: that is the anchor generator built here.
- The transform resizes inside the network as arcgis.learn's does (min_size 1.5 x chip,
  max_size 2 x chip: a chip is upsampled 1.5 x and boxes and masks come back in chip pixels).
  It does not normalise: arcgis.learn's own normalisation (ImageNet on 0..1, or the emd's
  NormalizationStats, undone and redone inside its model) is what our data layer applies.
- Box predictor and mask predictor for ``num_classes`` outputs (background included), and
  torchvision's defaults for everything else (its rpn_* / box_* keyword arguments).

The body's modules are timm's ResNet modules (torchvision's names and computation), so pretrained
weights and band adaptation come from ``backbones.create_encoder``.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Tuple

import torch
from torch import nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from .det_tv import TorchvisionDetector
from .rcnn import RATIOS, calm_mask_logits

FPN_RESNETS = ("resnet50", "resnet101", "resnet152")
BODY_RESNETS = ("resnet18", "resnet34")
BODY = ("conv1", "bn1", "act1", "maxpool", "layer1", "layer2", "layer3", "layer4")
FPN_SIZES = ((32,), (64,), (128,), (256,), (512,))  # torchvision's default anchor sizes
MIN_SIZE_FACTOR, MAX_SIZE_FACTOR = 1.5, 2  # arcgis.learn: min_size=1.5 * chip, max_size=2 * chip


class _Amp:
    """The backbone runs under the autocast the detector sets in ``amp`` (det_tv); maps float32."""

    amp: Tuple[bool, torch.dtype] = (False, torch.float32)

    def _autocast(self, x):
        enabled, dtype = self.amp
        return torch.autocast(x.device.type, dtype=dtype) if enabled else contextlib.nullcontext()


class ResNetBody(_Amp, nn.Sequential):
    """fastai's ``create_body`` of a torchvision ResNet: keys 0 (conv1), 1 (bn1), 4..7 (layer1..4)."""

    def __init__(self, encoder_model, out_channels: int):
        nn.Sequential.__init__(self, *[getattr(encoder_model, n) for n in BODY])
        self.out_channels = out_channels

    def forward(self, x):
        with self._autocast(x):
            for layer in self:
                x = layer(x)
        return x.float()


class ResNetFPN(_Amp, nn.Module):
    """torchvision's BackboneWithFPN over the ResNet: keys body.conv1 …, fpn.inner_blocks …"""

    def __init__(self, encoder_model, in_channels_list, out_channels: int = 256):
        super().__init__()
        from torchvision.models._utils import IntermediateLayerGetter
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

        resnet = nn.Sequential(OrderedDict((n, getattr(encoder_model, n)) for n in BODY))
        self.body = IntermediateLayerGetter(resnet, return_layers={f"layer{i + 1}": str(i) for i in range(4)})
        self.fpn = FeaturePyramidNetwork(list(in_channels_list), out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x):
        with self._autocast(x):
            out = self.fpn(self.body(x))
        return OrderedDict((k, v.float()) for k, v in out.items())


class ResizingTransform(GeneralizedRCNNTransform):
    """torchvision's transform with arcgis.learn's sizes, without its normalisation (see module doc)."""

    def __init__(self, chip_size: int):
        super().__init__(min_size=MIN_SIZE_FACTOR * chip_size, max_size=MAX_SIZE_FACTOR * chip_size,
                         image_mean=[0.0], image_std=[1.0], size_divisible=32)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        return image


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm2d under ``module`` replaced by torchvision's FrozenBatchNorm2d holding its
    statistics and affine values (what torchvision's ResNet-FPN detectors use)."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                for key in ("weight", "bias", "running_mean", "running_var"):
                    getattr(frozen, key).copy_(getattr(child, key))
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


class ArcgisRCNN(TorchvisionDetector):
    """The torchvision model's own children (transform, backbone, rpn, roi_heads) are this module's,
    so its state dict is the model's; ``net`` (not a submodule) is the model that runs them."""

    def __init__(self, net):
        nn.Module.__init__(self)
        object.__setattr__(self, "net", net)
        for name, child in net.named_children():
            setattr(self, name, child)


def build(encoder, backbone_name: str, num_classes: int, chip_size: int, masks: bool = False, **kwargs) -> ArcgisRCNN:
    """arcgis.learn's FasterRCNN (``masks`` False) or MaskRCNN on ``encoder`` (a timm ResNet from
    ``backbones.create_encoder``); kwargs: torchvision's rpn_* / box_* arguments."""
    from torchvision.models.detection import FasterRCNN, MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    name = str(backbone_name).lower()
    if name in FPN_RESNETS:
        backbone = ResNetFPN(freeze_batchnorm(encoder.model), encoder.channels[-4:])
        sizes = FPN_SIZES
    elif name in BODY_RESNETS:
        backbone = ResNetBody(encoder.model, int(encoder.channels[-1]))
        sizes = FPN_SIZES[:1]
    else:
        raise ValueError(f"arcgis.learn's R-CNN layout is built on {', '.join(BODY_RESNETS + FPN_RESNETS)}, "
                         f"not {backbone_name}")
    anchors = AnchorGenerator(sizes=sizes, aspect_ratios=(RATIOS,) * len(sizes))
    cls = MaskRCNN if masks else FasterRCNN
    net = cls(backbone, num_classes=int(num_classes), rpn_anchor_generator=anchors, min_size=32, max_size=64,
              image_mean=[0.0], image_std=[1.0], **kwargs)
    net.transform = ResizingTransform(int(chip_size))
    if masks:
        calm_mask_logits(net)
    return ArcgisRCNN(net)

