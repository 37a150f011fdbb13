"""dl_engine.package.writer and report: OUT_FOLDER holds what Pro's Train Deep Learning Model
writes, the .dlpk is flat with one root .emd, the weights load with weights_only=True, the
report shows the metrics, and a failed write leaves OUT_FOLDER as it was."""

import ast
import base64
import io
import json
import re
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from dl_engine.errors import InputError
from dl_engine.package import inference_function, report, write_model_package, writer
from test_package_helpers import exports, fake_spec, listing, make_record, state_dict  # noqa: F401

FILES = {"mymodel.emd", "mymodel.pth", "mymodel.dlpk", "DeepLearningToolsClassifier.py", "model_metrics.html",
         "training_validation_loss.json", "ModelCharacteristics/loss_graph.png",
         "ModelCharacteristics/show_results.png"}


def _files(folder):
    return {str(p.relative_to(folder)).replace("\\", "/") for p in Path(folder).rglob("*") if p.is_file()}


def _write(exports, folder, **kw):
    return write_model_package(make_record(exports["rgb"], **kw), state_dict(), folder, log=lambda m: None)


def test_out_folder_layout_and_dlpk(exports, fake_spec, tmp_path):
    out = tmp_path / "runs" / "mymodel"  # created, with its parent
    paths = _write(exports, out)
    assert _files(out) == FILES  # no staging folder left behind
    assert paths.folder == str(out) and paths.dlpk == str(out / "mymodel.dlpk")
    assert paths.emd == str(out / "mymodel.emd") and paths.pth == str(out / "mymodel.pth")
    assert paths.html == str(out / "model_metrics.html") and set(paths.files) == FILES
    with zipfile.ZipFile(paths.dlpk) as zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        names = {i.filename for i in infos}
        assert names == FILES - {"mymodel.dlpk"}  # flat at the root, the .dlpk not inside itself
        assert [n for n in names if n.endswith(".emd")] == ["mymodel.emd"]
        # the weights stored (they barely deflate), the rest deflated
        assert {i.filename: i.compress_type for i in infos if i.compress_type == zipfile.ZIP_STORED} == {
            "mymodel.pth": zipfile.ZIP_STORED}
        for n in names:
            assert zf.read(n) == (out / n).read_bytes()
    for png in ("loss_graph.png", "show_results.png"):
        with Image.open(out / "ModelCharacteristics" / png) as im:
            assert im.format == "PNG" and im.width > 300 and im.height > 200
    emd = json.loads((out / "mymodel.emd").read_text())
    assert emd["ModelFile"] == "mymodel.pth" and emd["InferenceFunction"] == "DeepLearningToolsClassifier.py"


def test_weights_load_with_weights_only(exports, fake_spec, tmp_path):
    paths = _write(exports, tmp_path / "m")
    loaded = torch.load(paths.pth, map_location="cpu", weights_only=True)
    expected = state_dict()
    assert list(loaded) == list(expected)
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    assert loaded["1.num_batches_tracked"].dtype == torch.int64


def test_html_report(exports, fake_spec, tmp_path):
    settings = {"max_epochs": 3, "note": "<b>bold</b> & more", "device": "cpu"}
    paths = _write(exports, tmp_path / "m", settings=settings)
    text = Path(paths.html).read_text(encoding="utf-8")
    assert "<p><b> TestUnetClassifier </b></p>" in text
    assert "<p><b>Backbone:</b> resnet34</p>" in text and "<p><b>Learning Rate:</b> 8.3176e-04</p>" in text
    assert "Analysis of the model" in text and "<td>Accuracy</td><td>0.9536</td>" in text
    assert "<td>mIoU</td><td>0.5000</td>" in text and "<td>Dice</td><td>0.6400</td>" in text
    # The per-class table: one row per class, background included.
    assert "<th>Class</th><th>Precision</th><th>Recall</th><th>F1</th><th>IoU</th>" in text
    assert "<tr><td>Oak</td><td>0.7000</td><td>0.6000</td><td>0.6460</td><td>0.4800</td></tr>" in text
    assert "<tr><td>NoData</td>" in text and "<tr><td>Pine</td>" in text
    # emd PretrainedWeights, as what BACKBONE_MODEL started from
    assert "<tr><td>Backbone</td><td>BACKBONE_MODEL</td><td>RESNET34</td><td>resnet34; started from random</td></tr>" \
        in text
    # Text is escaped; the loss graph and the sample results are embedded.
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; more" in text and "<b>bold</b>" not in text
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == 2
    assert base64.b64decode(images[0]) == (Path(paths.folder) / "ModelCharacteristics/loss_graph.png").read_bytes()
    assert Image.open(io.BytesIO(base64.b64decode(images[1]))).format == "PNG"
    assert text.index("Training and Validation loss") < text.index("Analysis of the model") < \
        text.index("Sample Results")


def test_no_samples_no_show_results(exports, fake_spec, tmp_path):
    paths = _write(exports, tmp_path / "m", samples=[])
    assert _files(paths.folder) == FILES - {"ModelCharacteristics/show_results.png"}
    assert "Sample Results" not in Path(paths.html).read_text()


def test_training_validation_loss_json(exports, fake_spec, tmp_path):
    paths = _write(exports, tmp_path / "m")
    data = json.loads((Path(paths.folder) / "training_validation_loss.json").read_text())
    rows = data["training_validation_loss_per_epoch"]
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    assert rows[0] == {"epoch": 0, "training_loss": "1.0", "validation_loss": "1.2", "accuracy": 0.5,
                       "Dice": 0.4, "time": "01:02:05"}
    assert rows[1]["training_loss"] == str(0.5) and rows[2]["time"] == "01:02:07"


def test_rewriting_replaces_files(exports, fake_spec, tmp_path):
    out = tmp_path / "m"
    _write(exports, out)
    (out / "notes.txt").write_text("mine")
    paths = _write(exports, out, learning_rate=0.01, samples=[])
    assert json.loads(Path(paths.emd).read_text())["LearningRate"] == "1.0000e-02"
    with zipfile.ZipFile(paths.dlpk) as zf:
        assert json.loads(zf.read("mymodel.emd"))["LearningRate"] == "1.0000e-02"
    assert (out / "notes.txt").read_text() == "mine"
    # show_results.png of the first run stays: it is not ours to delete, as in Pro.
    assert _files(out) == FILES | {"notes.txt"}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_failure_while_writing_leaves_out_folder_unchanged(exports, fake_spec, tmp_path, monkeypatch):
    out = tmp_path / "m"
    _write(exports, out)
    before = listing(out)

    def broken(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "model_metrics_html", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        _write(exports, out, learning_rate=0.01)
    assert listing(out) == before


def test_failure_while_moving_puts_older_files_back(exports, fake_spec, tmp_path, monkeypatch):
    out = tmp_path / "m"
    _write(exports, out)
    before = listing(out)
    real_replace = writer.os.replace
    failed = []

    def flaky(src, dst):  # moving the new html in fails: the old one is already set aside
        if str(dst) == str(out / "model_metrics.html") and ".partial-" in str(src) and not failed:
            failed.append(dst)
            raise OSError("file in use")
        return real_replace(src, dst)

    monkeypatch.setattr(writer.os, "replace", flaky)
    with pytest.raises(OSError, match="file in use"):
        _write(exports, out, learning_rate=0.01)
    assert failed and listing(out) == before


def test_failure_in_a_new_folder_leaves_nothing(exports, fake_spec, tmp_path):
    out = tmp_path / "new" / "m"
    bad = {"w": torch.zeros(2), "extra": "not a tensor"}
    with pytest.raises(TypeError, match="not a tensor"):
        write_model_package(make_record(exports["rgb"]), bad, out, log=lambda m: None)
    assert list(tmp_path.iterdir()) == []


def test_bad_name_is_refused(exports, fake_spec, tmp_path):
    with pytest.raises(InputError) as e:
        write_model_package(make_record(exports["rgb"], name="../up"), state_dict(), tmp_path / "m")
    assert e.value.parameter == "OUT_FOLDER" and not (tmp_path / "m").exists()


def test_inference_function_source():
    """Parsed, never run: a raster function class named after its file, handing tiles to dl_engine."""
    text = inference_function.source("DeepLearningToolsClassifier.py")
    tree = ast.parse(text)
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    assert [c.name for c in classes] == ["DeepLearningToolsClassifier"]
    methods = {n.name for n in classes[0].body if isinstance(n, ast.FunctionDef)}
    assert {"initialize", "getParameterInfo", "getConfiguration", "updateRasterInfo", "updatePixels"} <= methods
    assert "from dl_engine.infer.raster_function import predict_tile" in text
    assert "extractBands" in text and '"tx"' in text and '"ty"' in text
    with pytest.raises(ValueError):
        inference_function.source("not-a-name.py")
