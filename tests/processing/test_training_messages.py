"""Training's messages without noise (issue 17 item 3): a progress text once per phase, not per
step; the last lines name the package, model_metrics.html and the headline metrics in words
(METRICS stays JSON for scripts). The worker is the fake one (tests/data/fake_worker.py)."""

import json
import os

import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback

from dlt_train_helpers import TRAIN_ALG, fake_export, fake_python, needs_engine, tiny_training_params
from dl_engine.events import Events
from dl_engine.train.config import TrainConfig


class Recording(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.infos, self.texts = [], []

    def pushInfo(self, text):  # noqa: N802 (QGIS API name)
        self.infos.append(text)

    def setProgressText(self, text):  # noqa: N802
        self.texts.append(text)


def test_a_progress_text_once_per_phase(provider):
    from deep_learning_tools.processing_provider.engine_process import feed_event, progress_phase

    feedback = Recording()
    events = Events(sink=lambda event: feed_event(feedback, event))
    for step in range(40):  # the learning-rate finder reports every step
        events.progress(5.0 * step / 40, "finding the learning rate")
    for epoch in (1, 2):
        for step in range(10):
            events.progress(5 + 45 * epoch, f"epoch {epoch}: loss {1.0 / (step + 1):.4f}")
    for done in range(1, 6):
        events.progress(90 + done, f"trial_2: classifying tiles {done}/5")
    assert feedback.texts == ["finding the learning rate", "epoch 1", "epoch 2", "trial_2: classifying tiles"]
    assert progress_phase("trial_2: epoch 3: loss 0.41") == "trial_2: epoch 3"
    assert progress_phase("writing the model package") == "writing the model package"


def test_the_last_lines_name_the_package_the_report_and_the_metrics(provider, tmp_path):
    from deep_learning_tools.processing_provider.train_deep_learning_model import run_training

    out = tmp_path / "model"
    config = TrainConfig(in_folder=fake_export(tmp_path / "chips"), out_folder=str(out))
    feedback = Recording()
    outputs = run_training(config, feedback, python=fake_python(tmp_path, "ok"))
    # the fake worker reports ./model.dlpk and the metrics {"accuracy": 0.82, "miou": 0.5}
    assert feedback.infos[-3:] == ["Model package: ./model.dlpk", "Report: ./model_metrics.html",
                                   "Validation: mIoU 0.50, accuracy 0.82"]
    assert json.loads(outputs["METRICS"]) == {"accuracy": 0.82, "miou": 0.5}


def test_headline_metrics_in_words(provider):
    from deep_learning_tools.processing_provider.train_deep_learning_model import headline

    assert headline({"miou": 0.6234, "accuracy": 0.911, "dice": 0.7, "valid_loss": 0.3, "per_class": {}}) == \
        "Validation: mIoU 0.62, accuracy 0.91, Dice 0.70"
    assert headline({"average_precision": 0.553, "valid_loss": 1.25}) == \
        "Validation: average precision (IoU 0.5) 0.55, validation loss 1.25"
    assert headline({"accuracy": 0.5, "learned_nothing": True}).endswith("the model learned nothing (see the "
                                                                          "warning above)")
    assert headline({}) == ""


@pytest.mark.heavy
@needs_engine
def test_an_out_folder_holding_a_model_is_refused_by_the_tool(provider, tmp_path):
    """The engine's rule (dl_engine/train/resume.py) reaches the dialog as "OUT_FOLDER: …"."""
    import processing

    out = tmp_path / "trees"
    out.mkdir()
    (out / "trees.dlpk").write_bytes(b"an earlier model")
    with pytest.raises(QgsProcessingException) as raised:
        processing.run(TRAIN_ALG, tiny_training_params(fake_export(tmp_path / "chips"), out))
    message = str(raised.value)
    assert message.startswith(f"Output model folder (OUT_FOLDER): {out} already holds a trained model")
    assert "another OUT_FOLDER" in message and "PRETRAINED_MODEL" in message
    assert os.listdir(out) == ["trees.dlpk"]
