"""The FEATURE_CLASSIFIER network: a timm feature extractor, average+max pooling of its
deepest feature map (fastai's AdaptiveConcatPool2d), dropout and a linear layer.

``forward`` gives (N, K) logits. Whether the model is multi-label (one sigmoid per class)
or single-label (softmax) is kept in the ``multi_label`` buffer, so it travels in the
.pth with the weights; the classification task sets it from the training data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import Encoder


class FeatureClassifierNet(nn.Module):
    def __init__(self, encoder: Encoder, num_classes: int, dropout: float = 0.2):
        super().__init__()
        self.encoder = encoder.model
        self.nhwc = bool(encoder.nhwc)
        channels = int(encoder.channels[-1])
        self.head = nn.Sequential(nn.Dropout(float(dropout)), nn.Linear(2 * channels, int(num_classes)))
        self.register_buffer("multi_label", torch.zeros((), dtype=torch.uint8))

    @property
    def is_multi_label(self) -> bool:
        return bool(self.multi_label.item())

    def set_multi_label(self, value: bool) -> None:
        self.multi_label.fill_(1 if value else 0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 2 * channels) pooled features of the deepest map."""
        f = self.encoder(x)[-1]
        if self.nhwc:
            f = f.permute(0, 3, 1, 2)
        return torch.cat([F.adaptive_avg_pool2d(f, 1), F.adaptive_max_pool2d(f, 1)], dim=1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
