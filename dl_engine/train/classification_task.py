"""Object (tile) classification (FEATURE_CLASSIFIER): batches, loss, metrics, sample results.

The task interface is the one of pixel_task.py. Samples come as

- Labeled_Tiles / Imagenet: ``label``, the class index 0..K-1 (-1: a class the export does
  not declare, left out of loss and metrics) → softmax, cross-entropy;
- MultiLabeled_Tiles: ``labels``, multi-hot (K,) → one sigmoid per class, binary
  cross-entropy; a class is predicted when its probability reaches ``threshold``.

Chips of different sizes (CROP_MODE BOUNDING_BOX exports: Variable_Size) are resized to the
chip size when batched, so every chip is CHIP_SIZE x CHIP_SIZE.

Validation metrics per epoch (``metrics``):
- single-label: ``accuracy`` (correct chips / chips), per class precision, recall, F1 (and
  IoU), ``f1`` = macro F1 over the classes seen in truth or prediction, and
  ``confusion_matrix`` (rows truth, columns prediction, in class-index order) for the report;
- multi-label: ``accuracy`` = share of chips whose whole label set is right (sample
  accuracy), ``label_accuracy`` = share of right (chip, class) decisions (fastai's
  accuracy_thresh, which arcgis.learn reports), per class precision, recall, F1, IoU, ``f1``
  = macro F1, and ``confusion_matrix`` = per class [[TN, FP], [FN, TP]].
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.classes import ClassMap
from ..errors import InputError
from ..data.samples import _class_of_folder, read_voc
from ..models.classification import MULTI_LABEL_FORMATS, feature_classifier_options
from ..package.record import SampleResult
from .loader import to_device
from .metrics import pixel_metrics

IGNORE = -1  # label left out of loss and metrics
FOCAL_GAMMA = 2.0
BALANCE_LIMITS = (0.05, 20.0)  # class_balancing weights are clipped to this range


class ClassificationStats:
    """Validation counts of one epoch in one int64 tensor (summed over processes at once):
    the K x K confusion matrix (single-label), per class TP, FP, FN, TN (multi-label), and
    chips whose label set is fully right / chips counted (multi-label)."""

    def __init__(self, num_classes: int, device=None):
        self.k = int(num_classes)
        self.values = torch.zeros(self.k * self.k + 4 * self.k + 2, dtype=torch.int64, device=device)

    @property
    def confusion(self) -> torch.Tensor:
        return self.values[: self.k * self.k].view(self.k, self.k)

    @property
    def per_class(self) -> torch.Tensor:  # (K, 4) TP, FP, FN, TN
        start = self.k * self.k
        return self.values[start: start + 4 * self.k].view(self.k, 4)

    @property
    def exact(self) -> torch.Tensor:  # (2,) right chips, chips
        return self.values[-2:]

    @torch.no_grad()
    def update_single(self, predicted: torch.Tensor, target: torch.Tensor) -> None:
        keep = target >= 0
        t, p = target[keep].to(torch.int64), predicted[keep].to(torch.int64)
        n = self.k
        self.confusion.add_(torch.bincount(t * n + p, minlength=n * n).reshape(n, n))

    @torch.no_grad()
    def update_multi(self, predicted: torch.Tensor, target: torch.Tensor, keep: torch.Tensor) -> None:
        """predicted, target: (N, K) bool; keep: (K,) bool classes counted (not ignored)."""
        p, t = predicted[:, keep], target[:, keep]
        counts = torch.stack([(p & t).sum(0), (p & ~t).sum(0), (~p & t).sum(0), (~p & ~t).sum(0)], dim=1)
        self.per_class[keep] += counts.to(torch.int64)
        self.exact[0] += int((p == t).all(dim=1).sum())
        self.exact[1] += int(p.shape[0])


class ClassificationTask:
    kind = "classification"
    metric_keys = ["accuracy", "f1"]

    def __init__(self, class_map: ClassMap, arguments: dict):
        opts = feature_classifier_options(arguments)
        self.class_map = class_map
        self.num_classes = class_map.num_classes
        self.names = list(class_map.names)
        self.focal = bool(arguments.get("focal_loss"))
        self.mixup = bool(arguments.get("mixup"))
        self.class_balancing = bool(arguments.get("class_balancing"))
        self.oversample = opts["oversample"]
        self.threshold = opts["threshold"]
        self.ignore_index = self._ignored(arguments.get("ignore_classes") or [])
        self.class_weights: Optional[torch.Tensor] = None  # CE weights, or BCE pos_weight (multi-label)
        self.multi_label: Optional[bool] = None  # from the format (prepare), else from the batches
        self.chip_size: Optional[int] = None  # chips of another size are resized to it when batched

    def _ignored(self, values: Sequence) -> List[int]:
        out = []
        for v in values:
            index = self.class_map.index_of_value(int(v)) if str(v).strip().lstrip("-").isdigit() else None
            if index is None:
                raise InputError("ARGUMENTS", f"ignore_classes: {v!r} is not a class value of the training data; "
                                             f"class values: {', '.join(map(str, self.class_map.values))}")
            out.append(index)
        if out and len(set(out)) >= self.num_classes:
            raise InputError("ARGUMENTS", "ignore_classes leaves no class to learn")
        return out

    # ---- set-up before the loaders (called by the trainer) ---------------------------------

    def prepare(self, td, model=None, chip_size: Optional[int] = None, log=print) -> None:
        """Look at the training data: single- or multi-label (from the format; also stored in
        the network), the chip size of batches, class_balancing weights and oversampling
        (which repeats refs in ``td.train``)."""
        self.multi_label = td.data.metadata_format in MULTI_LABEL_FORMATS
        if model is not None and hasattr(model, "set_multi_label"):
            model.set_multi_label(self.multi_label)
        if chip_size:
            self.chip_size = int(chip_size)
        if not (self.class_balancing or self.oversample):
            return
        labels = [self.label_of(ref, td.reader) for ref in td.train]
        if self.class_balancing:
            weights = self.balance(labels)
            log("class balancing: loss weights " + ", ".join(f"{n} {w:.2f}" for n, w in zip(self.names, weights)))
        if self.oversample:
            if self.multi_label:
                log("oversample applies to single-label data (Labeled_Tiles, Imagenet); ignored for "
                    "MultiLabeled_Tiles")
            else:
                td.train = self.oversampled(td.train, labels, seed=int(getattr(td, "seed", 0)))
                counts = np.bincount([lab for lab in labels if lab >= 0], minlength=self.num_classes)
                log(f"oversample: {len(labels)} training chips repeated to {len(td.train)} (per class before: "
                    + ", ".join(f"{n} {c}" for n, c in zip(self.names, counts)) + ")")

    def label_of(self, ref, reader):
        """The label of a training chip without reading its image: the class index (-1 when
        unknown) or, multi-label, the multi-hot (K,) array."""
        fmt = reader.metadata_format
        if fmt == "Imagenet":
            index = _class_of_folder(self.class_map, ref.class_name) if ref.class_name else None
            return -1 if index is None else index
        objects = read_voc(ref.label) if ref.label else []
        if fmt in MULTI_LABEL_FORMATS:
            hot = np.zeros(self.num_classes, np.float32)
            for name, _ in objects:
                for part in name.split(","):
                    index = self.class_map.index_of_name(part) if part.strip() else None
                    if index is not None:
                        hot[index] = 1.0
            return hot
        index = self.class_map.index_of_name(objects[0][0]) if objects else None
        return -1 if index is None else index

    def balance(self, labels: Sequence) -> np.ndarray:
        """Loss weights from the training labels. Single-label: cross-entropy weights
        median frequency / class frequency; multi-label: BCE positive weights negatives /
        positives of each class. Clipped to BALANCE_LIMITS; classes never seen weigh 1."""
        k = self.num_classes
        weights = np.ones(k)
        if self.multi_label or (len(labels) and np.ndim(labels[0]) == 1):
            hot = np.stack([np.asarray(v, np.float64) for v in labels]) if len(labels) else np.zeros((0, k))
            pos = hot.sum(0)
            neg = len(hot) - pos
            seen = pos > 0
            weights[seen] = neg[seen] / pos[seen]
        else:
            counts = np.bincount([int(v) for v in labels if int(v) >= 0], minlength=k)[:k].astype(np.float64)
            seen = counts > 0
            if seen.any():
                freq = counts / counts.sum()
                weights[seen] = np.median(freq[seen]) / freq[seen]
        weights = np.clip(weights, *BALANCE_LIMITS)
        self.class_weights = torch.tensor(weights, dtype=torch.float32)
        return weights

    def oversampled(self, refs: Sequence, labels: Sequence[int], seed: int = 0) -> list:
        """``refs`` with the chips of each class repeated (whole copies, then a seeded random
        part) up to the count of the most common class; unknown labels kept once."""
        refs, labels = list(refs), [int(v) for v in labels]
        by_class: Dict[int, List[int]] = {}
        for i, lab in enumerate(labels):
            if lab >= 0:
                by_class.setdefault(lab, []).append(i)
        if not by_class:
            return refs
        target = max(len(v) for v in by_class.values())
        rng = np.random.default_rng(seed)
        out = list(refs)
        for members in by_class.values():
            need = target - len(members)
            whole, rest = divmod(need, len(members))
            out += [refs[i] for i in members] * whole
            out += [refs[i] for i in rng.choice(members, size=rest, replace=False)] if rest else []
        return out

    # ---- batches ---------------------------------------------------------------------------

    def collate(self, items: List[dict]) -> Dict[str, object]:
        batch: Dict[str, object] = {"image": torch.from_numpy(np.stack([self._sized(it["image"]) for it in items])),
                                    "key": [it["key"] for it in items]}
        if any("labels" in it for it in items):
            batch["labels"] = torch.from_numpy(np.stack([np.asarray(it["labels"], np.float32) for it in items]))
        else:
            batch["label"] = torch.tensor([int(it.get("label", IGNORE)) for it in items], dtype=torch.int64)
        return batch

    def _sized(self, image: np.ndarray) -> np.ndarray:
        size = self.chip_size
        image = np.asarray(image, np.float32)
        if not size or image.shape[1:] == (size, size):
            return image
        t = torch.from_numpy(np.ascontiguousarray(image))[None]
        out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                            antialias=bool(image.shape[1] > size or image.shape[2] > size))
        return out[0].numpy()

    def _is_multi(self, batch: dict) -> bool:
        return "labels" in batch if self.multi_label is None else self.multi_label

    # ---- loss ------------------------------------------------------------------------------

    def target(self, label: torch.Tensor) -> torch.Tensor:
        if not self.ignore_index:
            return label
        label = label.clone()
        for i in self.ignore_index:
            label[label == i] = IGNORE
        return label

    def _keep(self, device) -> torch.Tensor:
        keep = torch.ones(self.num_classes, dtype=torch.bool, device=device)
        if self.ignore_index:
            keep[self.ignore_index] = False
        return keep

    def _ce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        valid = target != IGNORE
        if not bool(valid.any()):
            return logits.sum() * 0.0
        weight = self.class_weights.to(logits.device) if self.class_weights is not None else None
        if not self.focal:
            return F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE)
        ce = F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE, reduction="none")
        pt = torch.exp(-F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="none"))
        return ((1 - pt) ** FOCAL_GAMMA * ce)[valid].sum() / valid.sum()

    def _bce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target = logits.float(), target.float()
        pos_weight = self.class_weights.to(logits.device) if self.class_weights is not None else None
        loss = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight, reduction="none")
        if self.focal:
            p = torch.sigmoid(logits)
            pt = p * target + (1 - p) * (1 - target)
            loss = (1 - pt) ** FOCAL_GAMMA * loss
        keep = self._keep(logits.device).float()
        return (loss * keep).sum() / (keep.sum() * loss.shape[0]).clamp(min=1)

    def _loss(self, logits: torch.Tensor, batch: dict, perm=None) -> torch.Tensor:
        if self._is_multi(batch):
            y = batch["labels"]
            return self._bce(logits, y if perm is None else y[perm])
        y = self.target(batch["label"])
        return self._ce(logits, y if perm is None else y[perm])

    def training_loss(self, model, batch: dict, runtime) -> torch.Tensor:
        x = batch["image"]
        if self.mixup and x.shape[0] > 1:
            lam = float(np.random.beta(0.4, 0.4))
            perm = torch.randperm(x.shape[0], device=x.device)
            with runtime.autocast():
                logits = model(lam * x + (1 - lam) * x[perm])
            if self._is_multi(batch):  # mixed targets
                y = batch["labels"].float()
                return self._bce(logits, lam * y + (1 - lam) * y[perm])
            return lam * self._loss(logits, batch) + (1 - lam) * self._loss(logits, batch, perm)
        with runtime.autocast():
            logits = model(x)
        return self._loss(logits, batch)

    # ---- validation ------------------------------------------------------------------------

    def accumulator(self, device) -> ClassificationStats:
        return ClassificationStats(self.num_classes, device)

    def _predict(self, logits: torch.Tensor, multi: bool) -> torch.Tensor:
        """Multi-label: (N, K) bool; else (N,) class indices (ignored classes never predicted)."""
        logits = logits.float()
        if multi:
            return torch.sigmoid(logits) >= self.threshold
        if self.ignore_index and len(self.ignore_index) < self.num_classes:
            logits = logits.clone()
            logits[:, self.ignore_index] = float("-inf")
        return logits.argmax(1)

    @torch.no_grad()
    def validation_step(self, model, batch: dict, runtime, stats: ClassificationStats):
        """(sum of the batch's losses, number of chips counted)"""
        with runtime.autocast():
            logits = model(batch["image"])
        loss = self._loss(logits, batch)
        multi = self._is_multi(batch)
        if multi:
            keep = self._keep(logits.device)
            stats.update_multi(self._predict(logits, True), batch["labels"] >= 0.5, keep)
            n = int(logits.shape[0])
        else:
            y = self.target(batch["label"])
            stats.update_single(self._predict(logits, False), y)
            n = int((y != IGNORE).sum())
        return float(loss) * n, n

    @staticmethod
    def reduce(stats: ClassificationStats, dist) -> np.ndarray:
        dist.all_sum(stats.values)
        return stats.values.detach().cpu().numpy()

    def metrics(self, values: np.ndarray) -> Dict[str, object]:
        k = self.num_classes
        values = np.asarray(values, np.int64)
        confusion = values[: k * k].reshape(k, k)
        per_class = values[k * k: k * k + 4 * k].reshape(k, 4)
        exact = values[-2:]
        multi = self.multi_label if self.multi_label is not None else bool(exact[1] > 0)
        if not multi:
            m = pixel_metrics(confusion, self.names, background=False, exclude=self.ignore_index)
            return {"accuracy": m["accuracy"], "f1": m["f1"], "per_class": m["per_class"],
                    "confusion_matrix": confusion.tolist()}
        return self._multi_metrics(per_class, exact)

    def _multi_metrics(self, counts: np.ndarray, exact: np.ndarray) -> Dict[str, object]:
        tp, fp, fn, tn = (counts[:, i].astype(np.float64) for i in range(4))
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
            recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
            iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), 0.0)
        kept = [i for i in range(self.num_classes) if i not in self.ignore_index]
        counted = [i for i in kept if tp[i] + fp[i] + fn[i] > 0]
        decisions = (tp + fp + fn + tn)[kept].sum()
        return {
            "accuracy": float(exact[0] / exact[1]) if exact[1] else 0.0,
            "label_accuracy": float((tp + tn)[kept].sum() / decisions) if decisions else 0.0,
            "f1": float(np.mean(f1[counted])) if counted else 0.0,
            "per_class": {self.names[i]: {"precision": float(precision[i]), "recall": float(recall[i]),
                                          "f1": float(f1[i]), "iou": float(iou[i])} for i in kept},
            "confusion_matrix": [[[int(tn[i]), int(fp[i])], [int(fn[i]), int(tp[i])]]
                                 for i in range(self.num_classes)],
            "multi_label": True,
        }

    # ---- show_results -----------------------------------------------------------------------

    def _names_of(self, hot: np.ndarray) -> str:
        names = [self.names[i] for i in np.flatnonzero(np.asarray(hot) >= 0.5)]
        return ", ".join(names) if names else "(none)"

    @torch.no_grad()
    def sample_results(self, model, items: List[dict], runtime, display) -> List[SampleResult]:
        """A few validation chips with their true and predicted classes."""
        batch = to_device(self.collate(items), runtime.device, runtime.channels_last)
        with runtime.autocast():
            logits = model(batch["image"]).float()
        multi = self._is_multi(batch)
        probs = (torch.sigmoid(logits) if multi else torch.softmax(logits, 1)).cpu().numpy()
        out = []
        for i, it in enumerate(items):
            if multi:
                truth = self._names_of(it["labels"])
                hot = probs[i] >= self.threshold
                predicted = self._names_of(hot)
                score = float(probs[i][hot].mean()) if hot.any() else float(1 - probs[i].max())
                correct = bool(np.array_equal(hot, np.asarray(it["labels"]) >= 0.5))
            else:
                label = int(it.get("label", IGNORE))
                truth = self.names[label] if 0 <= label < len(self.names) else "(unknown class)"
                index = int(self._predict(torch.from_numpy(probs[i:i + 1]), False)[0])
                predicted, score = self.names[index], float(probs[i][index])
                correct = index == label
            out.append(SampleResult(image=display(it["image"]), truth=None, prediction=None, truth_label=truth,
                                    predicted_label=predicted, score=score, correct=correct))
        return out
