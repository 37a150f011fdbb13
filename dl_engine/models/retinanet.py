"""RetinaNet (arcgis.learn's RetinaNet): torchvision's RetinaNet on a registry backbone.

- Backbone: the three deepest maps of the encoder (strides 8, 16, 32 for a resnet) under a
  256-channel FPN with P6/P7 (strides 64, 128).
- Anchors per level: sizes 4 x stride x each of ``scales`` (arcgis.learn / fastai's
  [1, 2^-1/3, 2^-2/3]), aspect ratios ``ratios`` (height / width).
- Head: torchvision's RetinaNetHead with group norm (its v2 head: stable from random
  weights); focal loss for the classes, L1 for the boxes, as torchvision trains it.
- No resizing and no normalisation inside: the data layer normalises and the chip size is
  the network's input size (``det_tv.PassThroughTransform``).
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

from torch import nn

from .det_base import EncoderFPN
from .det_tv import TorchvisionDetector, PassThroughTransform

FPN_CHANNELS = 256


class RetinaNetDetector(TorchvisionDetector):
    def __init__(self, encoder, num_classes: int, scales: Sequence[float], ratios: Sequence[float]):
        from torchvision.models.detection import RetinaNet
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        from torchvision.models.detection.retinanet import RetinaNetHead

        backbone = EncoderFPN(encoder, levels=3, out_channels=FPN_CHANNELS, extra="p6p7")
        sizes = tuple(tuple(4.0 * s * float(scale) for scale in scales) for s in backbone.strides)
        anchor_generator = AnchorGenerator(sizes=sizes, aspect_ratios=(tuple(float(r) for r in ratios),) * len(sizes))
        head = RetinaNetHead(FPN_CHANNELS, anchor_generator.num_anchors_per_location()[0], int(num_classes),
                             norm_layer=partial(nn.GroupNorm, 32))
        net = RetinaNet(backbone, int(num_classes), min_size=32, max_size=4096, image_mean=[0.0], image_std=[1.0],
                        anchor_generator=anchor_generator, head=head, score_thresh=self.score_thresh,
                        nms_thresh=self.nms_thresh, detections_per_img=self.max_detections)
        net.transform = PassThroughTransform()
        super().__init__(net, backbone)
