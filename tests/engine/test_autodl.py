"""Train Using AutoDL in the engine (no QGIS): budgets kept, trials ranked, ADVANCED tunes,
cancel keeps the best model, bad input named; and the pieces it adds to training (deadline,
time-shaped schedule, automatic batch size)."""

import csv
import os
import time
import zipfile

import pytest

from detection_helpers import squares_export
from classifier_helpers import feature_export
from train_helpers import learnable_export

from dl_engine.autodl.config import AutoDLConfig
from dl_engine.autodl.leaderboard import ranked, rows
from dl_engine.errors import Canceled
from dl_engine.autodl.run import run_autodl
from dl_engine.autodl.trial import FAILED, SKIPPED, TrialRecord, TrialSpec
from dl_engine.errors import InputError
from dl_engine.package.reader import open_package
from dl_engine.events import Events

BUDGET_H = 0.008  # 29 s
GRACE_S = 20  # writing the best package, and a trial's last step on a busy 2-core CI machine


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return learnable_export(tmp_path_factory.mktemp("autodl"))


def config(export, out, **kw):
    kw.setdefault("total_time_limit", BUDGET_H)
    kw.setdefault("networks", ["UnetClassifier", "PSPNetClassifier"])
    return AutoDLConfig(in_data=export, out_model=str(out), device="cpu", num_workers=0, **kw)


def read_board(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.trains
def test_basic_keeps_the_budget_and_ranks_every_network(export, tmp_path):
    out = tmp_path / "models" / "best.dlpk"
    seen = []
    t0 = time.time()
    result = run_autodl(config(export, out), Events(sink=seen.append))
    elapsed = time.time() - t0
    assert elapsed < BUDGET_H * 3600 + GRACE_S, f"{elapsed:.0f} s for a {BUDGET_H * 3600:.0f} s budget"

    board = read_board(result.leaderboard)
    assert result.leaderboard == str(tmp_path / "models" / "best_leaderboard.csv")
    assert [r["rank"] for r in board] == [str(i) for i in range(1, len(board) + 1)]
    evaluated = [r for r in board if r["phase"] == "evaluate"]
    assert sorted(r["network"] for r in evaluated) == ["PSPNetClassifier", "UnetClassifier"]
    # pixel networks are evaluated from EfficientNet-Lite0's ImageNet weights (offline)
    assert all(r["backbone"] == "EFFICIENTNET_LITE0" and r["metric"] == "miou" for r in board)
    values = [float(r["value"]) for r in board]
    assert values == sorted(values, reverse=True) and 0 < values[0] <= 1
    assert all(int(r["epochs"]) >= 1 and int(r["batch_size"]) >= 2 for r in board)
    assert [r["package"] for r in board] == [str(out)] + [""] * (len(board) - 1)
    # the second half trains the best evaluated network on from its weights
    continued = [r for r in board if r["phase"] == "continue"]
    assert len(continued) <= 1 and len(board) == 2 + len(continued)
    for r in continued:
        best_evaluated = max(evaluated, key=lambda e: float(e["value"]))
        assert r["network"] == best_evaluated["network"] and r["trial"].endswith("_2")
    assert any(e["event"] == "log" and "fine-tuning from" in e["message"] for e in seen) == bool(continued)

    # the best package: one root emd of the rank-1 network, the leaderboard inside
    with open_package(str(out)) as pkg:
        assert pkg.model_name == board[0]["network"]
        assert pkg.load_state_dict()
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        html = zf.read("model_metrics.html").decode("utf-8")
    assert "leaderboard.csv" in names and not any(n.endswith(".dlpk") for n in names)
    assert "AutoDL leaderboard" in html and "PSPNetClassifier" in html
    # nothing else left beside it; the result event says the same as the return value
    assert sorted(os.listdir(out.parent)) == ["best.dlpk", "best_leaderboard.csv"]
    results = [e for e in seen if e["event"] == "result"]
    assert len(results) == 1 and results[0]["out_model_file"] == str(out)
    assert results[0]["best"]["network"] == board[0]["network"]
    assert any(e["event"] == "metric" and e.get("trial") for e in seen)


@pytest.mark.trains
def test_advanced_tunes_the_best_networks(export, tmp_path):
    out = tmp_path / "adv.dlpk"
    t0 = time.time()
    result = run_autodl(config(export, out, autodl_mode="ADVANCED", total_time_limit=0.015))
    elapsed = time.time() - t0
    assert elapsed < 0.015 * 3600 + GRACE_S
    board = read_board(result.leaderboard)
    phases = [r["phase"] for r in board]
    assert phases.count("evaluate") == 2 and phases.count("tune") >= 1, board
    tuned = [r for r in board if r["phase"] == "tune"]
    # tuning draws its own hyper-parameters within the search space
    for r in tuned:
        assert r["network"] in ("UnetClassifier", "PSPNetClassifier")
        assert 2e-3 * 0.2 <= float(r["learning_rate"]) <= 2e-3 * 5
        assert r["augmentation"] in ("NONE", "DEFAULT", "STRONG")
    with open_package(str(out)) as pkg:
        assert pkg.model_name == board[0]["network"]


@pytest.mark.trains
def test_cancel_keeps_the_best_model_so_far(export, tmp_path):
    out = tmp_path / "c.dlpk"
    state = {"cancel": None}

    def sink(event):  # cancel in the middle of the first trial, after its second epoch
        if event["event"] == "metric" and event["epoch"] == 2 and state["cancel"] is None:
            state["cancel"] = time.time()

    with pytest.raises(Canceled) as info:
        run_autodl(config(export, out, total_time_limit=0.05), Events(sink=sink),
                   cancel=lambda: state["cancel"] is not None)
    # the running trial stops at its next batch, its best epoch is written: seconds, not the 90 s it had
    assert time.time() - state["cancel"] < 20
    message = str(info.value)
    assert str(out) in message and "best model so far" in message
    with open_package(str(out)) as pkg:
        assert pkg.model_name == "UnetClassifier"
    board = read_board(str(tmp_path / "c_leaderboard.csv"))
    assert [(r["network"], r["status"]) for r in board] == [("UnetClassifier", "stopped")]
    assert int(board[0]["epochs"]) >= 2
    assert sorted(os.listdir(tmp_path)) == ["c.dlpk", "c_leaderboard.csv"]


def test_cancel_before_any_model_writes_nothing(export, tmp_path):
    out = tmp_path / "n.dlpk"
    with pytest.raises(Canceled, match="nothing was written"):
        run_autodl(config(export, out), cancel=lambda: True)
    assert os.listdir(tmp_path) == []


@pytest.mark.trains
def test_save_evaluated_models_keeps_every_trial_package(export, tmp_path):
    out = tmp_path / "s.dlpk"
    result = run_autodl(config(export, out, save_evaluated_models=True))
    assert result.evaluated_folder == str(tmp_path / "s_evaluated")
    board = read_board(result.leaderboard)
    assert len(board) >= 2
    for row in board:
        assert os.path.isfile(row["package"]) and row["package"].startswith(result.evaluated_folder)
        assert os.path.basename(os.path.dirname(row["package"])).startswith("AutoDL_")
        with open_package(row["package"]) as pkg:
            assert pkg.model_name == row["network"]
    assert sorted(os.listdir(result.evaluated_folder)) == sorted(row["trial"] for row in board)
    assert {"AutoDL_PSPNetClassifier_efficientnet_lite0", "AutoDL_UnetClassifier_efficientnet_lite0"} <= set(
        os.listdir(result.evaluated_folder))


@pytest.mark.trains
def test_detection_export_is_ranked_by_average_precision(tmp_path):
    data = squares_export(tmp_path / "d")
    out = tmp_path / "det.dlpk"
    result = run_autodl(AutoDLConfig(in_data=data, out_model=str(out), total_time_limit=BUDGET_H, device="cpu",
                                     num_workers=0, networks=["SingleShotDetector", "YOLOv3"]))
    board = read_board(result.leaderboard)
    assert {r["network"] for r in board} == {"SingleShotDetector", "YOLOv3"}
    assert all(r["metric"] == "average_precision" for r in board)
    with open_package(str(out)) as pkg:
        assert pkg.model_name == board[0]["network"]


# ---- bad input: named errors, nothing written ----------------------------------------------------

@pytest.mark.parametrize("kw, parameter, words", [
    ({"total_time_limit": 0}, "TOTAL_TIME_LIMIT", "above 0"),
    ({"total_time_limit": -1}, "TOTAL_TIME_LIMIT", "above 0"),
    ({"networks": ["SingleShotDetector"]}, "NETWORKS", "UnetClassifier"),
    ({"networks": ["HRNet"]}, "NETWORKS", "unknown"),
    ({"autodl_mode": "FAST"}, "AUTODL_MODE", "BASIC"),
])
def test_bad_input_is_named(export, tmp_path, kw, parameter, words):
    out = tmp_path / "out" / "m.dlpk"
    with pytest.raises(InputError) as info:
        run_autodl(config(export, out, **kw))
    assert info.value.parameter == parameter and words in info.value.message
    assert not (tmp_path / "out").exists()


def test_out_model_must_be_a_dlpk(export, tmp_path):
    with pytest.raises(InputError) as info:
        run_autodl(config(export, tmp_path / "m.zip"))
    assert info.value.parameter == "OUT_MODEL" and ".dlpk" in info.value.message
    assert os.listdir(tmp_path) == []


def test_unsupported_export_format_is_named(tmp_path):
    data = feature_export(tmp_path / "f")
    with pytest.raises(InputError) as info:
        run_autodl(AutoDLConfig(in_data=data, out_model=str(tmp_path / "m.dlpk"), total_time_limit=0.01))
    assert info.value.parameter == "IN_DATA"
    assert "Labeled_Tiles" in info.value.message and "Classified_Tiles" in info.value.message


def test_missing_export_is_named(tmp_path):
    with pytest.raises(InputError) as info:
        run_autodl(AutoDLConfig(in_data=str(tmp_path / "nothing"), out_model=str(tmp_path / "m.dlpk")))
    assert info.value.parameter == "IN_DATA"


# ---- ranking ----------------------------------------------------------------------------------------

def test_ranking_puts_the_best_metric_first_and_failures_last():
    def rec(n, value, status="completed"):
        return TrialRecord(number=n, name=f"t{n}", spec=TrialSpec("UNET", "RESNET18", 1e-3), value=value,
                           status=status)
    records = [rec(1, 0.5), rec(2, None, FAILED), rec(3, 0.7), rec(4, None), rec(5, 0.6, "pruned"),
               rec(6, None, SKIPPED)]
    assert [r.number for r in ranked(records)] == [3, 5, 1, 4, 2, 6]
    table = rows(records, "MIOU")
    assert [row["rank"] for row in table] == [1, 2, 3, 4, "", ""]
    assert table[-1]["status"] == "skipped"


@pytest.mark.trains
def test_a_short_budget_goes_to_the_default_network_and_a_long_one_compares_them(export, tmp_path):
    """NETWORKS empty: the default network of Train Deep Learning Model (UNET) comes first, from
    pretrained EfficientNet-Lite0; a budget too short to compare networks trains it alone, the
    others listed as not evaluated; named NETWORKS are all evaluated whatever the budget."""
    from dl_engine.autodl.plan import make_plan
    from dl_engine.autodl.run import default_network_first
    from dl_engine.autodl.search import BASIC_EVALUATION_SHARE, MIN_EVALUATION_SECONDS, Search

    def specs_for(hours, networks=()):
        plan = make_plan(AutoDLConfig(in_data=export, out_model=str(tmp_path / "m.dlpk"), total_time_limit=hours,
                                      networks=list(networks)))
        search = Search(plan, Events(enabled=False), lambda: False)
        specs = [search.default_spec(n) for n in default_network_first(plan.networks)]
        return search, specs, search.affordable(specs, plan.seconds * BASIC_EVALUATION_SHARE)

    search, specs, chosen = specs_for(0.05)  # 3 minutes
    assert [s.network for s in specs][0] == "UNET" and len(specs) >= 3
    assert {s.backbone for s in specs} == {"EFFICIENTNET_LITE0"}
    assert chosen == specs[:1]
    search.not_evaluated()
    assert [(r.spec.network, r.status) for r in search.records] == [(s.network, SKIPPED) for s in specs[1:]]
    assert all("TOTAL_TIME_LIMIT" in r.message for r in search.records)
    assert os.path.isfile(search.plan.leaderboard)
    _, specs, chosen = specs_for(len(specs) * MIN_EVALUATION_SECONDS / BASIC_EVALUATION_SHARE / 3600)
    assert chosen == specs
    _, specs, chosen = specs_for(0.05, ["PSPNetClassifier", "UnetClassifier", "DeepLab"])
    assert [s.network for s in chosen] == ["UNET", "PSPNET", "DEEPLAB"]


@pytest.mark.trains  # an AutoDL trial trains a network
def test_networks_without_time_are_listed_as_skipped(export, tmp_path):
    out = tmp_path / "k.dlpk"
    # 4 s for three networks: the first trial runs (it always does; about 3 s on 2 CPU cores once torch is
    # warm, more when cold), no time is left for the others. (12 s fitted all three on a warm process.)
    result = run_autodl(config(export, out, networks=["UnetClassifier", "PSPNetClassifier", "DeepLab"],
                               total_time_limit=4 / 3600))
    board = read_board(result.leaderboard)
    assert board[0]["rank"] == "1" and board[0]["status"] != "skipped"
    skipped = [r for r in board if r["status"] == "skipped"]
    assert skipped and all(r["rank"] == "" and r["epochs"] == "0" and "no time" in r["message"] for r in skipped)
    assert {r["network"] for r in board} == {"UnetClassifier", "PSPNetClassifier", "DeepLab"}


@pytest.mark.heavy
def test_every_trial_failing_is_named_and_leaves_nothing(export, tmp_path, monkeypatch):
    import dl_engine.train.run as train_run

    def broken(config, events=None, cancel=None, control=None):
        raise RuntimeError(f"{config.model_type} exploded")
    monkeypatch.setattr(train_run, "run_training", broken)
    out = tmp_path / "new" / "m.dlpk"
    with pytest.raises(InputError) as info:
        run_autodl(config(export, out, total_time_limit=0.005))
    assert info.value.parameter == "NETWORKS"
    assert "UNET exploded" in info.value.message and "PSPNET exploded" in info.value.message
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def unet18(export, tmp_path_factory):
    """A small UNET RESNET18 package trained on the same export (a few steps)."""
    from dl_engine.train import TrainConfig
    from dl_engine.train.run import run_training

    out = tmp_path_factory.mktemp("pre") / "unet18"
    result = run_training(TrainConfig(in_folder=export, out_folder=str(out), model_type="UNET", backbone="RESNET18",
                                      max_epochs=1, batch_size=8, learning_rate=1e-3, num_workers=0, freeze=False))
    return result.out_model_file


@pytest.mark.trains
def test_pretrained_model_starts_its_network(export, unet18, tmp_path):
    seen = []
    out = tmp_path / "p.dlpk"
    result = run_autodl(config(export, out, networks=["UnetClassifier"], pretrained_model=unet18,
                               total_time_limit=0.004), Events(sink=seen.append))
    row = result.best
    assert (row["network"], row["backbone"]) == ("UnetClassifier", "RESNET18")  # the pretrained model's backbone
    assert any(e["event"] == "log" and "fine-tuning from" in e["message"] for e in seen)


@pytest.mark.trains
def test_pretrained_model_of_another_network_is_named(export, unet18, tmp_path):
    with pytest.raises(InputError) as info:
        run_autodl(config(export, tmp_path / "p.dlpk", networks=["PSPNetClassifier"], pretrained_model=unet18))
    assert info.value.parameter == "PRETRAINED_MODEL" and "UnetClassifier" in info.value.message
    assert os.listdir(tmp_path) == []
