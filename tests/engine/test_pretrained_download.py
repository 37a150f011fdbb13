"""Pretrained weights fetched on first use (dl_engine/models/weights.py), without a network: a
stand-in Hugging Face hub on 127.0.0.1 (huggingface_hub follows HF_ENDPOINT) holds a tiny
timm model's checkpoint (``test_resnet``, 0.5 M parameters) as the hub serves it, and a plain
HTTP server stands in for torchvision's download URLs.

- the first build downloads (the weights equal the served tensors), the second reads the cache
  with the server stopped; DLT_WEIGHTS_DIR takes the download;
- an unreachable hub (a closed port) or HF_HUB_OFFLINE: random weights, one warning that says
  how to get the weights, quickly;
- a corrupt download (wrong hash, unreadable, another network's tensors) is refused and deleted.
"""

import dataclasses
import hashlib
import http.server
import io
import os
import socket
import threading
import time

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
pytest.importorskip("huggingface_hub")
pytest.importorskip("safetensors")

from dl_engine.models import backbones as bb  # noqa: E402
from dl_engine.models import weights  # noqa: E402

REPO = "timm/test_resnet.r160_in1k"  # timm's default pretrained config of test_resnet
FILE_PATH = f"/{REPO}/resolve/main/model.safetensors"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    """Files served at fixed paths, as the hub answers HEAD and GET (X-Repo-Commit, ETag,
    Content-Length); ``requests`` lists what was asked."""

    def __init__(self):
        self.files = {}
        self.requests = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self):
                self._answer(body=False)

            def do_GET(self):
                self._answer(body=True)

            def _answer(self, body):
                hub.requests.append((self.command, self.path))
                entry = hub.files.get(self.path.split("?")[0])
                if entry is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data, etag = entry
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{etag}"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def add(self, path, data, etag=None):
        self.files[path] = (data, etag or hashlib.sha256(data).hexdigest())

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub():
    server = FakeHub()
    yield server
    server.stop()


@pytest.fixture
def online(tmp_path, monkeypatch):
    """Downloads on (tests/conftest.py turns them off), empty caches in tmp_path."""
    for name in ("DLT_WEIGHTS_OFFLINE", "HF_HUB_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "DLT_WEIGHTS_DIR",
                 "HF_TOKEN", "HF_HUB_ETAG_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False, raising=False)
    weights.forget_failures()
    yield tmp_path
    weights.forget_failures()


def classifier_state(name="test_resnet", seed=0):
    torch.manual_seed(seed)
    return {k: v.clone().contiguous() for k, v in timm.create_model(name).state_dict().items()}


def safetensors_bytes(state):
    from safetensors.torch import save

    return save(state)


def build(**kw):
    logs, warnings = [], []
    encoder = bb.create_encoder("timm:test_resnet", 3, pretrained=True, log=logs.append, warn=warnings.append, **kw)
    return encoder, logs, warnings


def assert_weights(encoder, state):
    assert bb.loaded_fraction(encoder.model, state) == 1.0
    got = encoder.model.state_dict()
    shared = [k for k in got if k in state]
    assert shared and all(torch.equal(got[k], state[k]) for k in shared)


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the Hugging Face hub ----------------------------------------------------------------------

@pytest.mark.parametrize("chosen_folder", [False, True])
def test_first_build_downloads_then_the_cache_serves(online, hub, monkeypatch, chosen_folder):
    state = classifier_state()
    hub.add(FILE_PATH, safetensors_bytes(state))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    cache = online / "hf" / "hub"
    if chosen_folder:
        monkeypatch.setenv("DLT_WEIGHTS_DIR", str(online / "weights"))
        cache = online / "weights" / "huggingface"

    encoder, logs, warnings = build()
    assert encoder.pretrained_loaded and not warnings
    assert encoder.pretrained_source == f"{REPO} (Hugging Face hub)"
    assert_weights(encoder, state)
    assert any(m.startswith(f"downloading test_resnet weights from {hub.url}/{REPO} (") for m in logs)
    assert any("100%" in m for m in logs)
    assert ("GET", FILE_PATH) in hub.requests
    snapshot = cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / COMMIT / "model.safetensors"
    assert snapshot.is_file()

    hub.stop()  # the second build reads the cache
    asked = len(hub.requests)
    encoder, logs, warnings = build()
    assert encoder.pretrained_loaded and not warnings and len(hub.requests) == asked
    assert encoder.pretrained_source == f"{REPO} (Hugging Face hub)"
    assert not any(m.startswith("downloading") for m in logs)
    assert_weights(encoder, state)


@pytest.mark.parametrize("how", ["closed port", "HF_HUB_OFFLINE"])
def test_no_hub_means_random_weights_and_one_warning(online, hub, monkeypatch, how):
    hub.add(FILE_PATH, safetensors_bytes(classifier_state()))
    if how == "closed port":
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    else:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    encoder, logs, warnings = build()
    assert time.monotonic() - start < 5
    assert not encoder.pretrained_loaded and encoder.pretrained_source == "random"
    assert len(warnings) == 1
    text = warnings[0]
    assert text.startswith("no pretrained weights for test_resnet (")
    assert ("cannot be reached" if how == "closed port" else "HF_HUB_OFFLINE=1") in text
    assert "training starts from random weights" in text
    assert "deeplearningtools:importpretrainedweights" in text and "DLT_WEIGHTS_DIR" in text
    assert "models--timm--test_resnet.r160_in1k" in text
    assert not hub.requests

    start = time.monotonic()  # the same process does not ask again; each build warns once
    encoder, logs, warnings = build()
    assert time.monotonic() - start < 2 and len(warnings) == 1 and not encoder.pretrained_loaded
    assert not hub.requests


@pytest.mark.parametrize("corruption", ["wrong hash", "unreadable", "another network"])
def test_a_corrupt_download_is_refused(online, hub, monkeypatch, corruption):
    good = safetensors_bytes(classifier_state())
    if corruption == "wrong hash":
        hub.add(FILE_PATH, good, etag=hashlib.sha256(b"other bytes").hexdigest())
    elif corruption == "unreadable":
        hub.add(FILE_PATH, b"\x00" * 4096)
    else:
        hub.add(FILE_PATH, safetensors_bytes(classifier_state("test_efficientnet")))
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    encoder, logs, warnings = build()
    assert not encoder.pretrained_loaded and encoder.pretrained_source == "random"
    assert len(warnings) == 1 and "training starts from random weights" in warnings[0]
    assert ("hash check" if corruption == "wrong hash" else "refused") in warnings[0]
    repo = online / "hf" / "hub" / f"models--{REPO.replace('/', '--')}"
    leftovers = [p for p in repo.rglob("*") if p.is_file() or p.is_symlink()] if repo.exists() else []
    assert not [p for p in leftovers if "blobs" in p.parts or "snapshots" in p.parts]


# --- a download URL (torchvision's, timm's releases) -------------------------------------------

@pytest.fixture
def url_config(monkeypatch, hub):
    """test_resnet's pretrained configs with a URL on the stand-in server and no hub id."""
    real = timm.models.get_pretrained_cfg

    def point(name):
        def get_pretrained_cfg(model_name, *args, **kwargs):
            cfg = real(model_name, *args, **kwargs)
            if cfg is not None and model_name.partition(".")[0] == "test_resnet":
                cfg = dataclasses.replace(cfg, hf_hub_id=None, url=f"{hub.url}/models/{name}")
            return cfg

        monkeypatch.setattr(timm.models, "get_pretrained_cfg", get_pretrained_cfg)
        return f"{hub.url}/models/{name}"

    return point


def torch_bytes(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def test_a_url_downloads_into_torch_hub_checkpoints(online, hub, url_config):
    state = classifier_state(seed=1)
    data = torch_bytes(state)
    name = f"test_resnet-{hashlib.sha256(data).hexdigest()[:8]}.pth"  # torch hub's hash in the name
    hub.add(f"/models/{name}", data)
    url = url_config(name)
    encoder, logs, warnings = build()
    assert encoder.pretrained_loaded and not warnings and encoder.pretrained_source == f"{url} (torch hub)"
    assert_weights(encoder, state)
    assert any(m.startswith(f"downloading test_resnet weights from {url} (") for m in logs)
    assert (online / "torch" / "hub" / "checkpoints" / name).is_file()

    hub.stop()
    encoder, logs, warnings = build()
    assert encoder.pretrained_loaded and not warnings and not any(m.startswith("downloading") for m in logs)


def test_a_url_download_failing_its_hash_is_not_kept(online, hub, url_config):
    name = "test_resnet-00000000.pth"
    hub.add(f"/models/{name}", torch_bytes(classifier_state()))
    url_config(name)
    encoder, logs, warnings = build()
    assert not encoder.pretrained_loaded and len(warnings) == 1 and "hash check" in warnings[0]
    folder = online / "torch" / "hub" / "checkpoints"
    assert not folder.exists() or not os.listdir(folder)
