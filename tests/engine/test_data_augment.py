"""dl_engine.data.augment: transforms move the image and its labels together (a label drawn
from the image stays equal to the one drawn from the transformed image), boxes follow their
objects, and AUGMENTATION / AUGMENTATION_PARAMETERS are parsed or refused by name."""

import numpy as np
import pytest

import data_helpers as dh
from dl_engine.errors import InputError
from dl_engine.data import SampleReader, make_augmentation, open_folders, parse_augmentation_parameters
from dl_engine.data.augment import Transform, dihedral
from dl_engine.data.samples import Sample


def _sample(h=24, w=24, seed=0, boxes=((3, 4, 10, 15), (14, 2, 22, 9))):
    """An image with bright rectangles; the mask and the boxes are drawn from the image."""
    rng = np.random.default_rng(seed)
    image = rng.uniform(0, 100, (2, h, w)).astype(np.float32)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        image[:, y0:y1, x0:x1] = 200 + 20 * i
    mask = _mask_of(image)
    b = np.array(boxes, np.float32)
    return Sample("k", image, image2=image[:1] * 2, mask=mask, boxes=b, box_classes=np.array([1, 2]))


def _mask_of(image):
    return np.where(image[0] >= 220, 2, np.where(image[0] >= 200, 1, 0)).astype(np.int64)


def _bounds(mask, value):
    rows, cols = np.flatnonzero((mask == value).any(1)), np.flatnonzero((mask == value).any(0))
    return [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]


def _check_aligned(s):
    assert np.array_equal(s.mask, _mask_of(s.image))
    assert np.array_equal(s.image2, s.image[:1] * 2)
    for box, c in zip(s.boxes, s.box_classes):
        assert list(box) == _bounds(s.mask, c)


def test_all_eight_dihedral_transforms_keep_labels_aligned():
    base = _sample()
    results = set()
    for t in (False, True):
        for hf in (False, True):
            for vf in (False, True):
                s = dihedral(base, t, hf, vf)
                _check_aligned(s)
                results.add(s.image.tobytes())
    assert len(results) == 8


def test_default_in_map_space_flips_and_turns():
    aug = make_augmentation("DEFAULT", image_space="MAP_SPACE")
    base = _sample()
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(60):
        s = aug(base, rng)
        _check_aligned(s)
        seen.add(s.image.tobytes())
    assert len(seen) == 8


def test_default_in_pixel_space_and_none_do_nothing():
    assert make_augmentation("DEFAULT", image_space="PIXEL_SPACE").is_identity
    assert make_augmentation("NONE").is_identity
    base = _sample()
    s = make_augmentation("DEFAULT", image_space="PIXEL_SPACE")(base, np.random.default_rng(0))
    assert s is base


def test_non_square_chips_only_flip():
    base = _sample(h=16, w=24)
    aug = make_augmentation("CUSTOM", "dihedral; rotate90 1")
    rng = np.random.default_rng(2)
    for _ in range(20):
        s = aug(base, rng)
        assert s.image.shape == base.image.shape
        _check_aligned(s)


def test_rotate_quarter_turn_and_zoom_move_boxes_with_objects():
    base = _sample(h=32, w=32, boxes=((4, 6, 12, 20), (18, 3, 28, 11)))
    rng = np.random.default_rng(3)
    for text in ("rotate 90,90 1", "rotate -90,-90 1", "zoom 2 1", "rotate 45,45 1"):
        aug = make_augmentation("CUSTOM", text)
        s = aug(base, rng)
        assert s.image.shape == base.image.shape and s.mask.shape == (32, 32)
        for box, c in zip(s.boxes, s.box_classes):
            got = _bounds(s.mask, c)  # the object's pixels (nearest neighbour) lie inside its box
            assert box[0] - 1 <= got[0] and box[1] - 1 <= got[1] and got[2] <= box[2] + 1 and got[3] <= box[3] + 1
            if "45" not in text:  # quarter turns and zooms keep boxes tight
                assert np.allclose(box, got, atol=1.01), (text, box, got)


def test_boxes_of_an_export_follow_a_flip(tmp_path):
    path, _ = dh.raster(tmp_path)
    data = open_folders(dh.export(path, tmp_path / "voc", "PASCAL_VOC_rectangles"))
    reader = SampleReader.for_data(data)
    for ref in data.samples:
        s = reader.read(ref)
        f = dihedral(s, False, True, False)
        assert np.array_equal(f.image, s.image[:, :, ::-1])
        expected = s.boxes.copy()
        expected[:, [0, 2]] = dh.TILE - s.boxes[:, [2, 0]]
        assert np.allclose(f.boxes, expected) and np.array_equal(f.box_classes, s.box_classes)


def test_photometric_transforms_touch_only_the_image():
    base = _sample()
    aug = make_augmentation("CUSTOM", "brightness 0.8 1; contrast 1.5 1",
                            value_range=(np.zeros(2), np.full(2, 255.0)))
    s = aug(base, np.random.default_rng(0))
    assert not np.array_equal(s.image, base.image)
    assert np.array_equal(s.mask, base.mask) and np.array_equal(s.boxes, base.boxes)
    assert s.image.min() >= 0 and s.image.max() <= 255
    # brightness 0.5 and contrast 1 change nothing
    same = make_augmentation("CUSTOM", "brightness 0.5; contrast 1",
                             value_range=(np.zeros(2), np.full(2, 255.0)))(base, np.random.default_rng(0))
    assert np.allclose(same.image, base.image, atol=1e-3)


def test_parameter_syntax():
    assert parse_augmentation_parameters("flip 0.5;rotate90 0.5;brightness 0.2;contrast 0.2") == [
        Transform("flip", None, 0.5), Transform("rotate90", None, 0.5), Transform("brightness", (0.2, 0.2), 1.0),
        Transform("contrast", (0.2, 0.2), 1.0)]
    assert parse_augmentation_parameters("rotate (10, 40) 0.25\nzoom 1.5") == [
        Transform("rotate", (10.0, 40.0), 0.25), Transform("zoom", (1.0, 1.5), 1.0)]
    assert parse_augmentation_parameters("Rotate(degrees=30, p=0.3); flip") == [
        Transform("rotate", (-30.0, 30.0), 0.3), Transform("flip", None, 0.5)]
    assert parse_augmentation_parameters("rotate(degrees=(10, 40), p=0.5); zoom(1.3)") == [
        Transform("rotate", (10.0, 40.0), 0.5), Transform("zoom", (1.0, 1.3), 1.0)]
    assert parse_augmentation_parameters("brightness; contrast [0.8,1.2] p=1") == [
        Transform("brightness", (0.4, 0.6), 1.0), Transform("contrast", (0.8, 1.2), 1.0)]


@pytest.mark.parametrize("mode, text, parameter, words", [
    ("CUSTOM", "flip 0.5; blur 2", "AUGMENTATION_PARAMETERS", ["'blur'", "flip", "rotate90", "brightness", "zoom"]),
    ("CUSTOM", "", "AUGMENTATION_PARAMETERS", ["needs AUGMENTATION_PARAMETERS"]),
    ("CUSTOM", "flip 2", "AUGMENTATION_PARAMETERS", ["between 0 and 1"]),
    ("CUSTOM", "zoom 0.5", "AUGMENTATION_PARAMETERS", ["at least 1"]),
    ("CUSTOM", "rotate ten", "AUGMENTATION_PARAMETERS", ["not a number"]),
    ("CUSTOM", "flip 0.5 0.5", "AUGMENTATION_PARAMETERS", ["too many"]),
    ("CUSTOM", "rotate angle=3", "AUGMENTATION_PARAMETERS", ["degrees"]),
    ("SOME", None, "AUGMENTATION", ["DEFAULT", "NONE", "CUSTOM"]),
])
def test_bad_augmentation(mode, text, parameter, words):
    with pytest.raises(InputError) as e:
        make_augmentation(mode, text)
    assert e.value.parameter == parameter
    for w in words:
        assert w in e.value.message


def test_instance_masks_and_their_boxes_turn_together():
    base = _sample()
    instances = np.stack([base.mask == 1, base.mask == 2])
    base = Sample("k", base.image, mask=base.mask, instance_masks=instances, boxes=base.boxes,
                  box_classes=base.box_classes)
    aug = make_augmentation("CUSTOM", "rotate90 1; flip 0.5")
    rng = np.random.default_rng(4)
    for _ in range(8):
        s = aug(base, rng)
        assert np.array_equal(s.mask, _mask_of(s.image))
        for m, c in zip(s.instance_masks, s.box_classes):
            assert np.array_equal(m, s.mask == c)
        _check_aligned(Sample("k", s.image, image2=s.image[:1] * 2, mask=s.mask, boxes=s.boxes,
                              box_classes=s.box_classes))


def test_the_same_draws_give_the_same_chip_and_tensors_work_on_any_device():
    """A chip's seed decides its augmentation (the same in any loader worker, on every run); the
    transforms take torch tensors where they are (augment_tensors): the GPU gives what the CPU gives."""
    import torch
    from dl_engine.data.augment import augment_tensors

    base = _sample(h=32, w=32, boxes=((4, 6, 12, 20), (18, 3, 28, 11)))
    aug = make_augmentation("CUSTOM", "dihedral; rotate 20 0.5; zoom 1,1.3 0.5; brightness 0.3,0.7; contrast 0.8,1.2",
                            value_range=(np.zeros(2), np.full(2, 255.0)))
    first, again = aug(base, np.random.default_rng(7)), aug(base, np.random.default_rng(7))
    assert np.array_equal(first.image, again.image) and np.array_equal(first.boxes, again.boxes)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = []
    for device in devices:
        (image, _, mask, _, boxes), keep = augment_tensors(
            aug, np.random.default_rng(7), torch.from_numpy(base.image).to(device),
            mask=torch.from_numpy(base.mask).to(device), boxes=torch.from_numpy(base.boxes).to(device))
        assert image.device.type == mask.device.type == boxes.device.type == device
        results.append((image.cpu().numpy(), mask.cpu().numpy(), boxes.cpu().numpy(), keep.cpu().numpy()))
    image, mask, boxes, keep = results[0]
    assert np.allclose(image, first.image, atol=1e-4) and np.array_equal(mask, first.mask)
    assert np.allclose(boxes, first.boxes) and np.array_equal(base.box_classes[keep], first.box_classes)
    for other in results[1:]:
        assert np.allclose(other[0], image, atol=1e-2) and np.array_equal(other[1], mask)
        assert np.allclose(other[2], boxes, atol=1e-3)
