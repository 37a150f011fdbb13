"""The inference worker process (``python -m dl_engine infer --config cfg.json``): JSON-lines
events, exit codes 0 / 2 / 130, SIGTERM stops it within two seconds leaving no output."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import infer_helpers as ih  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.trains  # every test uses the UNET that infer_helpers.trained_model trains


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return ih.trained_model(tmp_path_factory)


def env():
    e = dict(os.environ, PYTHONUNBUFFERED="1")
    e["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in e.get("PYTHONPATH", "").split(os.pathsep) if p])
    return e


def command(tmp_path, cfg):
    path = tmp_path / "cfg.json"
    path.write_text(cfg.to_json())
    return [sys.executable, "-m", "dl_engine", "infer", "--config", str(path)]


def events_of(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_worker_classifies_and_reports(model, tmp_path):
    raster, _ = ih.scene(tmp_path, seed=21, size=64)
    out = tmp_path / "out" / "classes.tif"
    cfg = ih.config("classify_pixels", raster, model.out_model_file, out, arguments="batch_size 8")
    p = subprocess.run(command(tmp_path, cfg) + ["--num-workers", "2"], env=env(), capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    events = events_of(p.stdout)  # every stdout line is one JSON event
    assert {"log", "progress", "result"} <= {e["event"] for e in events}
    result = [e for e in events if e["event"] == "result"][0]
    assert result["out_path"] == str(out) and out.is_file()
    assert result["tool"] == "classify_pixels" and result["width"] == 64 and result["tiles"] == 16
    assert sum(result["class_counts"].values()) == 64 * 64


def test_worker_bad_input_is_an_error_event(model, tmp_path):
    raster, _ = ih.scene(tmp_path, seed=21, size=32)
    out = tmp_path / "o.tif"
    cfg = ih.config("classify_pixels", raster, model.out_model_file, out, arguments="no_such_thing 1")
    p = subprocess.run(command(tmp_path, cfg), env=env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    error = [e for e in events_of(p.stdout) if e["event"] == "error"][0]
    assert error["parameter"] == "ARGUMENTS" and "valid arguments" in error["message"]
    assert "Traceback" not in p.stderr and not out.exists()


def test_sigterm_stops_the_worker_within_two_seconds(model, tmp_path):
    raster, _ = ih.scene(tmp_path, seed=22, size=512)  # 1024 tiles: minutes on a CPU
    out = tmp_path / "o.tif"
    cfg = ih.config("classify_pixels", raster, model.out_model_file, out)
    p = subprocess.Popen(command(tmp_path, cfg), env=env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True)
    for line in p.stdout:  # wait until tiles are being classified
        if json.loads(line)["event"] == "progress":
            break
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    rest = p.stdout.read()
    code = p.wait(timeout=30)
    assert time.monotonic() - t0 < 2.0
    assert code == 130
    assert [e for e in events_of(rest) if e["event"] == "canceled"]
    assert sorted(os.listdir(tmp_path)) == ["cfg.json", "learn22_3.tif"]  # no output, no temporary file
