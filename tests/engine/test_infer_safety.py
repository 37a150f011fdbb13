"""Models the inference tools must refuse, each as a InputError naming IN_MODEL_DEFINITION
with nothing written: hostile packages (zip-slip, pickled code), arcgis.learn's own networks,
missing or broken weights. And the normalisation rebuilt from the emd is training's."""

import json
import os
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import infer_helpers as ih  # noqa: E402
from dl_engine.errors import InputError  # noqa: E402
from dl_engine.infer import run_inference  # noqa: E402

pytestmark = pytest.mark.usefixtures("fake_models")  # reading fake packages needs the fake types

CLASSES = [(1, "a", (1, 2, 3)), (2, "b", (4, 5, 6))]


class Payload:
    """Unpickling this would create ``marker``: what a malicious .pth does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def raster(tmp_path):
    return ih.squares_raster(tmp_path, [(10, 10, 8)], size=64)


def refused(raster, model, tmp_path, tool="detect_objects"):
    out = tmp_path / "out" / "o.geojson"
    with pytest.raises(InputError) as e:
        run_inference(ih.config(tool, raster, model, out))
    assert e.value.parameter == "IN_MODEL_DEFINITION"
    assert not out.exists()
    return e.value.message


def test_zip_slip_member_is_refused(raster, tmp_path):
    dlpk = ih.fake_package(tmp_path / "m", "FAKEDETECTOR", CLASSES, dlpk=True)
    with zipfile.ZipFile(dlpk, "a") as z:
        z.writestr("../evil.txt", "x")
    assert "climbs out" in refused(raster, dlpk, tmp_path)
    assert not (tmp_path / "evil.txt").exists()


def test_pickled_code_is_not_run(raster, tmp_path):
    folder = tmp_path / "m"
    emd = ih.fake_package(folder, "FAKEDETECTOR", CLASSES)
    marker = tmp_path / "pwned"
    torch.save({"scale": Payload(marker)}, folder / "fake.pth")
    message = refused(raster, emd, tmp_path)
    assert "refused" in message and not marker.exists()


def test_arcgis_learn_package_is_refused(raster, tmp_path):
    folder = tmp_path / "esri"
    folder.mkdir()
    emd = {"Framework": "arcgis.learn.models._inferencing", "ModelConfiguration": "_DynamicSSD",
           "ModelType": "ObjectDetection", "InferenceFunction": "ArcGISObjectDetector.py", "ExtractBands": [0, 1, 2],
           "Classes": [{"Value": 1, "Name": "Pool", "Color": [0, 255, 0]}], "ModelFile": "ssd.pth",
           "ImageHeight": 224, "ImageWidth": 224, "ModelName": "SingleShotDetector"}
    (folder / "ssd.emd").write_text(json.dumps(emd))
    torch.save({"w": torch.zeros(1)}, folder / "ssd.pth")
    message = refused(raster, folder / "ssd.emd", tmp_path)
    assert "not written by this plugin" in message and "arcgis.learn" in message


def test_missing_and_broken_weights(raster, tmp_path):
    emd = ih.fake_package(tmp_path / "m", "FAKEDETECTOR", CLASSES)
    os.remove(tmp_path / "m" / "fake.pth")
    assert "does not exist" in refused(raster, emd, tmp_path)
    torch.save({"other": torch.zeros(3)}, tmp_path / "m" / "fake.pth")
    assert "do not fit the network" in refused(raster, emd, tmp_path)
    (tmp_path / "m" / "fake.pth").write_bytes(b"not a zip, not a pickle")
    assert "cannot be read as PyTorch weights" in refused(raster, emd, tmp_path)
    assert "does not exist" in refused(raster, tmp_path / "nowhere.dlpk", tmp_path)


def test_normalisation_from_the_emd_is_trainings(tmp_path):
    """Multispectral statistics as the trained emd stores them: the tensors the model gets
    equal data.normalization's on the same chip."""
    from dl_engine.data.band_stats import BandStats
    from dl_engine.data.normalization import from_band_stats
    from dl_engine.infer.model import normalization_from_emd
    from dl_engine.infer.predictor import TorchNormalizer

    rng = np.random.default_rng(0)
    chips = [rng.normal(1000, 300, (5, 16, 16)).astype(np.float32)]
    chips[0][3] = 7.0  # a band with one value: left out of ExtractBands
    trained = from_band_stats(BandStats.from_arrays(chips, [np.ones_like(chips[0], bool)]))
    emd = json.loads(json.dumps(trained.emd_keys()))
    again = normalization_from_emd(emd)
    assert again.extract_bands == trained.extract_bands == [0, 1, 2, 4]
    chip = rng.normal(1000, 300, (5, 16, 16)).astype(np.uint16)
    expected = trained.normalize(chip)
    got = TorchNormalizer(again, torch.device("cpu"))(torch.from_numpy(chip.astype(np.float32))[None])[0].numpy()
    assert np.allclose(got, expected, rtol=1e-5, atol=1e-5)
    # 8-bit RGB: ImageNet statistics
    rgb = normalization_from_emd({"ExtractBands": [0, 1, 2], "IsMultispectral": False})
    chip = rng.integers(0, 255, (3, 8, 8)).astype(np.uint8)
    got = TorchNormalizer(rgb, torch.device("cpu"))(torch.from_numpy(chip)[None])[0].numpy()
    from dl_engine.data.normalization import imagenet
    assert np.allclose(got, imagenet().normalize(chip), atol=1e-5)
