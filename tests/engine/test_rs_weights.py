"""torchgeo's remote-sensing weights (dl_engine/models/rs_weights.py), BACKBONE_MODEL
``torchgeo:<Enum>.<MEMBER>``, without a network: a plain HTTP server on 127.0.0.1 serves a
checkpoint in torchgeo's format (a timm resnet18 state dict for 13 bands, ``torch.save``d, named
``<name>-<sha256 prefix>.pth``) and the table's URL is pointed at it.

- a 13-band build downloads the file (hash-checked) and loads it as it is: the first convolution
  keeps its 13 input channels and every tensor equals the served one; a second build reads the
  cache with the server stopped;
- a 4-band input is refused with InputError("BACKBONE_MODEL", …) that lists the 13 bands in
  order, before anything is downloaded; so is an export whose band names are in another order;
- training's normalisation is the weights' (Sentinel-2 L1C / 10000) and the emd's
  NormalizationStats give inference the same;
- Import Pretrained Weights takes the file for disconnected sites.
"""

import dataclasses
import hashlib
import http.server
import io
import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from dl_engine.errors import InputError  # noqa: E402
from dl_engine.models import backbones as bb  # noqa: E402
from dl_engine.models import rs_weights, weights  # noqa: E402

S2 = "ResNet18_Weights.SENTINEL2_ALL_MOCO"
S2_BACKBONE = "torchgeo:" + S2
S2_NAMES = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]


class FileServer:
    """Files at fixed paths over plain HTTP; ``requests`` lists the paths asked."""

    def __init__(self):
        self.files = {}
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                data = server.files.get(self.path)
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                if data:
                    self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def torchgeo_checkpoint(in_chans=13, seed=3):
    """(state dict, file bytes) as torchgeo's files are: timm's resnet18 names, no classifier."""
    torch.manual_seed(seed)
    model = timm.create_model("resnet18", in_chans=in_chans)
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fc.")}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return state, buffer.getvalue()


@pytest.fixture(scope="module")
def checkpoint():
    return torchgeo_checkpoint()


@pytest.fixture
def served(checkpoint, tmp_path, monkeypatch):
    """The checkpoint served on 127.0.0.1 under a torch hub name; the S2 entry's URL points at
    it; downloads on, empty caches in tmp_path. Yields (server, state, entry)."""
    state, data = checkpoint
    for name in ("DLT_WEIGHTS_OFFLINE", "HF_HUB_OFFLINE", "DLT_WEIGHTS_DIR", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server = FileServer()
    path = f"/torchgeo/resolve/main/resnet18_sentinel2_all_moco-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    server.files[path] = data
    entry = dataclasses.replace(rs_weights.WEIGHTS[S2], url=server.url + path)
    monkeypatch.setitem(rs_weights.WEIGHTS, S2, entry)
    weights.forget_failures()
    yield server, state, entry
    server.stop()
    weights.forget_failures()


def build_unet(in_channels, log):
    from dl_engine.models.registry import BuildContext, get_spec

    spec = get_spec("UNET")
    ctx = BuildContext(backbone=S2_BACKBONE, in_channels=in_channels, num_classes=3, chip_size=64,
                       arguments=dict(spec.arguments), pretrained=True, log=log.append, warn=log.append)
    return spec.build(ctx)


def encoder_params(built):
    """The encoder's parameters under timm's resnet names (conv1.weight, layer1.0.bn1.bias, …)."""
    return {k[len("model."):] if k.startswith("model.") else k: v for k, v in built.module.encoder.named_parameters()}


# ---- the table -------------------------------------------------------------------------------------

def test_table_entries_are_complete():
    assert len(rs_weights.WEIGHTS) >= 30
    for name, w in rs_weights.WEIGHTS.items():
        assert w.name == name and w.backbone == "torchgeo:" + name
        assert w.arch in ("resnet18", "resnet50", "resnet152") and name.lower().startswith(w.arch)
        assert len(w.bands) == len(w.band_min) == len(w.band_max) == len(w.scaled_mean) == len(w.scaled_std)
        assert all(hi > lo for lo, hi in zip(w.band_min, w.band_max))
        assert w.url.startswith("https://") and len(w.hash_prefix) == 8, name
        assert all(rs_weights.band_code(b) for b in w.bands), name
    s2 = rs_weights.WEIGHTS["ResNet50_Weights.SENTINEL2_ALL_MOCO"]
    assert list(s2.bands) == S2_NAMES and s2.in_chans == 13
    assert set(s2.band_max) == {10000.0} and set(s2.band_min) == {0.0}
    assert s2.url.endswith("/resnet50_sentinel2_all_moco-df8b932e.pth")
    oli = rs_weights.WEIGHTS["ResNet18_Weights.LANDSAT_OLI_TIRS_TOA_MOCO"]
    assert oli.in_chans == 11 and oli.band_max[0] == 0.4 and oli.band_min[9] == pytest.approx(248.15)
    sr = rs_weights.WEIGHTS["ResNet50_Weights.LANDSAT_OLI_SR_SIMCLR"]
    assert sr.band_min[0] == pytest.approx(7272.727, abs=1e-3) and sr.band_max[0] == pytest.approx(18181.818, abs=1e-3)
    satlas = rs_weights.WEIGHTS["ResNet152_Weights.SENTINEL2_SI_MS_SATLAS"]
    assert satlas.arch == "resnet152" and satlas.band_max == (255.0,) * 3 + (8160.0,) * 6


def test_backbone_values_resolve():
    assert bb.resolve_backbone("torchgeo:resnet50_weights.sentinel2_all_moco") == (
        "torchgeo:ResNet50_Weights.SENTINEL2_ALL_MOCO", "resnet50")
    assert bb.resolve_backbone("torchgeo:ResNet50_Weights.SENTINEL1_GRD_MOCO")[0] == \
        "torchgeo:ResNet50_Weights.SENTINEL1_ALL_MOCO"
    assert rs_weights.find("RESNET50") is None and rs_weights.find("timm:resnet50") is None
    with pytest.raises(InputError) as caught:
        bb.resolve_backbone("torchgeo:ResNet50_Weights.SENTINEL2_ALL_MOC")
    assert caught.value.parameter == "BACKBONE_MODEL"
    assert "torchgeo:ResNet50_Weights.SENTINEL2_ALL_MOCO" in caught.value.message


def test_band_check_names_the_bands_in_order():
    s2 = rs_weights.WEIGHTS[S2]
    rs_weights.check_bands(s2, 13, S2_NAMES)
    rs_weights.check_bands(s2, 13, ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "b8a", "B9", "B10", "B11", "B12"])
    rs_weights.check_bands(s2, 13, [f"Band_{i}" for i in range(1, 14)])  # no band codes: the count only
    rs_weights.check_bands(s2, 13, [""] * 13)
    with pytest.raises(InputError) as caught:
        rs_weights.check_bands(s2, 4, ["B02", "B03", "B04", "B08"])
    assert caught.value.parameter == "BACKBONE_MODEL"
    assert "B01, B02, B03, B04, B05, B06, B07, B08, B8A, B09, B10, B11, B12" in caught.value.message
    assert "4 band(s) (B02, B03, B04, B08)" in caught.value.message
    swapped = S2_NAMES[:8] + ["B09", "B8A"] + S2_NAMES[10:]
    with pytest.raises(InputError, match="in this order: B01"):
        rs_weights.check_bands(s2, 13, swapped)


# ---- download, build, refuse -------------------------------------------------------------------------

def test_13_bands_build_with_the_served_weights_then_from_the_cache(served):
    server, state, entry = served
    log = []
    built = build_unet(13, log)
    assert built.pretrained_loaded and built.backbone_name == S2_BACKBONE
    assert len(server.requests) == 1
    params = encoder_params(built)
    assert params["conv1.weight"].shape == (64, 13, 7, 7)
    assert len(params) == len([k for k in state if "running" not in k and "num_batches" not in k])
    for key, value in params.items():
        assert torch.equal(value.detach(), state[key]), key
    assert any(entry.url in line and "downloading" in line for line in log)
    cached = weights.torch_download_dir() + "/" + entry.filename
    assert any(cached in line for line in log if line.startswith("pretrained weights for"))

    server.stop()  # the second build reads the cache
    server.files.clear()
    again = bb.create_encoder(S2_BACKBONE, 13, log=lambda message: None)
    assert again.pretrained_loaded and again.pretrained_source == f"{entry.url} (torch hub)"
    assert len(server.requests) == 1
    assert torch.equal(again.model.conv1.weight.detach(), state["conv1.weight"])


def test_4_bands_are_refused_before_any_download(served):
    server, _, _ = served
    with pytest.raises(InputError) as caught:
        build_unet(4, [])
    assert caught.value.parameter == "BACKBONE_MODEL"
    assert "needs the 13 bands" in caught.value.message and "B8A, B09, B10" in caught.value.message
    assert server.requests == []


def test_a_corrupt_download_is_refused_and_training_starts_from_random_weights(served):
    server, _, entry = served
    path = entry.url[len(server.url):]
    server.files[path] = server.files[path][:-10] + b"0123456789"  # fails the sha256 in the file name
    log = []
    built = build_unet(13, log)
    assert not built.pretrained_loaded
    assert any("hash check" in line for line in log)
    assert any("copy resnet18_sentinel2_all_moco-" in line for line in log)


# ---- normalisation ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def s2_export(tmp_path_factory):
    """A 13-band uint16 Classified_Tiles export whose bands are named B01…B12 (with B8A)."""
    import data_helpers as dh

    folder = tmp_path_factory.mktemp("s2")
    raster, _ = dh.raster(folder, bands=13, dtype="uint16", low=1, high=9000)
    return dh.export(raster, folder / "export", "Classified_Tiles", band_names=S2_NAMES)


def test_training_uses_the_weights_normalisation_and_the_emd_keeps_it(s2_export):
    from dl_engine.data import DataConfig, prepare_data
    from dl_engine.infer.model import normalization_from_emd

    td = prepare_data(DataConfig(s2_export), warn=False)
    log = []
    assert rs_weights.prepare_training_data(td, S2_BACKBONE, log.append).name == S2
    norm = td.normalization
    assert norm.extract_bands == list(range(13)) and norm.is_multispectral
    assert "x / 10000" in log[0]
    chip = td.train_dataset().sample(0).image
    assert np.allclose(norm.normalize(chip), chip.astype(np.float32) / 10000, atol=1e-6)
    keys = norm.emd_keys()
    stats = keys["NormalizationStats"]
    assert stats["band_max_values"] == [10000.0] * 13 and stats["scaled_std_values"] == [1.0] * 13
    assert set(stats) >= {"band_min_values", "band_max_values", "band_mean_values", "band_std_values",
                          "scaled_min_values", "scaled_max_values", "scaled_mean_values", "scaled_std_values"}
    again = normalization_from_emd({"ExtractBands": keys["ExtractBands"], "NormalizationStats": stats})
    assert np.allclose(again.normalize(chip), norm.normalize(chip))
    assert np.allclose(again.normalize(again.nodata_fill()[:, None, None] * np.ones((13, 2, 2))), 0)


def test_an_export_of_other_bands_is_refused(s2_export):
    from dl_engine.data import DataConfig, prepare_data

    td = prepare_data(DataConfig(s2_export), warn=False)
    with pytest.raises(InputError, match="SENTINEL2_RGB_MOCO needs the 3 bands"):
        rs_weights.prepare_training_data(td, "torchgeo:ResNet18_Weights.SENTINEL2_RGB_MOCO", [].append)
    td.data.band_names = S2_NAMES[:8] + ["B09", "B8A"] + S2_NAMES[10:]
    with pytest.raises(InputError, match="B08, B8A, B09"):
        rs_weights.prepare_training_data(td, S2_BACKBONE, [].append)
    assert rs_weights.prepare_training_data(td, "RESNET18", [].append) is None


# ---- disconnected sites ----------------------------------------------------------------------------

@pytest.mark.heavy  # three resnet18 builds and a 45 MB file written twice: about 2 s
def test_import_pretrained_weights_takes_the_file(checkpoint, tmp_path, monkeypatch):
    from dl_engine.models.weights_import import import_weights

    state, data = checkpoint
    monkeypatch.setenv("DLT_WEIGHTS_DIR", str(tmp_path / "weights"))
    source = tmp_path / rs_weights.WEIGHTS[S2].filename
    source.write_bytes(data)
    target = import_weights(str(source), S2_BACKBONE, log=lambda message: None)
    assert target == weights.imported_weights_path(S2_BACKBONE) and ":" not in target.rsplit("/", 1)[-1]
    encoder = bb.create_encoder(S2_BACKBONE, 13, log=lambda message: None)  # downloads are off (conftest)
    assert encoder.pretrained_loaded and encoder.pretrained_source.startswith("imported: ")
    assert torch.equal(encoder.model.conv1.weight.detach(), state["conv1.weight"])
    with pytest.raises(InputError, match="not resnet18 weights for 3 bands"):
        import_weights(str(source), "torchgeo:ResNet18_Weights.SENTINEL2_RGB_MOCO", log=lambda message: None)


# ---- Train Deep Learning Model -----------------------------------------------------------------------

def train_config(export, out, backbone, **kw):
    from dl_engine.train import TrainConfig

    return TrainConfig(in_folder=export, out_folder=str(out), backbone=backbone, batch_size=4, max_epochs=1,
                       learning_rate=1e-3, validation_percentage=20, num_workers=0, **kw)


def test_training_refuses_weights_for_other_bands_and_writes_nothing(s2_export, tmp_path):
    from dl_engine.train.run import run_training

    out = tmp_path / "out"
    with pytest.raises(InputError) as caught:
        run_training(train_config(s2_export, out, "torchgeo:ResNet50_Weights.SENTINEL2_RGB_MOCO"))
    assert caught.value.parameter == "BACKBONE_MODEL" and "B04, B03, B02" in caught.value.message
    assert not out.exists()


@pytest.mark.trains
def test_training_starts_from_the_weights_and_the_package_keeps_their_normalisation(s2_export, served, tmp_path):
    import json

    from dl_engine.events import Events
    from dl_engine.train.run import run_training

    server, _, entry = served
    seen = []
    out = tmp_path / "s2model"
    run_training(train_config(s2_export, out, S2_BACKBONE), Events(sink=seen.append))
    assert len(server.requests) == 1
    emd = json.loads((out / "s2model.emd").read_text())
    assert emd["ModelParameters"]["backbone"] == S2_BACKBONE
    assert emd["ExtractBands"] == list(range(13)) and emd["IsMultispectral"] is True
    assert emd["NormalizationStats"]["band_max_values"] == [10000.0] * 13
    assert emd["NormalizationStats"]["scaled_mean_values"] == [0.0] * 13
    assert entry.filename in emd["PretrainedWeights"]
    assert any("x / 10000" in e.get("message", "") for e in seen)
