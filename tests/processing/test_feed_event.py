"""One adapter from engine events to a QgsProcessingFeedback (engine_process.feed_event): used for
worker processes and for the export, which runs in QGIS's process."""

import pytest
from qgis.core import QgsProcessingFeedback

from dlt_helpers import elevation, fmt, run_export
from dl_engine.events import Events


class RecordingFeedback(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.infos, self.warnings, self.debug, self.texts, self.progress_values = [], [], [], [], []
        self.progressChanged.connect(self.progress_values.append)

    def pushInfo(self, text):  # noqa: N802 (QGIS API name)
        self.infos.append(text)

    def pushWarning(self, text):  # noqa: N802
        self.warnings.append(text)

    def pushDebugInfo(self, text):  # noqa: N802
        self.debug.append(text)

    def setProgressText(self, text):  # noqa: N802
        self.texts.append(text)


@pytest.fixture
def feed_event():
    from deep_learning_tools.processing_provider.engine_process import feed_event

    return feed_event


def test_events_reach_the_feedback(feed_event):
    feedback = RecordingFeedback()
    events = Events(sink=lambda event: feed_event(feedback, event))
    events.progress(42.5, "epoch 2")
    events.progress(250)  # clamped by Events
    events.log("hello")
    events.warning("careful")
    events.metric(epoch=1, epochs=3, train_loss=0.5)
    events.emit("something_new", value=1)
    events.result(out_folder="/x")  # how a run ends: its caller reads these, the feedback does not
    events.error("TILE_SIZE_X", "bad")
    events.canceled("stopped")
    assert feedback.progress_values == [42.5, 100.0]
    assert feedback.texts == ["epoch 2"]
    assert feedback.infos == ["hello", "Epoch 1/3: train_loss 0.5"]
    assert feedback.warnings == ["careful"]
    assert feedback.debug == ['{"event": "something_new", "value": 1}']
    feed_event(None, {"event": "progress", "percent": 1})  # no feedback: nothing to do


def test_the_export_reports_percent_and_log_lines(alg, data_dir, tmp_path):
    raster, _ = elevation(data_dir)
    feedback = RecordingFeedback()
    result = run_export({"IN_RASTER": raster, "OUT_FOLDER": str(tmp_path / "out"),
                         "METADATA_FORMAT": fmt(alg, "Export_Tiles"), "TILE_SIZE_X": 64, "TILE_SIZE_Y": 64,
                         "STRIDE_X": 64, "STRIDE_Y": 64}, feedback=feedback)
    assert result["NUM_TILES"] > 0
    assert feedback.progress_values and feedback.progress_values[-1] == 100.0
    assert all(0 <= p <= 100 for p in feedback.progress_values)  # a percent, not a fraction
    assert any(f"{result['NUM_TILES']} chips written" in line for line in feedback.infos)
