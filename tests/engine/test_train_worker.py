"""The training worker process: JSON-lines events, exit codes, SIGTERM within 2 s, and the
same command under torchrun (2 CPU processes, gloo) writing a valid package."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import train_helpers as th  # noqa: E402
from dl_engine.train import TrainConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return th.learnable_export(tmp_path_factory.mktemp("learn"))


def write_config(tmp_path, export, out, **kw):
    kw.setdefault("backbone", "RESNET18")
    kw.setdefault("batch_size", 8)
    kw.setdefault("learning_rate", 3e-3)
    kw.setdefault("num_workers", 1)
    kw.setdefault("device", "cpu")
    path = tmp_path / "config.json"
    path.write_text(TrainConfig(in_folder=export, out_folder=str(out), **kw).to_json())
    return path


def env():
    e = dict(os.environ, PYTHONUNBUFFERED="1")
    e["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in e.get("PYTHONPATH", "").split(os.pathsep) if p])
    return e


def events_of(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.trains
def test_worker_trains_and_reports(export, tmp_path):
    cfg = write_config(tmp_path, export, tmp_path / "model", max_epochs=2)
    p = subprocess.run([sys.executable, "-m", "dl_engine", "train", "--config", str(cfg)], env=env(),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    events = events_of(p.stdout)  # every stdout line is one JSON event
    kinds = {e["event"] for e in events}
    assert {"progress", "log", "metric", "result"} <= kinds
    result = [e for e in events if e["event"] == "result"][0]
    assert Path(result["out_model_file"]).is_file() and result["metrics"]["miou"] >= 0
    assert any("device: cpu" in e.get("message", "") for e in events)
    # the history stays in OUT_FOLDER (dl_engine/events.py): the epochs printed, and a log a person reads
    recorded = events_of((tmp_path / "model" / "training_events.jsonl").read_text(encoding="utf-8"))
    assert [e["epoch"] for e in recorded if e["event"] == "metric"] == \
        [e["epoch"] for e in events if e["event"] == "metric"] == [1, 2]
    assert recorded[-1]["event"] == "result" and recorded[-1]["out_model_file"] == result["out_model_file"]
    assert "epoch 2/2: train_loss" in (tmp_path / "model" / "training_log.txt").read_text(encoding="utf-8")


@pytest.mark.heavy  # a real worker (imports torch), refused before training
def test_worker_bad_input_is_an_error_event(export, tmp_path):
    cfg = write_config(tmp_path, export, tmp_path / "model", arguments="no_such_thing 1")
    p = subprocess.run([sys.executable, "-m", "dl_engine", "train", "--config", str(cfg)], env=env(),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    error = [e for e in events_of(p.stdout) if e["event"] == "error"][0]
    assert error["parameter"] == "ARGUMENTS" and "valid arguments" in error["message"]
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "model").exists()


@pytest.mark.trains
def test_sigterm_stops_the_worker_within_two_seconds(export, tmp_path):
    out = tmp_path / "model"
    cfg = write_config(tmp_path, export, out, max_epochs=50, stop_training=False)
    p = subprocess.Popen([sys.executable, "-m", "dl_engine", "train", "--config", str(cfg)], env=env(),
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    epochs = 0
    for line in p.stdout:  # wait until one epoch is done (a checkpoint exists)
        if json.loads(line)["event"] == "metric":
            epochs += 1
            break
    assert epochs == 1
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    rest = p.stdout.read()
    code = p.wait(timeout=10)
    assert time.monotonic() - t0 < 2.0
    assert code == 130
    canceled = [e for e in events_of(rest) if e["event"] == "canceled"]
    assert canceled and "resume true" in canceled[0]["message"]
    assert (out / "checkpoint" / "last.pt").is_file()
    assert not list(out.glob("*.dlpk"))


@pytest.mark.trains
def test_torchrun_two_cpu_processes_write_a_valid_package(export, tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    out = tmp_path / "ddp"
    cfg = write_config(tmp_path, export, out, max_epochs=2, num_workers=0)
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "dl_engine", "train", "--config", str(cfg)], env=env(), capture_output=True,
                       text=True, timeout=600, cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr[-3000:]
    events = events_of(p.stdout)
    assert sum(1 for e in events if e["event"] == "result") == 1  # rank 0 alone reports
    assert any("2 processes" in e.get("message", "") for e in events)
    with zipfile.ZipFile(out / "ddp.dlpk") as z:
        assert [n for n in z.namelist() if n.endswith(".emd")] == ["ddp.emd"]
    emd = json.loads((out / "ddp.emd").read_text())
    assert emd["ModelName"] == "UnetClassifier"
    state = torch.load(out / "ddp.pth", weights_only=True)
    assert not any(k.startswith("module.") for k in state)  # the network's own names, not DDP's
