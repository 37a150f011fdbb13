"""Faster R-CNN and Mask R-CNN (arcgis.learn's FasterRCNN and MaskRCNN): torchvision's
models on a registry backbone.

- Backbone: the four deepest maps of the encoder (strides 4..32 for a resnet) under a
  256-channel FPN plus torchvision's max-pooled level (stride 64), as
  ``fasterrcnn_resnet50_fpn`` builds it, but for any registry backbone and band count.
- RPN anchors: one size per level, 4 x its stride (16, 32, 64, 128, 256 px for a resnet:
  remote-sensing objects are small; torchvision's COCO default is twice that), aspect
  ratios 0.5, 1, 2.
- The rpn_* / box_* keyword arguments are torchvision's, with its defaults.
- No resizing and no normalisation inside (``det_tv.PassThroughTransform``).
"""

from __future__ import annotations

from torch import nn

from .det_base import EncoderFPN
from .det_tv import PassThroughTransform, TorchvisionDetector

FPN_CHANNELS = 256
RATIOS = (0.5, 1.0, 2.0)


class RCNNDetector(TorchvisionDetector):
    def __init__(self, encoder, num_classes: int, masks: bool = False, **kwargs):
        from torchvision.models.detection import FasterRCNN, MaskRCNN
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        from torchvision.ops import MultiScaleRoIAlign

        backbone = EncoderFPN(encoder, levels=4, out_channels=FPN_CHANNELS, extra="pool")
        sizes = tuple((4.0 * s,) for s in backbone.strides)
        anchor_generator = AnchorGenerator(sizes=sizes, aspect_ratios=(RATIOS,) * len(sizes))
        names = [str(i) for i in range(len(backbone.indices))]  # the pooled level takes no RoIs
        extra = {"box_roi_pool": MultiScaleRoIAlign(featmap_names=names, output_size=7, sampling_ratio=2)}
        if masks:
            extra["mask_roi_pool"] = MultiScaleRoIAlign(featmap_names=names, output_size=14, sampling_ratio=2)
        cls = MaskRCNN if masks else FasterRCNN
        net = cls(backbone, num_classes=int(num_classes), min_size=32, max_size=4096, image_mean=[0.0],
                  image_std=[1.0], rpn_anchor_generator=anchor_generator, **extra, **kwargs)
        net.transform = PassThroughTransform()
        if masks:
            calm_mask_logits(net)
        super().__init__(net, backbone)


def calm_mask_logits(net) -> None:
    """Mask logits start near 0 (loss ln 2): from random backbone weights the default init's
    large first logits make the first optimiser steps jump."""
    logits = net.roi_heads.mask_predictor.mask_fcn_logits
    nn.init.normal_(logits.weight, std=0.001)
    nn.init.zeros_(logits.bias)
