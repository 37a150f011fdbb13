"""A run's history on disk (dl_engine/events.py, ``Events.record_to``): the worker's events also go to
training_events.jsonl and training_log.txt in OUT_FOLDER (AutoDL: beside OUT_MODEL), so the history outlives
the dialog. Tested through the worker's own entry (dl_engine.worker.run_job), without training."""

import io
import json
import signal

import pytest

from dl_engine import events as ev
from dl_engine.errors import Canceled
from dl_engine.worker import run_job


@pytest.fixture(autouse=True)
def own_signal_handlers():
    """run_job installs the worker's SIGTERM/SIGINT handlers: pytest's come back after each test."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


def lines(path):
    return path.read_text(encoding="utf-8").splitlines()


def a_training(events, out, epochs=3, steps=50, cancel_after=None, append=False):
    """What run_training emits, in its order: the checks' words, then the files, then the epochs."""
    events.warning("2 validation chips: the metrics say little")
    events.record_to(*ev.training_files(str(out)), append=append)
    events.log("device: cpu")
    for i in range(steps):  # the learning-rate finder: one progress per step, one text
        events.progress(5.0 * i / steps, "finding the learning rate")
    for epoch in range(1, epochs + 1):
        for step in range(steps):
            events.progress(5 + 90 * (epoch - 1 + step / steps) / epochs, f"epoch {epoch}: loss {1 / (step + 1):.4f}")
        events.metric(epoch=epoch, epochs=epochs, train_loss=1.0 / epoch, valid_loss=1.2 / epoch, miou=0.2 * epoch,
                      lr=1e-3, seconds=2.5, samples_per_s=40.0, monitor="MIOU", improved=True)
        if cancel_after == epoch:
            raise Canceled(f"Training canceled after epoch {epoch}; resume with ARGUMENTS 'resume true'")
    events.progress(100.0, "done")
    events.result(out_model_file=str(out / "out.dlpk"), out_folder=str(out), report=str(out / "model_metrics.html"),
                  metrics={"miou": 0.6, "accuracy": 0.93})


def test_the_worker_writes_the_stream_and_a_log_to_out_folder(tmp_path, monkeypatch):
    stdout = io.StringIO()
    monkeypatch.setattr("sys.stdout", stdout)
    out = tmp_path / "model"
    assert run_job(lambda events, cancel: a_training(events, out), "training") == ev.EXIT_OK

    printed = [json.loads(line) for line in stdout.getvalue().splitlines()]
    recorded = [json.loads(line) for line in lines(out / ev.TRAINING_EVENTS)]
    # every event but the step-by-step progress, in the order printed, with the time it was written
    assert [e for e in printed if e["event"] != "progress"] == \
        [{k: v for k, v in e.items() if k != "time"} for e in recorded if e["event"] != "progress"]
    assert recorded[0]["event"] == "log" and "validation chips" in recorded[0]["message"]  # from before record_to
    assert all(isinstance(e["time"], float) for e in recorded)
    progress = [e for e in recorded if e["event"] == "progress"]
    assert 0 < len(progress) <= 101 + 4 < len([e for e in printed if e["event"] == "progress"])
    assert progress[-1]["percent"] == 100.0

    log = lines(out / ev.TRAINING_LOG)
    text = "\n".join(log)
    assert text.count("finding the learning rate") == 1  # once per phase, not per step
    assert [line.split("  ", 1)[1] for line in log if "epoch 2" in line] == [
        "epoch 2", "epoch 2/3: train_loss 0.5, valid_loss 0.6, miou 0.4, 2.5 s"]
    assert "warning: 2 validation chips" in log[0]
    assert log[-1].endswith(f"done: model {out / 'out.dlpk'}; report {out / 'model_metrics.html'}; "
                            "miou 0.6, accuracy 0.93")


def test_a_canceled_run_records_how_it_ended_and_a_resume_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.stdout", io.StringIO())
    out = tmp_path / "model"
    code = run_job(lambda events, cancel: a_training(events, out, cancel_after=2), "training")
    assert code == ev.EXIT_CANCELED
    recorded = [json.loads(line) for line in lines(out / ev.TRAINING_EVENTS)]
    assert recorded[-1]["event"] == "canceled" and "resume" in recorded[-1]["message"]
    assert lines(out / ev.TRAINING_LOG)[-1].split("  ", 1)[1].startswith("canceled: Training canceled after epoch 2")

    run_job(lambda events, cancel: a_training(events, out, append=True), "training")  # resumed: appended
    epochs = [e["epoch"] for e in map(json.loads, lines(out / ev.TRAINING_EVENTS)) if e["event"] == "metric"]
    assert epochs == [1, 2, 1, 2, 3]
    run_job(lambda events, cancel: a_training(events, out), "training")  # a new run: the files start anew
    epochs = [e["epoch"] for e in map(json.loads, lines(out / ev.TRAINING_EVENTS)) if e["event"] == "metric"]
    assert epochs == [1, 2, 3]


def test_in_process_runs_and_bad_input_write_nothing(tmp_path, monkeypatch):
    out = tmp_path / "model"
    a_training(ev.Events(), out, epochs=1, steps=2)  # in-process callers (tests, AutoDL's trials) keep folders as is
    assert not out.exists()

    monkeypatch.setattr("sys.stdout", io.StringIO())

    def refused(events, cancel):  # the checks fail before record_to: nothing written
        from dl_engine.errors import InputError

        raise InputError("OUT_FOLDER", "already holds a trained model")

    assert run_job(refused, "training") == ev.EXIT_BAD_INPUT
    assert not out.exists()


def test_autodl_files_wait_for_their_folder_and_go_when_no_model_came(tmp_path):
    events = ev.Events(stream=io.StringIO(), recording=True)
    out_model = tmp_path / "new" / "best.dlpk"
    events.record_to(*ev.autodl_files(str(out_model)), create=False)
    events.log("AutoDL BASIC: 2 networks")
    assert not (tmp_path / "new").exists()  # the run makes the folder (and removes it when no model comes)
    (tmp_path / "new").mkdir()
    events.log("trial 1: UnetClassifier")
    assert [json.loads(line)["message"] for line in lines(tmp_path / "new" / "best_events.jsonl")] == [
        "AutoDL BASIC: 2 networks", "trial 1: UnetClassifier"]
    assert (tmp_path / "new" / "best_log.txt").is_file()
    events.discard_records()
    events.log("no network could be trained")
    assert list((tmp_path / "new").iterdir()) == []


def test_unwritable_history_never_stops_a_run(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    stream = io.StringIO()
    events = ev.Events(stream=stream, recording=True)
    events.record_to(str(blocker / ev.TRAINING_EVENTS), str(blocker / ev.TRAINING_LOG))
    events.log("still reported")
    assert json.loads(stream.getvalue())["message"] == "still reported"
