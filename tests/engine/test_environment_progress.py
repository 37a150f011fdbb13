"""pip's output → progress (dl_engine/environment/progress.py), on pip logs recorded from a real
install of the engine environment (tests/data/pip/)."""

from pathlib import Path

import pytest

from dl_engine.environment.progress import PipProgress, short_name

RECORDED = Path(__file__).resolve().parents[1] / "data" / "pip"


def feed_all(lines, start=6.0, end=80.0, expected=48):
    tracker = PipProgress(start, end, expected)
    return tracker, [news for news in map(tracker.feed, lines) if news]


@pytest.mark.parametrize("name", ["engine-with-find-links.log", "engine-pair-isolated.log"])
def test_a_recorded_install_moves_forward_to_its_end(name):
    lines = (RECORDED / name).read_text(encoding="utf-8").splitlines()
    tracker, news = feed_all(lines)
    percents = [p for p, _ in news]
    assert percents == sorted(percents), "progress never goes back"
    assert 6.0 <= percents[0] and percents[-1] == 80.0
    collected = sum(1 for line in lines if line.startswith(("Collecting", "Processing")))
    assert tracker.collected == collected
    installing = [m for _, m in news if m.startswith("Installing ")]
    assert len(installing) == 1
    listed = next(line for line in lines if line.startswith("Installing collected packages:"))
    assert installing[0].startswith(f"Installing {listed.count(',') + 1} packages")
    # before pip installs, the bar has moved most of the way but not to the end
    before = percents[[m for _, m in news].index(installing[0]) - 1]
    assert 30 < before < 80
    assert news[-1][1].startswith("Installed ")


def test_downloads_and_folder_wheels_are_named():
    lines = (RECORDED / "engine-pair-isolated.log").read_text(encoding="utf-8").splitlines()
    messages = [m for _, m in feed_all(lines)[1]]
    assert "Downloading torch-2.13.0 (526.6 MB)" in messages
    lines = (RECORDED / "engine-with-find-links.log").read_text(encoding="utf-8").splitlines()
    messages = [m for _, m in feed_all(lines)[1]]
    assert "Collecting torch-2.13.0+cpu" in messages  # the find-links folder's wheel


def test_raw_progress_lines_show_the_download():
    """pip --progress-bar raw: ``Progress <bytes> of <total>`` after the Downloading line."""
    tracker = PipProgress(6, 80, 10)
    tracker.feed("Collecting torch==2.13.0")
    start, _ = tracker.feed("  Downloading torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl (526.6 MB)")
    half = tracker.feed("Progress 263300000 of 526600000")
    done = tracker.feed("Progress 526600000 of 526600000")
    assert half[1] == "Downloading torch-2.13.0 (526.6 MB): 50 %"
    assert done[1].endswith(": 100 %")
    assert start < half[0] < done[0] < 80
    assert tracker.feed("Progress 10 of 0") is None  # no size given: nothing to show
    assert tracker.feed("Looking in indexes: https://pypi.org/simple") is None


def test_short_names():
    assert short_name("https://x/torch-2.13.0-cp311-cp311-win_amd64.whl") == "torch-2.13.0"
    assert short_name("/opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl") == "torch-2.13.0+cpu"
    assert short_name("affine-2.4.0.tar.gz") == "affine-2.4.0.tar.gz"
