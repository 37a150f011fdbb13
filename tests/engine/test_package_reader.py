"""dl_engine.package.reader: what the writer wrote reads back; unsafe packages (zip-slip,
links, not exactly one root .emd, pickled objects) are refused before anything is
extracted or run, and no Python file of a package is ever run."""

import json
import os
import stat
import tempfile
import zipfile
from pathlib import Path

import pytest
import torch

from dl_engine.errors import InputError
from dl_engine.package import open_package, write_model_package
from test_package_helpers import exports, fake_spec, make_record, state_dict  # noqa: F401

EMD = {"Framework": "PyTorch", "ModelName": "TestUnetClassifier", "ModelFile": "m.pth", "ImageHeight": 32,
       "ExtractBands": [0, 1, 2], "Classes": [{"Value": 1, "Name": "a", "Color": [1, 2, 3]}],
       "ModelParameters": {"backbone": "resnet34", "backend": "pytorch"},
       "Engine": {"name": "deeplearningtools", "model_type": "TESTUNET"}}


class Payload:
    """Unpickling this creates ``marker``: what a malicious .pth would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _temp_dirs():
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("dlpk-")}


def _zip(path, members, emd=EMD):
    """members: name → bytes, or (ZipInfo, bytes). The emd is added as m.emd unless emd is None."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        if emd is not None:
            zf.writestr("m.emd", json.dumps(emd))
        for name, data in members.items():
            if isinstance(data, tuple):
                zf.writestr(data[0], data[1])
            else:
                zf.writestr(name, data)
    return str(path)


def _weights(path, obj=None):
    torch.save(obj if obj is not None else {"w": torch.arange(4.0)}, path)
    return Path(path).read_bytes()


def test_round_trip(exports, fake_spec, tmp_path):
    for kind in ("rgb", "ms"):
        record = make_record(exports[kind])
        paths = write_model_package(record, state_dict(), tmp_path / kind, log=lambda m: None)
        written = json.loads(Path(paths.emd).read_text())
        before = _temp_dirs()
        with open_package(paths.dlpk) as pkg:
            folder = pkg.folder
            assert pkg.emd == written and pkg.is_ours
            assert pkg.model_type == "TESTUNET" and pkg.model_name == "TestUnetClassifier"
            assert pkg.backbone == "resnet34" and pkg.backbone_keyword == "RESNET34"
            assert pkg.arguments == {"depth": 4} and pkg.chip_size == 32
            assert pkg.num_bands == (3 if kind == "rgb" else 4)
            assert [c["Value"] for c in pkg.classes] == [3, 7]
            assert pkg.is_multispectral == (kind == "ms")
            assert pkg.normalization_stats == (None if kind == "rgb" else record.normalization.normalization_stats())
            assert os.path.dirname(pkg.model_file) == folder
            loaded = pkg.load_state_dict()
            expected = state_dict()
            assert list(loaded) == list(expected) and all(torch.equal(loaded[k], expected[k]) for k in expected)
            assert all(v.device.type == "cpu" for v in loaded.values())
        assert not os.path.exists(folder) and _temp_dirs() == before  # extraction folder removed
        with open_package(paths.emd) as pkg:  # the .emd in OUT_FOLDER works as well
            assert pkg.emd == written and pkg.folder == paths.folder
            assert set(pkg.load_state_dict()) == set(state_dict())
        assert os.path.exists(paths.emd)  # closing an .emd package deletes nothing


@pytest.mark.parametrize("name", ["../x", "/abs/x", "a/../../x", "..\\x", "C:/x", "c:x", "\\\\server\\x",
                                  "ok/../../../x"])
def test_zip_slip_is_refused(tmp_path, name):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    path = _zip(pkg / "bad.dlpk", {"m.pth": _weights(tmp_path / "w.pth"), name: b"evil"})
    before = _temp_dirs()
    with pytest.raises(InputError) as e:
        open_package(path)
    assert e.value.parameter == "PRETRAINED_MODEL" and "refused" in e.value.message
    assert _temp_dirs() == before and not (tmp_path / "x").exists() and sorted(os.listdir(pkg)) == ["bad.dlpk"]


def test_symlink_member_is_refused(tmp_path):
    link = zipfile.ZipInfo("link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = _zip(tmp_path / "bad.dlpk", {"link": (link, b"/etc/passwd")})
    with pytest.raises(InputError, match="symbolic link"):
        open_package(path, parameter="IN_MODEL_DEFINITION")


@pytest.mark.parametrize("extra, emd", [({"b.emd": b"{}"}, EMD), ({}, None), ({"sub/m.emd": b"{}"}, None)])
def test_not_exactly_one_root_emd(tmp_path, extra, emd):
    path = _zip(tmp_path / "bad.dlpk", dict(extra), emd=emd)
    before = _temp_dirs()
    with pytest.raises(InputError, match="exactly one .emd") as e:
        open_package(path, parameter="IN_MODEL_DEFINITION")
    assert e.value.parameter == "IN_MODEL_DEFINITION" and _temp_dirs() == before


def test_pickled_payload_is_refused_not_run(tmp_path):
    marker = tmp_path / "marker"
    weights = _weights(tmp_path / "evil.pth", {"w": torch.zeros(2), "x": Payload(marker)})
    assert not marker.exists()
    path = _zip(tmp_path / "evil.dlpk", {"m.pth": weights})
    with open_package(path) as pkg:
        with pytest.raises(InputError, match="Python objects") as e:
            pkg.load_state_dict()
        assert e.value.parameter == "PRETRAINED_MODEL"
    assert not marker.exists()
    # The same through an .emd on disk.
    (tmp_path / "m.emd").write_text(json.dumps(EMD))
    (tmp_path / "m.pth").write_bytes(weights)
    with pytest.raises(InputError, match="Python objects"):
        open_package(tmp_path / "m.emd").load_state_dict()
    assert not marker.exists()
    # The payload is live: an unguarded load would have run it.
    torch.load(tmp_path / "m.pth", weights_only=False)
    assert marker.exists()


def test_python_files_of_a_package_are_never_run(tmp_path):
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').close()\n".encode()
    path = _zip(tmp_path / "p.dlpk", {"m.pth": _weights(tmp_path / "w.pth"), "DeepLearningToolsClassifier.py": code,
                                      "__init__.py": code, "sitecustomize.py": code})
    with open_package(path) as pkg:
        pkg.load_state_dict()
        _ = (pkg.model_type, pkg.backbone, pkg.classes)
    assert not marker.exists()


def test_model_file_outside_the_package_is_refused(tmp_path):
    (tmp_path / "secret.pth").write_bytes(_weights(tmp_path / "w.pth"))
    path = _zip(tmp_path / "pkgs.dlpk", {}, emd={**EMD, "ModelFile": "../secret.pth"})
    with open_package(path) as pkg, pytest.raises(InputError, match="outside the package"):
        pkg.load_state_dict()


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        open_package(tmp_path / "none.dlpk")
    (tmp_path / "x.dlpk").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="cannot be read as a zip"):
        open_package(tmp_path / "x.dlpk")
    (tmp_path / "x.emd").write_text("[1, 2]")
    with pytest.raises(InputError, match="JSON object"):
        open_package(tmp_path / "x.emd")
    (tmp_path / "y.emd").write_text(json.dumps({**EMD, "ModelFile": "missing.pth"}))
    with pytest.raises(InputError, match="does not exist"):
        open_package(tmp_path / "y.emd").load_state_dict()
    (tmp_path / "z.emd").write_text(json.dumps({**EMD, "ModelFile": "z.pth"}))
    (tmp_path / "z.pth").write_bytes(b"garbage")
    with pytest.raises(InputError, match="cannot be read as PyTorch weights"):
        open_package(tmp_path / "z.emd").load_state_dict()
    _weights(tmp_path / "z.pth", {"a": 1})  # plain data, not tensors
    with pytest.raises(InputError, match="state dict"):
        open_package(tmp_path / "z.emd").load_state_dict()


def test_fastai_with_opt_checkpoint(tmp_path):
    (tmp_path / "m.emd").write_text(json.dumps(EMD))
    _weights(tmp_path / "m.pth", {"model": {"w": torch.ones(2)}, "opt": {"state": {}}})
    assert list(open_package(tmp_path / "m.emd").load_state_dict()) == ["w"]
