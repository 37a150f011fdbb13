"""Faster R-CNN model configuration for ArcGIS Pro's model-extension inference path.

Written by the Deep learning tools QGIS plugin into a package as ``ModelConfiguration.py``; the
emd names this file (``ModelConfigurationFile``) and its class (``ModelFileConfigurationClass``),
and ArcGIS's ``_model_extension_inferencing`` imports it, builds the network with ``get_model``,
loads the package's weights into it and runs ``transform_input`` (or
``transform_input_multispectral``), the network and ``post_process`` on each batch of chips.

Standalone: torch and torchvision only. The network is torchvision's Faster R-CNN, as the plugin
trains it in arcgis.learn's layout:
- resnet50, resnet101, resnet152: on a ResNet-FPN (frozen batch norms, torchvision's default
  anchors and heads);
- resnet18, resnet34: on the ResNet's layers up to layer4 (keys backbone.0 ... backbone.7), with no
  FPN: one stride-32 map of 512 channels and 32 px anchors at three aspect ratios.
The chip is resized inside the network to 1.5 x its size (at most 2 x), and detections come back
in chip pixels.

Input: ArcGIS normalises the chips before ``transform_input``: RGB with the ImageNet statistics on
0..255, which is undone here to 0..1, since the network applies the ImageNet statistics itself;
multispectral (or non-8-bit RGB) with the emd's NormalizationStats, which the network takes as is
(its own mean 0, standard deviation 1 per band).
"""

import inspect

import torch
import torchvision
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

FPN_RESNETS = ("resnet50", "resnet101", "resnet152")
BODY_RESNETS = ("resnet18", "resnet34")
RESNETS = BODY_RESNETS + FPN_RESNETS
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_SIZE_FACTOR, MAX_SIZE_FACTOR = 1.5, 2
# FasterRCNN's own arguments, which the network is built with; Kwargs may hold others (pretrained_backbone…)
_FIXED = ("self", "backbone", "num_classes", "min_size", "max_size", "image_mean", "image_std")
NETWORK_ARGUMENTS = tuple(p for p in inspect.signature(FasterRCNN.__init__).parameters if p not in _FIXED)


def _name(backbone):
    name = backbone if isinstance(backbone, str) else getattr(backbone, "__name__", "resnet50")
    return str(name or "resnet50").lower()


def build_network(backbone, num_classes, chip_size, bands=None, **kwargs):
    """The Faster R-CNN for ``num_classes`` outputs (background included) on ``backbone``;
    ``bands``: the number of bands of data normalised with NormalizationStats (None: 8-bit RGB)."""
    name = _name(backbone)
    if name not in RESNETS:
        raise ValueError(f"this Faster R-CNN configuration builds {', '.join(RESNETS)}, not {name}")
    options = {k: v for k, v in kwargs.items() if k in NETWORK_ARGUMENTS}
    if name in FPN_RESNETS:
        body = resnet_fpn_backbone(backbone_name=name, weights=None)
    else:  # fastai's create_body: the ResNet without its pooling and classifier
        body = torch.nn.Sequential(*list(getattr(torchvision.models, name)(weights=None).children())[:-2])
        body.out_channels = 512
        # one map: torchvision's five default anchor sizes would not match it; arcgis.learn uses the first
        options.setdefault("rpn_anchor_generator", AnchorGenerator(sizes=((32,),), aspect_ratios=((0.5, 1.0, 2.0),)))
    stats = {} if bands is None else {"image_mean": [0.0] * int(bands), "image_std": [1.0] * int(bands)}
    return FasterRCNN(body, num_classes=int(num_classes), min_size=MIN_SIZE_FACTOR * chip_size,
                      max_size=MAX_SIZE_FACTOR * chip_size, **stats, **options)


class DLToolsFasterRCNN:
    """The configuration class ArcGIS's model extension calls (get_model, on_batch_begin,
    transform_input, transform_input_multispectral, loss, post_process)."""

    def get_model(self, data, backbone=None, **kwargs):
        self.imagenet_input = not (getattr(data, "_is_multispectral", False) or getattr(data, "_is_non8bit_rgb", False))
        bands = None if self.imagenet_input else len(getattr(data, "_extract_bands", None) or [0, 1, 2])
        self.model = build_network(backbone, len(data.classes), data.chip_size, bands, **kwargs)
        self.thresholds = None
        return self.model

    def _from_imagenet(self, xb):
        if not self.imagenet_input:
            return xb
        mean = torch.tensor(IMAGENET_MEAN, dtype=xb.dtype, device=xb.device)[:, None, None]
        std = torch.tensor(IMAGENET_STD, dtype=xb.dtype, device=xb.device)[:, None, None]
        return xb * std + mean

    def _set_thresholds(self, thresh, nms_overlap):
        heads = self.model.roi_heads
        if self.thresholds is None:
            self.thresholds = (heads.score_thresh, heads.nms_thresh)
        heads.score_thresh, heads.nms_thresh = float(thresh), float(nms_overlap)

    def transform_input(self, xb, thresh=0.5, nms_overlap=0.1):
        """A normalised batch (N, C, H, W) -> the network's input (a list of images)."""
        self._set_thresholds(thresh, nms_overlap)
        return list(self._from_imagenet(xb))

    def transform_input_multispectral(self, xb, thresh=0.5, nms_overlap=0.1):
        self._set_thresholds(thresh, nms_overlap)
        return list(xb)

    def on_batch_begin(self, learn, model_input_batch, model_target_batch, **kwargs):
        """Training: the network takes the images and their targets (boxes x1, y1, x2, y2 in chip
        pixels from the -1..1 y1, x1, y2, x2 boxes) and returns its losses."""
        self.model.train()
        images = self._from_imagenet(model_input_batch)
        chip = images.shape[-1]
        targets = []
        for boxes, labels in zip(*model_target_batch):
            boxes = (boxes + 1) / 2 * chip
            keep = (boxes[:, 2:] >= boxes[:, :2] + 1).all(1)
            targets.append({"boxes": boxes[keep][:, [1, 0, 3, 2]], "labels": labels[keep]})
        if images.shape[0] < 2:  # one chip: trained as two copies, as arcgis.learn does
            images, targets = torch.cat((images, images)), targets + targets
        return [list(images), targets], model_target_batch

    def loss(self, model_output, *model_target):
        if isinstance(model_output, tuple):
            model_output = model_output[1]
        return sum(torch.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0) for v in model_output.values())

    def post_process(self, pred, nms_overlap, thres, chip_size, device):
        """Per image (boxes y1, x1, y2, x2 in -1..1, labels, scores), as ArcGIS expects them."""
        if self.thresholds is not None:
            self.model.roi_heads.score_thresh, self.model.roi_heads.nms_thresh = self.thresholds
            self.thresholds = None
        out = []
        for p in pred:
            boxes = (p["boxes"] / (chip_size / 2) - 1)[:, [1, 0, 3, 2]]
            out.append((boxes.detach().to(device), p["labels"].to(device), p["scores"].detach().to(device)))
        return out
