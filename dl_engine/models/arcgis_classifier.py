"""arcgis.learn's FeatureClassifier network: fastai v1's ``cnn_learner`` model (a torchvision
ResNet body and fastai's default head), written for torch alone so that its state dict has
arcgis.learn's names and shapes ("0.0.weight" … "1.8.bias") and a package we train loads in
arcgis.learn (``FeatureClassifier.from_model``), and one arcgis.learn trained loads here.

Layout (``nn.Sequential(body, head)``, as fastai's ``create_cnn_model`` returns it):
  0 the body: conv1, bn1, relu, maxpool, layer1..layer4 (torchvision's children up to the pool)
  1 the head (fastai's ``create_head(2C, K)``, ps=0.5): 0 concat pooling (max, then average),
    1 flatten, 2 BatchNorm1d(2C), 3 Dropout(ps/2), 4 Linear(2C, 512), 5 ReLU,
    6 BatchNorm1d(512), 7 Dropout(ps), 8 Linear(512, K)
Checked against arcgis.learn 2.4.4 for resnet18 … resnet152 (tests/data/arcgis_layouts/).

``forward`` gives (N, K) logits for a chip of any size (the pooling is adaptive); fastai's
``pred_batch`` turns them into probabilities with the loss's activation: softmax over the classes,
or one sigmoid per class for MultiLabeled_Tiles (``multi_label``; not part of the state dict,
which must be arcgis.learn's: the task sets it from the training data, Classify Objects from the
emd's MetaDataMode).

The body's modules are timm's ResNet modules (torchvision's names and computation), so
pretrained weights and band adaptation come from ``backbones.create_encoder``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .arcgis_unet import resnet_body

HIDDEN = 512  # fastai's create_head: one hidden layer of 512 features
DEFAULT_PS = 0.5  # fastai's cnn_learner default ps: dropout before the last layer (half before the first)


class ConcatPool(nn.Module):
    """fastai's AdaptiveConcatPool2d(1): max pooling, then average pooling, side by side."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.adaptive_max_pool2d(x, 1), F.adaptive_avg_pool2d(x, 1)], dim=1)


def create_head(features: int, num_classes: int, ps: float = DEFAULT_PS) -> nn.Sequential:
    """fastai's create_head(features, num_classes, ps=ps, concat_pool=True); the Linear layers start
    as cnn_learner leaves them (kaiming normal, zero bias)."""
    layers = [ConcatPool(), nn.Flatten(),
              nn.BatchNorm1d(features), nn.Dropout(ps / 2), nn.Linear(features, HIDDEN), nn.ReLU(inplace=True),
              nn.BatchNorm1d(HIDDEN), nn.Dropout(ps), nn.Linear(HIDDEN, int(num_classes))]
    for layer in layers:
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_normal_(layer.weight)
            nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers)


class ArcgisFeatureClassifier(nn.Sequential):
    """``nn.Sequential(body, head)``: (N, C, H, W) -> (N, K) logits."""

    def __init__(self, body: nn.Sequential, features: int, num_classes: int, ps: float = DEFAULT_PS):
        super().__init__(body, create_head(2 * int(features), num_classes, ps))
        self.multi_label = False

    @property
    def encoder(self) -> nn.Sequential:
        return self[0]

    @property
    def is_multi_label(self) -> bool:
        return bool(self.multi_label)

    def set_multi_label(self, value: bool) -> None:
        self.multi_label = bool(value)


def body_features(body: nn.Sequential) -> int:
    """Channels of the body's last map (512 for resnet18/34, 2048 for the deeper ones)."""
    last = body[-1][-1]
    conv = getattr(last, "conv3", None) or last.conv2
    return int(conv.out_channels)


def build(encoder, num_classes: int, ps: float = DEFAULT_PS) -> ArcgisFeatureClassifier:
    """The network over a ``backbones.Encoder`` of a torchvision ResNet (resnet18 … resnet152)."""
    body = resnet_body(encoder.model)
    return ArcgisFeatureClassifier(body, body_features(body), num_classes, ps)
