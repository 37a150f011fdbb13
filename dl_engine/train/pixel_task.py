"""Pixel classification (UNET, PSPNET, DEEPLAB): batches, loss, metrics, sample results.

A task is what the trainer knows about a model kind (dl_engine/train/families.py):
``collate``, ``training_loss``, ``accumulator``/``validation_step``/``reduce``/``metrics``
(validation, summed over processes), ``metric_keys`` and ``sample_results``."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.classes import ClassMap
from ..errors import InputError
from ..models.pixel import DICE_LOSS_FRACTION
from ..package.record import SampleResult
from .loader import to_device
from .metrics import ConfusionMatrix, pixel_metrics

IGNORE = -1  # target value left out of loss and metrics
DICE_AVERAGES = ("macro", "micro")


def collate(items: List[dict]) -> Dict[str, object]:
    return {"image": torch.from_numpy(np.stack([it["image"] for it in items])),
            "mask": torch.from_numpy(np.stack([it["mask"] for it in items]).astype(np.int64)),
            "key": [it["key"] for it in items]}


def dice_settings(arguments: dict):
    """(dice_loss_fraction, dice_loss_average) from ARGUMENTS, checked."""
    fraction = arguments.get("dice_loss_fraction")
    fraction = DICE_LOSS_FRACTION if fraction is None else fraction
    try:
        fraction = float(fraction)
    except (TypeError, ValueError):
        fraction = float("nan")
    if not 0.0 <= fraction <= 1.0:
        raise InputError("ARGUMENTS", f"dice_loss_fraction {arguments.get('dice_loss_fraction')!r} must be a "
                                      "number from 0 (cross-entropy only) to 1 (dice only)")
    average = str(arguments.get("dice_loss_average") or "macro").strip().lower()
    if average not in DICE_AVERAGES:
        raise InputError("ARGUMENTS", f"dice_loss_average {arguments.get('dice_loss_average')!r} is not "
                                      f"{' or '.join(DICE_AVERAGES)} (macro: the mean of each class's dice, so "
                                      "a rare class counts as much as the background; micro: all pixels pooled)")
    return fraction, average


def dice_loss(logits: torch.Tensor, target: torch.Tensor, average: str = "macro") -> torch.Tensor:
    """1 - soft dice of the softmax against the one-hot target, over the batch; IGNORE pixels left
    out (smoothed by 1: a class neither present nor predicted scores 1). ``macro``: the mean of the
    classes' dice; ``micro``: every class's pixels pooled."""
    valid = (target != IGNORE).unsqueeze(1).float()
    probs = logits.float().softmax(1) * valid
    onehot = F.one_hot(target.clamp(min=0), logits.shape[1]).permute(0, 3, 1, 2).float() * valid
    dims = (0, 2, 3)
    inter, total = (probs * onehot).sum(dims), probs.sum(dims) + onehot.sum(dims)
    if average == "micro":
        return 1 - (2 * inter.sum() + 1) / (total.sum() + 1)
    return 1 - ((2 * inter + 1) / (total + 1)).mean()


class PixelTask:
    kind = "pixel"
    metric_keys = ["accuracy", "miou", "dice"]
    collate = staticmethod(collate)

    def __init__(self, class_map: ClassMap, arguments: dict):
        self.class_map = class_map
        self.num_classes = class_map.num_classes
        self.focal = bool(arguments.get("focal_loss"))
        self.dice_fraction, self.dice_average = dice_settings(arguments)
        self.mixup = bool(arguments.get("mixup"))
        self.balancing = bool(arguments.get("class_balancing"))
        self.ignore_index = self._ignored(arguments.get("ignore_classes") or [])
        self.class_weights: Optional[torch.Tensor] = None

    def _ignored(self, values: Sequence) -> List[int]:
        out = []
        for v in values:
            index = self.class_map.index_of_value(int(v)) if str(v).lstrip("-").isdigit() else None
            if index is None:
                raise InputError("ARGUMENTS", f"ignore_classes: {v!r} is not a class value of the training data; "
                                             f"class values: {', '.join(map(str, self.class_map.values))}")
            out.append(index)
        return out

    # ---- class balancing ----------------------------------------------------------------

    def prepare(self, td, model, chip_size: int, log) -> None:
        """Before training: class_balancing weights from the training masks."""
        if not self.balancing:
            return
        ds = td.valid_dataset()  # no augmentation, over the training chips below
        ds.refs = td.train[:200]
        weights = self.balance([ds.sample(i).mask for i in range(len(ds))])
        log("class balancing: loss weights " + ", ".join(f"{n} {w:.2f}" for n, w in zip(self.class_map.names,
                                                                                       weights)))

    def balance(self, masks: Sequence[np.ndarray]) -> np.ndarray:
        """Loss weights ~ 1/frequency (median-frequency balancing), from training masks."""
        counts = np.zeros(self.num_classes, np.float64)
        for m in masks:
            counts += np.bincount(m.ravel(), minlength=self.num_classes)[: self.num_classes]
        freq = counts / max(counts.sum(), 1)
        present = freq > 0
        weights = np.ones(self.num_classes)
        if present.any():
            weights[present] = np.median(freq[present]) / freq[present]
        weights = np.clip(weights, 0.05, 20.0)
        self.class_weights = torch.tensor(weights, dtype=torch.float32)
        return weights

    # ---- loss ---------------------------------------------------------------------------

    def target(self, mask: torch.Tensor) -> torch.Tensor:
        if not self.ignore_index:
            return mask
        mask = mask.clone()
        for i in self.ignore_index:
            mask[mask == i] = IGNORE
        return mask

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (or focal), mixed with dice by ``dice_loss_fraction`` (arcgis.learn's rule:
        (1 - f) * CE + f * dice); dice lets a rare foreground weigh as much as the background."""
        logits = logits.float()
        weight = self.class_weights.to(logits.device) if self.class_weights is not None else None
        if not self.focal:
            base = F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE)
        else:
            ce = F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE, reduction="none")
            pt = torch.exp(-F.cross_entropy(logits, target, ignore_index=IGNORE, reduction="none"))
            valid = (target != IGNORE).float()
            base = ((1 - pt) ** 2 * ce * valid).sum() / valid.sum().clamp(min=1)
        if not self.dice_fraction:
            return base
        f = self.dice_fraction
        return (1 - f) * base + f * dice_loss(logits, target, self.dice_average)

    def training_loss(self, model, batch: dict, runtime) -> torch.Tensor:
        x, y = batch["image"], self.target(batch["mask"])
        if self.mixup and x.shape[0] > 1:
            lam = float(np.random.beta(0.4, 0.4))
            perm = torch.randperm(x.shape[0], device=x.device)
            with runtime.autocast():
                logits = model(lam * x + (1 - lam) * x[perm])
            return lam * self._loss(logits, y) + (1 - lam) * self._loss(logits, y[perm])
        with runtime.autocast():
            logits = model(x)
        return self._loss(logits, y)

    # ---- validation ---------------------------------------------------------------------

    def accumulator(self, device) -> ConfusionMatrix:
        return ConfusionMatrix(self.num_classes, device)

    @torch.no_grad()
    def validation_step(self, model, batch: dict, runtime, confusion: ConfusionMatrix):
        """(sum of the batch's losses, number of pixels counted)"""
        y = self.target(batch["mask"])
        with runtime.autocast():
            logits = model(batch["image"])
        loss = self._loss(logits, y)
        confusion.update(logits.argmax(1), y)
        n = int((y != IGNORE).sum())
        return float(loss) * n, n

    @staticmethod
    def reduce(confusion: ConfusionMatrix, dist) -> np.ndarray:
        dist.all_sum(confusion.matrix)
        return confusion.numpy()

    def metrics(self, matrix: np.ndarray) -> Dict[str, object]:
        return pixel_metrics(matrix, self.class_map.names, self.class_map.background, self.ignore_index)

    # ---- show_results ---------------------------------------------------------------------

    @torch.no_grad()
    def sample_results(self, model, items: List[dict], runtime, display) -> List[SampleResult]:
        """Predictions on a few validation chips; ``display(image)`` gives their picture."""
        batch = to_device(self.collate(items), runtime.device, runtime.channels_last)
        with runtime.autocast():
            pred = model(batch["image"]).argmax(1).cpu().numpy()
        return [SampleResult(image=display(it["image"]), truth=np.asarray(it["mask"]), prediction=pred[i])
                for i, it in enumerate(items)]
