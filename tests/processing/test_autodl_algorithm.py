"""deeplearningtools:trainusingautodl through processing.run (and once through qgis_process): the
INTERFACE parameters, quick checks that name the parameter and write nothing, the worker plumbing
with a fake worker (tests/data/fake_autodl_worker.py: the config it receives, the outputs, the
error event, a graceful cancel that takes longer than training's) and one real AutoDL run."""

import csv
import json
import os
import stat
import sys
import time

import pytest
from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback

from dlt_helpers import DATA, REPO, keyword_index
from dlt_train_helpers import export_buildings, fake_export
from test_qgis_process import QGIS_PROCESS, qgis_process, qgis_process_env  # noqa: F401 (fixture)

AUTODL_ALG = "deeplearningtools:trainusingautodl"
FAKE_WORKER = DATA / "fake_autodl_worker.py"

INTERFACE_PARAMETERS = [
    "IN_DATA", "OUT_MODEL", "PRETRAINED_MODEL", "TOTAL_TIME_LIMIT", "AUTODL_MODE", "NETWORKS",
    "SAVE_EVALUATED_MODELS", "DEVICE",
]
NETWORKS = ["SingleShotDetector", "RetinaNet", "FasterRCNN", "YOLOv3", "DeepLab", "UnetClassifier",
            "PSPNetClassifier"]


@pytest.fixture
def autodl_alg(provider):
    return QgsApplication.processingRegistry().algorithmById(AUTODL_ALG)


def autodl(params, feedback=None):
    import processing

    return processing.run(AUTODL_ALG, params, feedback=feedback)


def fake_python(folder, mode="ok"):
    """An executable standing in for the worker's Python (DLT_PYTHON): it runs the fake AutoDL
    worker in MODE with the arguments the runner passes."""
    script = folder / f"fake-python-autodl-{mode}"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_WORKER}" {mode} "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def network_index(algorithm, name):
    return keyword_index(algorithm, "NETWORKS", name)


def received(out_model):
    """What the fake worker was given (it writes this beside OUT_MODEL)."""
    with open(f"{out_model}.received.json", encoding="utf-8") as f:
        return json.load(f)


class Recorder(QgsProcessingFeedback):
    """Keeps the log lines and progress; cancels at the first progress when asked to."""

    def __init__(self, cancel_on_progress=False):
        super().__init__()
        self.lines, self.progress, self.canceled_at = [], [], None
        self.cancel_on_progress = cancel_on_progress
        self.progressChanged.connect(self._on_progress)

    def _on_progress(self, percent):
        self.progress.append(percent)
        if self.cancel_on_progress and self.canceled_at is None:
            self.canceled_at = time.monotonic()
            self.cancel()

    def pushInfo(self, text):  # noqa: N802 (QGIS API name)
        self.lines.append(text)
        super().pushInfo(text)

    def pushWarning(self, text):  # noqa: N802 (QGIS API name)
        self.lines.append(text)
        super().pushWarning(text)


# ---- the interface --------------------------------------------------------------------------------

def test_interface(autodl_alg):
    assert autodl_alg is not None
    assert autodl_alg.displayName() == "Train Using AutoDL"
    assert autodl_alg.group() == "Training" and autodl_alg.groupId() == "training"
    assert [p.name() for p in autodl_alg.parameterDefinitions()] == INTERFACE_PARAMETERS
    advanced = {p.name() for p in autodl_alg.parameterDefinitions() if p.flags() & p.FlagAdvanced}
    assert advanced == {"DEVICE"}
    optional = {p.name() for p in autodl_alg.parameterDefinitions() if p.flags() & p.FlagOptional}
    assert optional == {"PRETRAINED_MODEL", "NETWORKS"}
    outputs = {o.name(): o.type() for o in autodl_alg.outputDefinitions()}
    assert outputs["OUTPUT_MODEL_FILE"] == "outputFile" and outputs["LEADERBOARD"] == "outputFile"
    assert autodl_alg.parameterDefinition("OUT_MODEL").type() == "fileDestination"
    assert autodl_alg.parameterDefinition("OUT_MODEL").defaultFileExtension() == "dlpk"

    def keywords(name):
        return [label.split(" ")[0] for label in autodl_alg.parameterDefinition(name).options()]

    assert keywords("AUTODL_MODE") == ["BASIC", "ADVANCED"]
    assert keywords("NETWORKS") == NETWORKS
    assert autodl_alg.parameterDefinition("NETWORKS").allowMultiple()
    assert autodl_alg.parameterDefinition("NETWORKS").options()[NETWORKS.index("UnetClassifier")] == (
        "UnetClassifier — U-Net (pixel classification)")
    defaults = {p.name(): p.defaultValue() for p in autodl_alg.parameterDefinitions()}
    assert keywords("AUTODL_MODE")[defaults["AUTODL_MODE"]] == "BASIC"
    assert defaults["TOTAL_TIME_LIMIT"] == 2.0 and defaults["SAVE_EVALUATED_MODELS"] is False
    assert defaults["DEVICE"] == "auto" and defaults["NETWORKS"] in (None, [])

    # Same defaults and vocabulary as the engine's config.
    from dl_engine.autodl.config import AUTODL_MODES, AutoDLConfig

    engine = AutoDLConfig(in_data="", out_model="")
    assert (engine.total_time_limit, engine.autodl_mode, engine.networks, engine.save_evaluated_models,
            engine.device) == (2.0, "BASIC", [], False, "auto")
    assert tuple(keywords("AUTODL_MODE")) == AUTODL_MODES

    help_text = autodl_alg.shortHelpString()
    for word in NETWORKS + ["BASIC", "ADVANCED", "0.05 = 3 minutes", "OUTPUT_MODEL_FILE", "LEADERBOARD",
                            "DLT_PYTHON", "SAVE_EVALUATED_MODELS", "Cancel"]:
        assert word in help_text, word


# ---- quick checks: a named error, nothing written -------------------------------------------------

@pytest.mark.parametrize("case, parameter, says", [
    ("time_limit_zero", "TOTAL_TIME_LIMIT", "0.05 = 3 minutes"),
    ("time_limit_negative", "TOTAL_TIME_LIMIT", "above 0"),
    ("out_model_zip", "OUT_MODEL", ".dlpk"),
    ("out_model_emd", "OUT_MODEL", ".dlpk"),
    ("in_data_missing", "IN_DATA", "does not exist"),
    ("in_data_not_an_export", "IN_DATA", "esri_model_definition.emd"),
    ("pretrained_missing", "PRETRAINED_MODEL", "does not exist"),
    ("pretrained_not_a_model", "PRETRAINED_MODEL", ".emd or .dlpk"),
])
def test_bad_input_names_the_parameter(autodl_alg, tmp_path, monkeypatch, case, parameter, says):
    # Should a check let it through, the worker would still refuse to write anything.
    monkeypatch.setenv("DLT_PYTHON", fake_python(tmp_path, "error"))
    good = fake_export(tmp_path / "export")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    (tmp_path / "weights.pth").write_text("x")
    out = tmp_path / "out"
    params = {"IN_DATA": good, "OUT_MODEL": str(out / "best.dlpk"), "TOTAL_TIME_LIMIT": 0.1}
    params.update({
        "time_limit_zero": {"TOTAL_TIME_LIMIT": 0},
        "time_limit_negative": {"TOTAL_TIME_LIMIT": -1.5},
        "out_model_zip": {"OUT_MODEL": str(out / "best.zip")},
        "out_model_emd": {"OUT_MODEL": str(out / "best.emd")},
        "in_data_missing": {"IN_DATA": str(tmp_path / "nope")},
        "in_data_not_an_export": {"IN_DATA": str(tmp_path / "other")},
        "pretrained_missing": {"PRETRAINED_MODEL": str(tmp_path / "nope.dlpk")},
        "pretrained_not_a_model": {"PRETRAINED_MODEL": str(tmp_path / "weights.pth")},
    }[case])
    with pytest.raises(QgsProcessingException) as raised:
        autodl(params)
    assert type(raised.value) is QgsProcessingException  # a subclass would show a traceback in 3.22
    message = str(raised.value)
    assert f"({parameter}):" in message, message
    assert says in message, message
    assert "Traceback" not in message
    assert not out.exists()
    assert sorted(os.listdir(good)) == ["esri_model_definition.emd", "map.txt"]


def test_not_an_export_says_what_is_accepted(autodl_alg, tmp_path):
    (tmp_path / "chips").mkdir()
    with pytest.raises(QgsProcessingException) as raised:
        autodl({"IN_DATA": str(tmp_path / "chips"), "OUT_MODEL": str(tmp_path / "best.dlpk")})
    message = str(raised.value)
    assert "Export Training Data For Deep Learning" in message
    for fmt in ("Classified_Tiles", "PASCAL_VOC_rectangles", "KITTI_rectangles"):
        assert fmt in message


# ---- with a fake worker ---------------------------------------------------------------------------

def test_parameters_reach_the_worker(autodl_alg, tmp_path, monkeypatch):
    """Networks as arcgis.learn class names, hours, mode, flags and paths as the engine reads them."""
    monkeypatch.setenv("DLT_PYTHON", fake_python(tmp_path))
    export = fake_export(tmp_path / "export")
    emd = tmp_path / "earlier" / "earlier.emd"
    emd.parent.mkdir()
    emd.write_text("{}")
    out_model = tmp_path / "models" / "best.dlpk"
    feedback = Recorder()
    result = autodl({
        "IN_DATA": export, "OUT_MODEL": str(out_model), "PRETRAINED_MODEL": str(emd), "TOTAL_TIME_LIMIT": 0.25,
        "AUTODL_MODE": keyword_index(autodl_alg, "AUTODL_MODE", "ADVANCED"),
        "NETWORKS": [network_index(autodl_alg, "PSPNetClassifier"), network_index(autodl_alg, "UnetClassifier"),
                     network_index(autodl_alg, "DeepLab")],
        "SAVE_EVALUATED_MODELS": True, "DEVICE": "cuda:1",
    }, feedback=feedback)

    echoed = received(out_model)
    config = echoed["config"]
    assert {k: config[k] for k in ("in_data", "out_model", "pretrained_model", "total_time_limit", "autodl_mode",
                                   "networks", "save_evaluated_models", "device")} == {
        "in_data": export, "out_model": str(out_model), "pretrained_model": str(emd), "total_time_limit": 0.25,
        "autodl_mode": "ADVANCED", "networks": ["PSPNetClassifier", "UnetClassifier", "DeepLab"],
        "save_evaluated_models": True, "device": "cuda:1",
    }
    from dl_engine.autodl.config import AutoDLConfig

    assert AutoDLConfig.from_json(json.dumps(config)).networks == config["networks"]  # the engine reads it back
    assert echoed["argv"][:4] == ["-m", "dl_engine", "autodl", "--config"]
    assert not os.path.exists(echoed["argv"][4])  # the temporary config file is removed
    assert os.path.samefile(echoed["pythonpath"].split(os.pathsep)[0], str(REPO))  # the plugin folder first

    assert result["OUTPUT_MODEL_FILE"] == str(out_model) and os.path.isfile(result["OUTPUT_MODEL_FILE"])
    assert result["LEADERBOARD"] == str(tmp_path / "models" / "best_leaderboard.csv")
    assert os.path.isfile(result["LEADERBOARD"])
    assert any(line.startswith("Best model:") and "UnetClassifier" in line for line in feedback.lines), feedback.lines
    assert any(line.startswith("rank 2, network PSPNetClassifier") for line in feedback.lines), feedback.lines
    assert any(line.startswith("Evaluated models:") for line in feedback.lines)
    assert 25.0 in feedback.progress and feedback.progress[-1] == pytest.approx(100.0)


def test_defaults_and_the_dlpk_extension(autodl_alg, tmp_path, monkeypatch):
    """Nothing chosen: every network that fits, BASIC, two hours; '.dlpk' added when left out."""
    monkeypatch.setenv("DLT_PYTHON", fake_python(tmp_path))
    export = fake_export(tmp_path / "export")
    result = autodl({"IN_DATA": export, "OUT_MODEL": str(tmp_path / "out" / "best")})
    out_model = str(tmp_path / "out" / "best.dlpk")
    assert result["OUTPUT_MODEL_FILE"] == out_model and os.path.isfile(out_model)
    config = received(out_model)["config"]
    assert (config["networks"], config["autodl_mode"], config["total_time_limit"], config["pretrained_model"],
            config["save_evaluated_models"], config["device"]) == ([], "BASIC", 2.0, None, False, "auto")

    upper = autodl({"IN_DATA": export, "OUT_MODEL": str(tmp_path / "out2" / "Best.DLPK"), "NETWORKS": []})
    assert upper["OUTPUT_MODEL_FILE"] == str(tmp_path / "out2" / "Best.DLPK")
    assert received(upper["OUTPUT_MODEL_FILE"])["config"]["networks"] == []

    as_text = autodl({"IN_DATA": export, "OUT_MODEL": str(tmp_path / "out3" / "best.dlpk"), "NETWORKS": "6,5,6"})
    assert received(as_text["OUTPUT_MODEL_FILE"])["config"]["networks"] == ["PSPNetClassifier", "UnetClassifier"]


def test_network_out_of_range_is_named(autodl_alg, tmp_path):
    with pytest.raises(QgsProcessingException) as raised:
        autodl({"IN_DATA": fake_export(tmp_path / "export"), "OUT_MODEL": str(tmp_path / "out" / "best.dlpk"),
                "NETWORKS": [5, 99]})
    assert type(raised.value) is QgsProcessingException
    assert "(NETWORKS): option 99 does not exist; use 0 = SingleShotDetector" in str(raised.value)
    assert not (tmp_path / "out").exists()


def test_temporary_output_is_a_dlpk(autodl_alg, tmp_path, monkeypatch):
    monkeypatch.setenv("DLT_PYTHON", fake_python(tmp_path))
    result = autodl({"IN_DATA": fake_export(tmp_path / "export"), "OUT_MODEL": "TEMPORARY_OUTPUT"})
    assert result["OUTPUT_MODEL_FILE"].endswith(".dlpk") and os.path.isfile(result["OUTPUT_MODEL_FILE"])
    assert result["LEADERBOARD"].endswith("_leaderboard.csv")


def test_worker_error_event_becomes_a_named_exception(autodl_alg, tmp_path, monkeypatch):
    monkeypatch.setenv("DLT_PYTHON", fake_python(tmp_path, "error"))
    with pytest.raises(QgsProcessingException) as raised:
        autodl({"IN_DATA": fake_export(tmp_path / "export"), "OUT_MODEL": str(tmp_path / "out" / "best.dlpk"),
                "NETWORKS": [network_index(autodl_alg, "SingleShotDetector")]})
    assert type(raised.value) is QgsProcessingException
    assert "(NETWORKS): SingleShotDetector does not train on Classified_Tiles" in str(raised.value)


@pytest.mark.heavy  # a few seconds (make test runs it)
def test_cancel_waits_for_the_best_model_so_far(autodl_alg, tmp_path, monkeypatch):
    """Cancel: the worker finishes its trial (longer than training's 1.5 s stop timeout), publishes the best
    model so far, and the message says where it is."""
    monkeypatch.setenv("DLT_PYTHON", fake_python(tmp_path, "slow"))
    out_model = tmp_path / "out" / "best.dlpk"
    feedback = Recorder(cancel_on_progress=True)
    with pytest.raises(QgsProcessingException) as raised:
        autodl({"IN_DATA": fake_export(tmp_path / "export"), "OUT_MODEL": str(out_model)}, feedback=feedback)
    assert type(raised.value) is QgsProcessingException
    message = str(raised.value)
    assert message.startswith("AutoDL canceled") and str(out_model) in message, message
    assert os.path.isfile(out_model)
    waited = time.monotonic() - feedback.canceled_at
    assert 2.5 < waited < 30, waited


# ---- headless -------------------------------------------------------------------------------------

@pytest.mark.heavy  # a qgis_process run of several seconds: make test only
@pytest.mark.skipif(not os.path.exists(QGIS_PROCESS), reason="qgis_process.bin not installed")
def test_qgis_process(qgis_process_env, tmp_path):
    described = qgis_process(qgis_process_env, "help", AUTODL_ALG)
    assert described.returncode == 0, described.stderr
    for name in INTERFACE_PARAMETERS + ["OUTPUT_MODEL_FILE", "LEADERBOARD", "UnetClassifier", "ADVANCED"]:
        assert name in described.stdout, name

    env = dict(qgis_process_env, DLT_PYTHON=fake_python(tmp_path))
    out_model = tmp_path / "out" / "best.dlpk"
    completed = qgis_process(env, "--json", "run", AUTODL_ALG, "--", f"IN_DATA={fake_export(tmp_path / 'export')}",
                             f"OUT_MODEL={out_model}", "TOTAL_TIME_LIMIT=0.05", "AUTODL_MODE=1", "NETWORKS=5,6")
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    results = json.loads(completed.stdout[completed.stdout.index("{"):])["results"]
    assert results["OUTPUT_MODEL_FILE"] == str(out_model)
    assert results["LEADERBOARD"] == str(tmp_path / "out" / "best_leaderboard.csv")
    config = received(out_model)["config"]
    assert (config["networks"], config["autodl_mode"], config["total_time_limit"]) == (
        ["UnetClassifier", "PSPNetClassifier"], "ADVANCED", 0.05)

    bad = qgis_process(qgis_process_env, "run", AUTODL_ALG, "--", f"IN_DATA={tmp_path / 'export'}",
                       f"OUT_MODEL={tmp_path / 'bad' / 'best.dlpk'}", "TOTAL_TIME_LIMIT=0")
    assert bad.returncode != 0
    assert "TOTAL_TIME_LIMIT" in bad.stdout + bad.stderr and "Traceback" not in bad.stdout + bad.stderr
    assert not (tmp_path / "bad").exists()


# ---- a real AutoDL run (the engine) ---------------------------------------------------------------

@pytest.mark.trains
@pytest.mark.slow
def test_autodl_two_networks_within_the_budget(autodl_alg, data_dir, tmp_path):
    """Classified_Tiles of the elevation sample, UnetClassifier + PSPNetClassifier on the CPU within
    0.012 h (≈43 s: enough for two trials of about 20 s even when the machine is busy): the best
    model opens as a package, both networks are ranked, the budget holds."""
    from dl_engine.package.reader import open_package

    export = export_buildings(data_dir, tmp_path / "chips")
    out_model = tmp_path / "model" / "best.dlpk"
    hours = 0.012
    feedback = Recorder()
    started = time.monotonic()
    result = autodl({
        "IN_DATA": export, "OUT_MODEL": str(out_model), "TOTAL_TIME_LIMIT": hours,
        "NETWORKS": [network_index(autodl_alg, "UnetClassifier"), network_index(autodl_alg, "PSPNetClassifier")],
        "DEVICE": "cpu",
    }, feedback=feedback)
    took = time.monotonic() - started
    assert took < hours * 3600 + 20, took

    assert result["OUTPUT_MODEL_FILE"] == str(out_model) and os.path.isfile(out_model)
    assert result["LEADERBOARD"] == str(tmp_path / "model" / "best_leaderboard.csv")
    with open(result["LEADERBOARD"], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 2, "\n".join(map(str, rows + feedback.lines))
    assert [row["rank"] for row in rows[:2]] == ["1", "2"], rows
    assert {row["network"] for row in rows} == {"UnetClassifier", "PSPNetClassifier"}, rows
    with open_package(str(out_model)) as package:  # checked, extracted, the emd read
        assert package.model_name == rows[0]["network"]
        assert package.load_state_dict()
    assert any(line.startswith("Best model: rank 1") for line in feedback.lines), feedback.lines

