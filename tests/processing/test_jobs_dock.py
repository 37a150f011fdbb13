"""The "Deep learning jobs" dock (plugin/jobs_dock.py, plugin/jobs.py, plugin/chart.py) fed with a recorded
training: tests/data/events/training_events.jsonl is what the training worker wrote in OUT_FOLDER during a real
6-epoch UNET training on CPU (paths replaced). It is read back as a finished run's history, and replayed through
the real runner (engine_process.run_worker) by tests/data/events/replay_worker.py, as a running training."""

import json
import os
import shutil
import sys
import threading
import time

import pytest
from qgis.PyQt.QtCore import QCoreApplication, QUrl

from dlt_helpers import DATA
from dl_engine.errors import Canceled

RECORDED = DATA / "events" / "training_events.jsonl"
REPLAY = str(DATA / "events" / "replay_worker.py")
FAKE = str(DATA / "fake_worker.py")
FAKE_AUTODL = str(DATA / "fake_autodl_worker.py")


def recorded_events():
    with open(RECORDED, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def recorded_epochs():
    return [e for e in recorded_events() if e["event"] == "metric"]


@pytest.fixture
def engine_process():
    from deep_learning_tools.processing_provider import engine_process

    return engine_process


@pytest.fixture
def registry(qgis_app, engine_process):
    from deep_learning_tools.plugin.jobs import JobRegistry

    jobs = JobRegistry()
    jobs.listen()
    yield jobs
    jobs.close()


@pytest.fixture
def dock(registry):
    from deep_learning_tools.plugin.jobs_dock import JobsDock

    widget = JobsDock(registry)
    widget.resize(420, 620)
    yield widget
    widget.deleteLater()


def process_events(seconds=0.0):
    end = time.monotonic() + seconds
    while True:
        QCoreApplication.processEvents()
        if time.monotonic() >= end:
            return
        time.sleep(0.01)


class Run(threading.Thread):
    """``run_worker`` on another thread, as Processing and QgsTask run it; the GUI thread keeps processing
    the dock's queued events meanwhile."""

    def __init__(self, engine_process, args, **kwargs):
        super().__init__(daemon=True)
        self.engine_process, self.args, self.kwargs = engine_process, args, kwargs
        self.result = self.error = None

    def run(self):
        try:
            self.result = self.engine_process.run_worker(self.args, None, python=sys.executable, **self.kwargs)
        except Exception as error:  # the test reads it
            self.error = error

    def follow(self, dock, timeout=60, each=None):
        self.start()
        end = time.monotonic() + timeout
        while self.is_alive() and time.monotonic() < end:
            process_events(0.02)
            if each is not None:
                each()
        self.join(5)
        process_events(0.1)
        assert not self.is_alive(), "the run did not end"


def train_config(tmp_path, out_folder):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"in_folder": str(tmp_path / "chips"), "out_folder": str(out_folder)}))
    return str(path)


def test_a_recorded_training_read_back_from_its_folder(dock, tmp_path):
    folder = tmp_path / "trees_unet"
    folder.mkdir()
    shutil.copy(RECORDED, folder / "training_events.jsonl")
    (folder / "model_metrics.html").write_text("<html>report</html>")

    job = dock.open_history(str(folder))
    assert dock.rows() == [["Training — trees_unet", "done", "100 %"]]
    epochs = recorded_epochs()
    # the chart has one point per epoch: both losses and the monitored metric (MIOU), as recorded
    chart = dock.chart.series()
    assert set(chart) == {"train loss", "valid loss", "miou"}
    assert chart["train loss"] == [(float(e["epoch"]), e["train_loss"]) for e in epochs]
    assert chart["valid loss"] == [(float(e["epoch"]), e["valid_loss"]) for e in epochs]
    assert chart["miou"] == [(float(e["epoch"]), e["miou"]) for e in epochs]
    assert [x for x, _ in chart["miou"]] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert dock.chart.title == "epoch 6 of 6"
    # the links open the folder where the run is now, and its report
    assert dock.link_targets() == [str(folder), str(folder / "model_metrics.html")]
    assert f'href="{QUrl.fromLocalFile(str(folder / "model_metrics.html")).toString()}"' in dock.links.text()
    # a finished run read from disk has nothing to cancel
    assert not dock.cancel_button.isEnabled() and not dock.cancel_current()
    assert job.status == "done" and job.leaderboard() == []

    # opened again: the same row, read anew
    dock.open_history(str(folder / "training_events.jsonl"))
    assert len(dock.rows()) == 1


def test_a_history_cut_short_and_a_folder_without_one(dock, tmp_path, monkeypatch):
    from deep_learning_tools.plugin import jobs_dock

    folder = tmp_path / "killed"
    folder.mkdir()
    lines = RECORDED.read_text(encoding="utf-8").splitlines()
    cut = next(i for i, line in enumerate(lines) if '"epoch": 3' in line and '"metric"' in line)
    # QGIS closed during epoch 4: the last line was half written
    (folder / "training_events.jsonl").write_text("\n".join(lines[:cut + 1]) + "\n" + lines[cut + 1][:20])
    dock.open_history(str(folder))
    assert dock.rows()[0][:2] == ["Training — killed", "ended"]
    assert [x for x, _ in dock.chart.series()["valid loss"]] == [1.0, 2.0, 3.0]

    said = []
    monkeypatch.setattr(jobs_dock.QMessageBox, "information", lambda parent, title, text: said.append(text))
    assert dock.open_history(str(tmp_path / "gone" / "training_events.jsonl")) is None
    assert "gone" in said[-1]
    (tmp_path / "nothing").mkdir()
    assert dock.open_history(str(tmp_path / "nothing")) is None
    assert "training_events.jsonl" in said[-1] and str(tmp_path / "nothing") in said[-1]


@pytest.mark.heavy
def test_a_running_training_fills_its_row_and_chart(dock, engine_process, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    config = train_config(tmp_path, out)
    run = Run(engine_process, [REPLAY, str(RECORDED), "0.01", "-m", "dl_engine", "train", "--config", config])
    seen = []

    def look():
        rows = dock.rows()
        if rows:
            seen.append((rows[0][1], int(rows[0][2].rstrip(" %")), len(dock.chart.series().get("valid loss", []))))

    run.follow(dock, each=look)
    assert run.error is None and run.result["out_folder"] == str(out)
    assert dock.rows() == [["Training — model", "done", "100 %"]]
    # while it ran: a row at once, the progress rising, the chart's points arriving epoch by epoch
    running = [s for s in seen if s[0] == "running"]
    assert running, seen
    progress = [p for _, p, _ in running]
    assert progress == sorted(progress) and progress[-1] > progress[0]
    points = [n for _, _, n in seen]
    assert points == sorted(points) and points[-1] == len(recorded_epochs()) and len(set(points)) > 2
    # the links: the OUT_FOLDER the config named (model_metrics.html is not there: the replay writes none)
    assert dock.link_targets() == [str(out)]


@pytest.mark.heavy  # a few seconds (make test runs it)
def test_cancel_in_the_dock_stops_the_worker(dock, engine_process, tmp_path):
    out = tmp_path / "model"
    config = train_config(tmp_path, out)
    run = Run(engine_process, [REPLAY, str(RECORDED), "0.1", "-m", "dl_engine", "train", "--config", config])
    asked = {}

    def cancel_once():
        job = dock.registry.jobs.get(dock.current) if dock.current else None
        if job is not None and job.epochs and not asked:
            assert dock.cancel_button.isEnabled()
            asked["at"], asked["pid"] = time.monotonic(), job.pid
            dock.cancel_button.click()
            assert dock.rows()[0][1] == "canceling…"

    run.follow(dock, each=cancel_once)
    assert asked, "no epoch was shown"
    assert isinstance(run.error, Canceled) and "replay was stopped" in str(run.error)
    assert time.monotonic() - asked["at"] < 2 + 0.5  # the runner saw the flag at its next poll
    with pytest.raises(ProcessLookupError):
        os.kill(asked["pid"], 0)
    assert dock.rows()[0][1] == "canceled" and not dock.cancel_button.isEnabled()
    assert "replay was stopped" in dock.phase.text()
    assert engine_process._CANCEL_REQUESTS == set()  # the flag went with the run


def test_an_autodl_run_shows_its_leaderboard(dock, engine_process, tmp_path):
    out_model = tmp_path / "models" / "best.dlpk"
    config = tmp_path / "autodl.json"
    config.write_text(json.dumps({"in_data": str(tmp_path), "out_model": str(out_model)}))
    run = Run(engine_process, [FAKE_AUTODL, "ok", "-m", "dl_engine", "autodl", "--config", str(config)],
              what="AutoDL")
    run.follow(dock)
    assert run.error is None
    assert dock.rows() == [["AutoDL — best.dlpk", "done", "100 %"]]
    # the fake's leaderboard CSV, ranked, in the dock
    assert dock.leaderboard_rows() == [["1", "UnetClassifier resnet34", "0.91", "", ""],
                                       ["2", "PSPNetClassifier resnet50", "0.87", "", ""]]
    assert not dock.leaderboard.isHidden()
    assert dock.link_targets() == [str(out_model.parent), str(tmp_path / "models" / "best_leaderboard.csv")]


def test_export_runs_are_not_listed(dock, engine_process, tmp_path):
    run = Run(engine_process, [FAKE, "ok", str(tmp_path / "out"), "-m", "dl_engine", "export"], what="Export")
    run.follow(dock)
    assert run.error is None and dock.rows() == []


def test_a_listener_that_fails_never_stops_a_run(engine_process, tmp_path):
    def broken(run_id, what, event):
        raise RuntimeError("a follower's bug")

    engine_process.add_listener(broken)
    try:
        result = engine_process.run_worker([FAKE, "ok", str(tmp_path / "out")], None, python=sys.executable)
    finally:
        engine_process.remove_listener(broken)
    assert result["out_folder"] == str(tmp_path / "out")


@pytest.fixture
def desktop_plugin(qgis_iface, dlt_plugin):
    """A plugin started as the desktop starts it; the session's plugin steps aside meanwhile (one provider per id)."""
    import deep_learning_tools

    dlt_plugin.unload()
    plugin = deep_learning_tools.classFactory(qgis_iface)
    plugin.initGui()
    try:
        yield plugin
    finally:
        plugin.unload()
        dlt_plugin.initGui()


def test_the_plugin_menu_opens_the_dock_and_a_training_shows_it(desktop_plugin, engine_process, tmp_path):
    from deep_learning_tools.plugin.main import JOBS_ENTRY

    entry = next(action for action in desktop_plugin.actions if action.text() == JOBS_ENTRY)
    assert desktop_plugin.jobs_dock is None  # made on first use
    out = tmp_path / "desktop_model"
    run = Run(engine_process, [REPLAY, str(RECORDED), "0", "-m", "dl_engine", "train", "--config",
                               train_config(tmp_path, out)])
    run.follow(None)
    dock = desktop_plugin.jobs_dock
    assert dock is not None and not dock.isHidden()  # the training brought it up
    assert dock.windowTitle() == "Deep learning jobs"
    assert dock.rows() == [["Training — desktop_model", "done", "100 %"]]
    dock.hide()
    entry.trigger()
    assert desktop_plugin.jobs_dock is dock and not dock.isHidden()
    desktop_plugin.unload()
    assert desktop_plugin.jobs_dock is None and desktop_plugin.jobs is None
    assert engine_process._LISTENERS == []  # no longer followed


def test_the_chart_leaves_out_what_is_not_a_number(qgis_app):
    from deep_learning_tools.plugin.chart import LineChart, Series, epoch_ticks, nice_ticks

    chart = LineChart()
    chart.resize(300, 200)
    chart.set_series([Series("valid loss", [(1, 0.5), (2, float("nan")), (3, None), (4, float("inf")), (5, 0.2)])])
    assert chart.series() == {"valid loss": [(1.0, 0.5), (5.0, 0.2)]}
    image = chart.grab()  # paints without error, also with one point and with none
    assert not image.isNull()
    chart.set_series([Series("miou", [(1, 0.3)])])
    assert not chart.grab().isNull()
    chart.set_series([])
    assert not chart.grab().isNull()
    assert epoch_ticks(1, 6) == [1, 2, 3, 4, 5, 6] and all(isinstance(t, int) for t in epoch_ticks(1, 300))
    ticks = nice_ticks(0.07, 1.01)
    assert ticks[0] <= 0.07 and ticks[-1] >= 1.01 and len(ticks) <= 8
