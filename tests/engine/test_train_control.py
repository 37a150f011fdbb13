"""What AutoDL adds to a training run: a deadline that ends training gracefully (the best
epoch is still written), a learning-rate schedule shaped by the time, a soft stop, a
per-epoch hook that prunes, and the automatic batch size."""

import time

import pytest

torch = pytest.importorskip("torch")

import train_helpers as th  # noqa: E402
from dl_engine.events import Events
from dl_engine.train import TrainConfig  # noqa: E402
from dl_engine.train.batch_size import MIN_STEPS, choose_batch_size, limit_for_data  # noqa: E402
from dl_engine.train.control import PRUNED, STOPPED, TIME_LIMIT, TrainControl  # noqa: E402
from dl_engine.train.run import run_training  # noqa: E402


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return th.learnable_export(tmp_path_factory.mktemp("ctl"))


def config(export, out, **kw):
    kw.setdefault("backbone", "RESNET18")
    kw.setdefault("batch_size", 8)
    kw.setdefault("max_epochs", 1000)
    kw.setdefault("learning_rate", 3e-3)
    kw.setdefault("validation_percentage", 20)
    kw.setdefault("num_workers", 0)
    kw.setdefault("stop_training", False)
    return TrainConfig(in_folder=export, out_folder=str(out), **kw)


@pytest.mark.trains
def test_deadline_ends_training_with_an_annealed_schedule_and_a_package(export, tmp_path):
    seconds = 12.0
    control = TrainControl(deadline=time.time() + seconds)
    t0 = time.time()
    result = run_training(config(export, tmp_path / "m"), control=control)
    assert control.training_ended - t0 < seconds + 5  # a last step and the last validation may overrun
    assert result.stop_reason == TIME_LIMIT == control.stop_reason
    assert 1 <= len(result.history) < 1000
    assert (tmp_path / "m" / "m.dlpk").is_file()
    # the one-cycle schedule was fitted to the time: the rate at the end is far below its peak
    assert result.history[-1]["lr"] < 3e-3 / 5, [h["lr"] for h in result.history]
    assert result.metrics.get("miou") is not None


@pytest.mark.trains
def test_soft_stop_and_pruning_keep_the_best_epoch(export, tmp_path):
    epochs = []
    control = TrainControl(on_epoch=lambda epoch, value: epochs.append((epoch, value)) or epoch >= 1)
    result = run_training(config(export, tmp_path / "p", max_epochs=10, monitor="MIOU"), control=control)
    assert result.stop_reason == PRUNED and len(result.history) == 2
    assert [e for e, _ in epochs] == [0, 1] and all(0 <= v <= 1 for _, v in epochs)  # the monitored mIoU

    control = TrainControl(stop=lambda: True)
    result = run_training(config(export, tmp_path / "s", max_epochs=10), control=control)
    assert result.stop_reason == STOPPED and len(result.history) == 1
    assert (tmp_path / "s" / "s.emd").is_file()


@pytest.mark.trains
def test_automatic_batch_size_on_the_cpu(export, tmp_path):
    control = TrainControl()
    seen = []
    result = run_training(config(export, tmp_path / "b", max_epochs=1, batch_size=64, auto_batch_size=True,
                                 write_dlpk=False), Events(sink=seen.append), control=control)
    # 32 px chips: many fit the CPU's share of pixels, so the data set's size limits the batch
    # (at least MIN_STEPS steps per epoch)
    line = next(e["message"] for e in seen if e["event"] == "log" and " training and " in e["message"])
    train_chips = int(line.split()[0])
    assert control.batch_size == result.batch_size == limit_for_data(64, train_chips) == train_chips // MIN_STEPS
    assert not (tmp_path / "b" / "b.dlpk").exists() and (tmp_path / "b" / "b.emd").is_file()


class _Runtime:
    is_cuda = False


def test_cpu_batch_size_follows_the_chip_size():
    class Data(list):
        pass
    data = Data(range(1000))
    log = []
    assert choose_batch_size(None, None, _Runtime(), data, 256, 64, log.append) == 8
    assert choose_batch_size(None, None, _Runtime(), data, 512, 64, log.append) == 2
    assert choose_batch_size(None, None, _Runtime(), data, 128, 16, log.append) == 16
    assert choose_batch_size(None, None, _Runtime(), Data(range(10)), 64, 64, log.append) == 2
    assert all("automatic" in line for line in log)


@pytest.mark.trains
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_automatic_batch_size_on_a_gpu_fits_and_grows(export, tmp_path):
    control = TrainControl()
    run_training(config(export, tmp_path / "g", max_epochs=1, batch_size=64, auto_batch_size=True, device="cuda",
                        write_dlpk=False), control=control)
    assert 2 <= control.batch_size <= 64


def test_gpu_probe_predicts_the_largest_batch_and_backs_off(monkeypatch):
    """The GPU probe's arithmetic on a simulated device: memory = base + batch x per chip;
    a step above the capacity runs out of memory."""
    import dl_engine.train.batch_size as bs

    gib = 2 ** 30
    base, per_chip, capacity = 1 * gib, 0.5 * gib, 21 * gib
    tried = []

    def fits(model, task, runtime, data, batch):
        tried.append(batch)
        peak = base + batch * per_chip
        return None if peak > capacity * 0.9 else int(peak)  # fragmentation: a bit less than predicted fits

    monkeypatch.setattr(bs, "_fits", fits)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (capacity, capacity))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 0)
    model = torch.nn.Linear(4, 4)

    class Runtime:
        device = "cuda:0"

    def probe(limit=64):
        tried.clear()
        return bs._probe_gpu(model, None, Runtime(), list(range(1000)), limit, lambda m: None)

    # 0.85 x 21 GiB - 1 GiB leaves room for 33 chips of 0.5 GiB: 32 is tried and fits
    assert probe() == 32 and tried == [2, 4, 32]
    assert probe(limit=16) == 16 and tried == [2, 4, 16]  # never above the limit
    capacity = 10 * gib  # room for 15 chips: the power of two below, 8
    assert probe() == 8 and tried == [2, 4, 8]
    # the device claims more free memory than a step can use: the predicted 8 runs out of
    # memory, the probe halves to 4
    per_chip, capacity = 1.1 * gib, 8 * gib
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (20 * gib, 20 * gib))
    assert probe() == 4 and tried == [2, 4, 8]
