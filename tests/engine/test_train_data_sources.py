"""Training on what users bring: an ArcGIS Pro 2.x style export (9-digit JPEG chips with
world files, PNG labels, CRLF map.txt with backslashes, no band statistics), several
folders at once, and multispectral 16-bit imagery (per-band statistics in the emd)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

torch = pytest.importorskip("torch")

import data_helpers as dh  # noqa: E402
import train_helpers as th  # noqa: E402
from dl_engine.train import TrainConfig  # noqa: E402
from dl_engine.train.run import run_training  # noqa: E402


def config(folder, out, **kw):
    kw.setdefault("backbone", "RESNET18")
    kw.setdefault("batch_size", 8)
    kw.setdefault("max_epochs", 5)
    kw.setdefault("learning_rate", 3e-3)
    kw.setdefault("validation_percentage", 20)
    kw.setdefault("num_workers", 0)
    kw.setdefault("stop_training", False)
    return TrainConfig(in_folder=str(folder), out_folder=str(out), **kw)


def as_pro2(export: str, out: Path) -> Path:
    """Our export rewritten the way ArcGIS Pro 2.x lays out Classified_Tiles with JPEG chips."""
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir()
    lines = []
    for i, line in enumerate(Path(export, "map.txt").read_text().splitlines()):
        image, label = line.split()
        stem = f"{i:09d}"
        with rasterio.open(Path(export, *image.split("\\"))) as src:
            data, t = src.read(), src.transform
        with rasterio.open(out / "images" / f"{stem}.jpg", "w", driver="JPEG", width=data.shape[2],
                           height=data.shape[1], count=3, dtype="uint8", quality=95) as dst:
            dst.write(data)
        cx, cy = t * (0.5, 0.5)
        (out / "images" / f"{stem}.jgw").write_text("".join(f"{v:.10f}\r\n" for v in (t.a, t.d, t.b, t.e, cx, cy)))
        with rasterio.open(Path(export, *label.split("\\"))) as src:
            mask = src.read()
        with rasterio.open(out / "labels" / f"{stem}.png", "w", driver="PNG", width=mask.shape[2],
                           height=mask.shape[1], count=1, dtype="uint8") as dst:
            dst.write(mask.astype("uint8"))
        lines.append(f"images\\{stem}.jpg  labels\\{stem}.png \r\n")
    (out / "map.txt").write_bytes("".join(lines).encode())
    stats = json.loads(Path(export, "esri_accumulated_stats.json").read_text())
    for key in ("BandStatsState", "InputRastersProps", "NextTileIndex", "NumTilesAsDouble"):
        stats.pop(key, None)  # Pro 2.x wrote none of these
    (out / "esri_accumulated_stats.json").write_text(dh.pro_json(stats))
    emd = dict(dh.PRO2_EMD, Classes=[{"Value": c.value, "Name": c.name, "Color": list(c.color or (-1, -1, -1))}
                                     for c in th.CLASSES])
    (out / "esri_model_definition.emd").write_text(dh.pro_json(emd))
    return out


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    base = tmp_path_factory.mktemp("sources")
    return th.learnable_export(base / "a", seed=0), th.learnable_export(base / "b", seed=1), base


@pytest.mark.trains
def test_arcgis_pro_style_export_trains(exports, tmp_path):
    export, _, _ = exports
    pro = as_pro2(export, tmp_path / "pro_export")
    assert all(len(p.stem) == 9 for p in (pro / "images").glob("*.jpg"))
    result = run_training(config(pro, tmp_path / "model"))
    assert result.metrics["miou"] > 0.4, result.history
    emd = json.loads((tmp_path / "model" / "model.emd").read_text())
    assert [c["Value"] for c in emd["Classes"]] == [3, 7]
    assert emd["IsMultispectral"] is False  # 8-bit RGB JPEG chips: ImageNet statistics


@pytest.mark.trains
def test_two_folders_train_as_one(exports, tmp_path):
    a, b, _ = exports
    seen = []
    from dl_engine.events import Events
    result = run_training(config(f"{a};{b}", tmp_path / "both", max_epochs=2), Events(sink=seen.append))
    chips = [e["message"] for e in seen if e["event"] == "log" and "training and" in e["message"]][0]
    n_a = len(Path(a, "map.txt").read_text().splitlines())
    n_b = len(Path(b, "map.txt").read_text().splitlines())
    train, valid = (int(w) for w in chips.split()[:4:3])
    assert train + valid == n_a + n_b
    assert Path(result.out_model_file).is_file()


@pytest.mark.trains
def test_multispectral_uint16_deeplab(tmp_path):
    export = th.learnable_export(tmp_path, seed=2, bands=4, dtype="uint16")
    result = run_training(config(export, tmp_path / "ms", model_type="DEEPLAB", max_epochs=6))
    emd = json.loads((tmp_path / "ms" / "ms.emd").read_text())
    assert emd["ModelName"] == "DeepLab" and emd["IsMultispectral"] is True
    assert emd["ExtractBands"] == [0, 1, 2, 3]
    stats = emd["NormalizationStats"]
    assert len(stats["band_min_values"]) == 4 and stats["band_max_values"][0] > 1000  # 16-bit range
    assert result.metrics["miou"] > 0.3, result.history


@pytest.mark.trains
def test_pspnet_trains(exports, tmp_path):
    export, _, _ = exports
    result = run_training(config(export, tmp_path / "psp", model_type="PSPNET", max_epochs=3,
                                 arguments="pyramid_sizes [1, 2];class_balancing true"))
    emd = json.loads((tmp_path / "psp" / "psp.emd").read_text())
    assert emd["ModelName"] == "PSPNetClassifier"
    assert emd["ModelParameters"]["pyramid_sizes"] == [1, 2]
    assert result.history[-1]["valid_loss"] < result.history[0]["valid_loss"]


def test_nodata_pixels_become_the_band_mean(tmp_path):
    """Float32 elevation with NoData -9999 at the padded edges: the model input stays in range."""
    from dl_engine.data import DataConfig, prepare_data
    import engine_helpers as h
    raster, geoms, values = th.learnable_raster(tmp_path, seed=4, bands=1, dtype="float32", size=80)
    with rasterio.open(raster) as src:
        data = src.read()
    data[:, :, 70:] = -9999.0
    nodata_raster = h.write_raster(tmp_path / "nd.tif", data, nodata=-9999.0)
    out = tmp_path / "exp"
    h.export(nodata_raster, out, metadata_format="Classified_Tiles", labels=h.vector_labels(geoms, values, th.CLASSES),
             tile_size_x=32, tile_size_y=32, stride_x=32, stride_y=32, workers=1, output_nofeature_tiles=True)
    td = prepare_data(DataConfig(str(out), 0))
    images = [td.valid_dataset().__class__(td.train, td.reader, td.normalization)[i]["image"]
              for i in range(len(td.train))]
    assert all(np.isfinite(x).all() for x in images)
    assert max(float(np.abs(x).max()) for x in images) < 50  # -9999 would be thousands of std away
