"""Object detection (SSD, RETINANET, FASTERRCNN, YOLOV3) and instance detection (MASKRCNN):
batches, loss, validation metrics, sample results. The task interface is pixel_task.py's.

- Batches: ``image`` (N, C, H, W) and ``targets``, one dict per chip with ``boxes`` (n, 4)
  float32 xmin, ymin, xmax, ymax in chip pixels, ``labels`` (n,) int64 1..K, and for
  RCNN_Masks ``masks`` (n, H, W) uint8. Chips without objects have n = 0 and train as
  negatives (every anchor / proposal background).
- Loss: the sum of the network's losses (det_base.Detector's contract), the same in
  training and in validation (batch norm statistics untouched in validation).
- Validation metrics (detection_metrics.py): ``average_precision`` = mean AP at IoU 0.5
  over the classes (MONITOR AVERAGE_PRECISION; arcgis.learn's average_precision_score),
  ``coco_map`` = AP over IoU 0.5:0.95, and per class ``per_class`` {name:
  {average_precision, coco_ap, objects, detections}}. MASKRCNN is scored on mask IoU.
- ARGUMENTS class_balancing, mixup and ignore_classes are pixel/classification options:
  refused here with a message; focal_loss is SSD's (checked by the model).
"""

from __future__ import annotations

from typing import Dict, List

import numpy as np
import torch

from ..data.classes import ClassMap
from ..errors import InputError
from ..data.samples import read_box_label
from ..package.record import SampleResult
from .detection_metrics import APAccumulator, box_iou_np, detection_metrics
from .loader import to_device

SHOW_SCORE = 0.5  # detections drawn in show_results.png
MASK_THRESHOLD = 0.5  # mask probability → instance pixel


def collate(items: List[dict]) -> Dict[str, object]:
    targets = []
    for it in items:
        boxes = np.asarray(it.get("boxes") if it.get("boxes") is not None else np.zeros((0, 4)), np.float32)
        labels = np.asarray(it.get("box_classes") if it.get("box_classes") is not None else np.zeros(0), np.int64)
        t = {"boxes": torch.from_numpy(boxes.reshape(-1, 4).copy()), "labels": torch.from_numpy(labels.copy())}
        if it.get("instance_masks") is not None:
            t["masks"] = torch.from_numpy(np.asarray(it["instance_masks"], dtype=np.uint8))
        targets.append(t)
    return {"image": torch.from_numpy(np.stack([it["image"] for it in items])), "targets": targets,
            "key": [it["key"] for it in items]}


class DetectionTask:
    kind = "detection"
    metric_keys = ["average_precision", "coco_map"]
    collate = staticmethod(collate)

    def __init__(self, class_map: ClassMap, arguments: dict):
        self.class_map = class_map
        self.num_classes = class_map.num_classes
        for name, what in (("class_balancing", "class_balancing"), ("mixup", "mixup")):
            if arguments.get(name):
                raise InputError("ARGUMENTS", f"{what} applies to pixel and object classification models, not to "
                                             "object detectors; leave it out")
        if arguments.get("ignore_classes"):
            raise InputError("ARGUMENTS", "ignore_classes applies to pixel classification models; for a detector, "
                                         "export again without the classes to leave out")

    def prepare(self, td, model=None, chip_size=None, log=print) -> None:
        """Called by the trainer before training: every VOC/KITTI label file is read once, so
        a bad one is refused now (a InputError naming it) and not in the middle of an epoch;
        logs the objects per class and the chips without objects (trained as negatives)."""
        fmt = td.data.metadata_format
        if fmt not in ("PASCAL_VOC_rectangles", "KITTI_rectangles"):
            return
        counts = np.zeros(self.num_classes, np.int64)
        negatives = 0
        for ref in list(td.train) + list(td.valid):
            objects = read_box_label(fmt, ref.label)
            found = 0
            for name, box in objects:
                index = self.class_map.index_of_name(name)
                if index is not None and box is not None and box[2] > box[0] and box[3] > box[1]:
                    counts[index] += 1
                    found += 1
            negatives += found == 0
        log("objects: " + ", ".join(f"{n} {c}" for n, c in zip(self.class_map.names[1:], counts[1:]))
            + f"; {negatives} chip(s) without objects train as negatives")

    # ---- loss ---------------------------------------------------------------------------

    @staticmethod
    def _loss(losses: Dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(v.float() for v in losses.values())

    def training_loss(self, model, batch: dict, runtime) -> torch.Tensor:
        with runtime.autocast():
            losses = model(batch["image"], batch["targets"])
        return self._loss(losses)

    # ---- validation ---------------------------------------------------------------------

    def accumulator(self, device) -> APAccumulator:
        return APAccumulator(self.num_classes)

    @torch.no_grad()
    def validation_step(self, model, batch: dict, runtime, acc: APAccumulator):
        """(sum of the batch's losses, chips counted); detections scored into ``acc``."""
        images, targets = batch["image"], batch["targets"]
        with runtime.autocast():
            loss = float(self._loss(model(images, targets)))
            detections = model(images)
        for det, t in zip(detections, targets):
            self.score(acc, det, t)
        n = int(images.shape[0])
        return loss * n, n

    @staticmethod
    def score(acc: APAccumulator, det: Dict[str, torch.Tensor], target: Dict[str, torch.Tensor]) -> None:
        """One chip's detections against its objects (mask IoU when both have masks)."""
        if "masks" in det and "masks" in target:
            pred = (det["masks"].float() >= MASK_THRESHOLD).flatten(1).float()
            truth = target["masks"].flatten(1).float().to(pred.device)
            inter = pred @ truth.T
            union = pred.sum(1)[:, None] + truth.sum(1)[None, :] - inter
            iou = (inter / union.clamp(min=1)).cpu().numpy()
        else:
            iou = box_iou_np(det["boxes"].cpu().numpy(), target["boxes"].cpu().numpy())
        acc.add(det["scores"].cpu().numpy(), det["labels"].cpu().numpy(), target["labels"].cpu().numpy(), iou)

    @staticmethod
    def reduce(acc: APAccumulator, dist) -> Dict[str, np.ndarray]:
        state = acc.state()
        if dist is not None and dist.enabled:
            import torch.distributed as tdist

            states = [None] * dist.world_size
            tdist.all_gather_object(states, state)
            return APAccumulator.merge(states)
        return state

    def metrics(self, state: Dict[str, np.ndarray]) -> Dict[str, object]:
        return detection_metrics(state, self.class_map.names)

    # ---- show_results ---------------------------------------------------------------------

    @torch.no_grad()
    def sample_results(self, model, items: List[dict], runtime, display) -> List[SampleResult]:
        """Boxes (and instance masks) on a few validation chips: truth and predictions scoring
        at least SHOW_SCORE."""
        batch = to_device(self.collate(items), runtime.device, runtime.channels_last)
        with runtime.autocast():
            detections = model(batch["image"])
        out = []
        for it, det in zip(items, detections):
            keep = det["scores"] >= SHOW_SCORE
            truth = prediction = None
            if it.get("instance_masks") is not None:
                h, w = it["image"].shape[-2:]
                truth = _paint(np.asarray(it["instance_masks"]), np.asarray(it["box_classes"]), h, w)
                masks = det.get("masks")
                masks = np.zeros((0, h, w), bool) if masks is None else \
                    (masks[keep].float().cpu().numpy() >= MASK_THRESHOLD)
                prediction = _paint(masks, det["labels"][keep].cpu().numpy(), h, w)
            out.append(SampleResult(
                image=display(it["image"]), truth=truth, prediction=prediction,
                truth_boxes=np.asarray(it.get("boxes") if it.get("boxes") is not None else np.zeros((0, 4))),
                truth_box_classes=np.asarray(it.get("box_classes") if it.get("box_classes") is not None
                                             else np.zeros(0, np.int64)),
                predicted_boxes=det["boxes"][keep].float().cpu().numpy(),
                predicted_box_classes=det["labels"][keep].cpu().numpy(),
                predicted_box_scores=det["scores"][keep].float().cpu().numpy()))
        return out


def _paint(masks: np.ndarray, classes: np.ndarray, h: int, w: int) -> np.ndarray:
    """Instance masks → a class-index image (later instances on top)."""
    out = np.zeros((h, w), np.int64)
    for m, c in zip(masks, classes):
        out[np.asarray(m, bool)] = int(c)
    return out
