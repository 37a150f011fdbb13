"""The pixel classifiers' loss: cross-entropy (or focal) mixed with dice by default
(ARGUMENTS dice_loss_fraction, dice_loss_average, as arcgis.learn names them), so that a model
that paints a rare foreground as background is not rewarded for it."""

import pytest
import torch

from dl_engine.arguments import parse_arguments
from dl_engine.data.classes import ClassDef, ClassMap
from dl_engine.errors import InputError
from dl_engine.models.pixel import DICE_LOSS_FRACTION, UNET_ARGUMENTS
from dl_engine.train.arguments import TRAINER_ARGUMENTS
from dl_engine.train.pixel_task import IGNORE, PixelTask, dice_loss


def _task(text=""):
    classes = ClassMap((ClassDef(1, "Building"),), background=True)
    return PixelTask(classes, parse_arguments(text, {**TRAINER_ARGUMENTS, **UNET_ARGUMENTS}, "UNET"))


def _rare_target(n=2, size=32):
    """A few foreground pixels (about 2 %) in a sea of background."""
    target = torch.zeros(n, size, size, dtype=torch.long)
    target[:, 10:14, 10:15] = 1
    return target


def _logits_for(prediction, classes=2, confidence=10.0):
    return torch.nn.functional.one_hot(prediction, classes).permute(0, 3, 1, 2).float() * confidence


def test_dice_is_the_default_and_punishes_a_background_only_model():
    target = _rare_target()
    all_background = _logits_for(torch.zeros_like(target))
    perfect = _logits_for(target)
    ce = torch.nn.functional.cross_entropy
    # cross-entropy alone barely notices the missing foreground (2 % of the pixels) ...
    assert ce(all_background, target) < 0.2
    # ... dice (the mean of the classes' dice) counts the foreground class as much as the background
    assert dice_loss(all_background, target) > 0.45
    assert dice_loss(perfect, target) < 0.05
    task = _task()
    assert task.dice_fraction == DICE_LOSS_FRACTION > 0
    assert task._loss(all_background, target) > 3 * task._loss(perfect, target)
    assert task._loss(all_background, target) > ce(all_background, target)


def test_dice_loss_fraction_zero_is_cross_entropy_alone_and_focal_mixes_too():
    target = _rare_target()
    logits = torch.randn(2, 2, 32, 32, generator=torch.Generator().manual_seed(0))
    plain = _task("dice_loss_fraction 0")
    assert torch.allclose(plain._loss(logits, target), torch.nn.functional.cross_entropy(logits, target))
    only_dice = _task("dice_loss_fraction 1")
    assert torch.allclose(only_dice._loss(logits, target), dice_loss(logits, target))
    focal = _task("focal_loss true")
    focal_alone = _task("focal_loss true;dice_loss_fraction 0")
    f = DICE_LOSS_FRACTION
    assert torch.allclose(focal._loss(logits, target),
                          (1 - f) * focal_alone._loss(logits, target) + f * dice_loss(logits, target))


def test_micro_average_pools_pixels_and_ignored_pixels_count_nowhere():
    target = _rare_target()
    all_background = _logits_for(torch.zeros_like(target))
    # pooled over every pixel, the background's many right answers hide the missed foreground
    assert dice_loss(all_background, target, "micro") < 0.1 < dice_loss(all_background, target, "macro")
    # the foreground marked IGNORE: nothing left to miss
    ignored = target.clone()
    ignored[ignored == 1] = IGNORE
    assert dice_loss(all_background, ignored) < 0.05


@pytest.mark.parametrize("text, word", [("dice_loss_fraction 1.5", "dice_loss_fraction"),
                                        ("dice_loss_fraction -0.1", "from 0"),
                                        ("dice_loss_average median", "macro or micro")])
def test_bad_dice_arguments_are_refused_by_name(text, word):
    with pytest.raises(InputError) as e:
        _task(text)
    assert e.value.parameter == "ARGUMENTS" and word in e.value.message
