"""deeplearningtools:trainusingautodl — Train Using AutoDL.

Thin, like Train Deep Learning Model: turns the parameters into a
``dl_engine.autodl.config.AutoDLConfig`` (whose defaults are the parameters' defaults),
checks it here with ``AutoDLConfig.check`` (the rules on each value) and that the export
folder exists, writes it as JSON and runs
``python -m dl_engine autodl`` in a worker process through ``worker.run_worker`` (progress,
log, cancel). Which networks fit the export's format, the pretrained model and everything
else are checked by the engine, whose errors arrive naming the parameter.
"""

import csv
import os
import tempfile

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from dl_engine.autodl.config import MODEL_EXTENSION, AutoDLConfig  # standard library only
from dl_engine.models.registry import specs as model_specs  # standard library only

from .base import (DeepLearningAlgorithm, KeywordEnum, advanced, check_config, config_default, keyword_label,
                   run_guarded)
from .train_deep_learning_model import check_export_folder as check_export, check_pretrained_model
from .engine_process import run_worker

ALGORITHM_ID = "trainusingautodl"
WHAT = "AutoDL"  # how the runner's messages name the job ("AutoDL canceled: …")
# Canceling ends the running trial as its time limit would and publishes the best model so
# far: seconds, not the two of a training run.
STOP_TIMEOUT_S = 60.0
FORMATS = "Classified_Tiles, PASCAL_VOC_rectangles or KITTI_rectangles"

AUTODL_MODE = KeywordEnum(
    "AUTODL_MODE",
    "AutoDL mode",
    [
        ("BASIC", "every selected network with its default backbone"),
        ("ADVANCED", "first half: evaluate the networks; second half: tune the best two"),
    ],
    config_default(AutoDLConfig, "autodl_mode"),
)

# (arcgis.learn class name, explanation) of the engine's model types AutoDL trains, in
# ModelSpec.autodl_order (arcpy's order). Which of them fit the export's format is decided by
# the engine (its error names NETWORKS).
NETWORK_OPTIONS = tuple((spec.model_name, spec.description) for spec in sorted(
    (spec for spec in model_specs() if spec.autodl_order is not None), key=lambda spec: spec.autodl_order))
NETWORKS = [name for name, _ in NETWORK_OPTIONS]


def _list(keywords):
    return ", ".join(f"{i} = <code>{k}</code>" for i, k in enumerate(keywords))


HELP = f"""
<p>Trains several deep learning networks on the chips of <i>Export Training Data For Deep
Learning</i> within a time budget, ranks them on the validation data and keeps the best one as a
model package, like ArcGIS Pro's <i>Train Using AutoDL</i>. The package is what <i>Train Deep
Learning Model</i> writes and works with the inference tools.</p>
<p>Training runs in a separate Python process (the one that has PyTorch; environment variable
<code>DLT_PYTHON</code> chooses another), so a crash or GPU error cannot take QGIS down.
<i>Cancel</i> ends the running network's training as its time limit would (its best epoch is kept),
then publishes the best model so far at OUT_MODEL (this takes several seconds); the message says
where it is.</p>
<p><b>IN_DATA</b>: an export folder ({FORMATS}; it holds <code>esri_model_definition.emd</code> and
<code>map.txt</code>). <b>OUT_MODEL</b>: the best model's <code>.dlpk</code> (the extension is added
when left out). <b>PRETRAINED_MODEL</b>: an optional <code>.emd</code> or <code>.dlpk</code>; its network
starts from it.</p>
<p><b>Pretrained weights</b>: each network starts from its backbone's ImageNet weights, downloaded on
first use and cached for offline use: in the <i>Pretrained weights folder</i> (Settings ▸ Options ▸
Processing ▸ Providers ▸ Deep learning tools, or the environment variable <code>DLT_WEIGHTS_DIR</code>), else
in the hubs' own caches (<code>~/.cache/huggingface/hub</code>, <code>~/.cache/torch/hub/checkpoints</code>).
Offline with no cached copy, a network starts from random weights with a warning (an unreachable hub is
not asked again in the run); on machines without internet, bring the weights with <i>Import Pretrained
Weights</i>, or train a model with <b>BACKBONE_MODEL</b> <code>EFFICIENTNET_LITE0</code> (ImageNet weights
installed with the plugin, they work offline) in <i>Train Deep Learning Model</i> and give it as
PRETRAINED_MODEL.</p>
<p><b>TOTAL_TIME_LIMIT</b>: the budget in hours, fractions allowed (0.05 = 3 minutes, 0.5 = 30
minutes); the run ends within it. Each network gets a share of it; a longer budget trains longer
and, in ADVANCED mode, tries more backbones.</p>
<p><b>AUTODL_MODE</b>: {_list(AUTODL_MODE.keywords)}. <code>BASIC</code> trains every selected network
with its default backbone in the first half of the budget and the best of them on from its weights
in the second, and keeps the best. <code>ADVANCED</code> uses the first half of the budget
to evaluate the networks and the second half to tune the best two (backbones and
hyper-parameters).</p>
<p><b>NETWORKS</b> (several may be chosen; none = every network that fits the data): {_list(NETWORKS)}.
The detectors train on PASCAL_VOC_rectangles and KITTI_rectangles, DeepLab, UnetClassifier and
PSPNetClassifier on Classified_Tiles.</p>
<p><b>SAVE_EVALUATED_MODELS</b>: also keep the package of every evaluated model, in
<code>&lt;name&gt;_evaluated/AutoDL_&lt;network&gt;_&lt;backbone&gt;/</code> beside OUT_MODEL. Advanced:
<b>DEVICE</b> <code>auto</code>, <code>cpu</code>, <code>cuda</code> or <code>cuda:N</code>.</p>
<p>Outputs: <b>OUTPUT_MODEL_FILE</b> (the best model's <code>.dlpk</code>) and <b>LEADERBOARD</b>
(<code>&lt;name&gt;_leaderboard.csv</code> beside it: network, backbone, hyper-parameters, metric and
time of every model evaluated, best first).</p>
"""


def check_export_folder(path: str) -> str:
    """IN_DATA as an absolute path, or a QgsProcessingException naming IN_DATA."""
    return check_export(path, "IN_DATA", f"give the OUT_FOLDER of Export Training Data For Deep Learning ({FORMATS})")


def model_path(path: str) -> str:
    """OUT_MODEL as an absolute ``.dlpk`` path (the extension added when left out; another
    extension is AutoDLConfig.check's to refuse); "" when empty."""
    if not (path or "").strip():
        return ""
    path = os.path.abspath(os.path.expanduser(path.strip()))
    if os.path.isdir(path):  # before adding the extension: not <folder>.dlpk beside it
        raise QgsProcessingException(f"OUT_MODEL: {path!r} is a folder; give a file name ending in {MODEL_EXTENSION} "
                                     f"(e.g. {os.path.join(path, 'best' + MODEL_EXTENSION)!r})")
    extension = os.path.splitext(path)[1]
    return path + MODEL_EXTENSION if not extension else path


# Leaderboard columns shown in the log, when the CSV has them (else every column).
SHOWN_COLUMNS = ("rank", "network", "backbone", "learning_rate", "batch_size", "metric", "value", "valid_loss",
                 "epochs", "seconds", "status")


def _describe(row) -> str:
    """A leaderboard row (or the best trial) as one short line."""
    keys = [k for k in SHOWN_COLUMNS if k in row] or [k for k in row if k]
    return ", ".join(f"{k} {row[k]}" for k in keys
                     if row.get(k) not in (None, "") and not isinstance(row.get(k), (dict, list)))


def _leaderboard_lines(path: str, limit: int = 10):
    """The first rows of the leaderboard CSV as readable lines (none when it cannot be read)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []
    lines = [_describe(row) for row in rows[:limit]]
    if len(rows) > limit:
        lines.append(f"… {len(rows) - limit} more in the CSV")
    return lines


def run_autodl(config, feedback, python=None):
    """Run ``python -m dl_engine autodl`` for an ``AutoDLConfig``; the algorithm's outputs."""
    handle, config_path = tempfile.mkstemp(prefix="dlt-autodl-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(config.to_json())
        result = run_worker(
            ["-m", "dl_engine", "autodl", "--config", config_path], feedback, python=python, what=WHAT,
            stop_timeout=STOP_TIMEOUT_S, temporary=[config_path],  # removed by the worker too, when QGIS dies first
        )
    finally:
        try:
            os.remove(config_path)
        except OSError:
            pass
    model_file = result.get("out_model_file") or config.out_model
    leaderboard = result.get("leaderboard") or ""
    if feedback is not None:
        best = result.get("best") or {}
        if isinstance(best, dict) and best:
            feedback.pushInfo(f"Best model: {_describe(best)}")
        feedback.pushInfo(f"Report: model_metrics.html inside {model_file} (its settings, metrics and the "
                          f"AutoDL leaderboard)")
        if leaderboard:
            feedback.pushInfo(f"Leaderboard ({leaderboard}):")
            for line in _leaderboard_lines(leaderboard):
                feedback.pushInfo(line)
        if result.get("evaluated_folder"):
            feedback.pushInfo(f"Evaluated models: {result['evaluated_folder']}")
    return {"OUTPUT_MODEL_FILE": model_file, "OUT_MODEL": model_file, "LEADERBOARD": leaderboard}


def _network_values(raw):
    """The NETWORKS values given as a list, a ``,``-separated string or one number (nothing chosen:
    an empty list; QGIS 3.22's parameterAsEnums would read an empty default as option 0), or None
    for anything else."""
    if raw is None:
        return []
    if isinstance(raw, str):
        return [v for v in raw.split(",") if v.strip()]
    if isinstance(raw, (list, tuple)):
        return [v for v in raw if v is not None and str(v).strip()]
    if isinstance(raw, int) and not isinstance(raw, bool):
        return [raw]
    return None


class TrainUsingAutoDL(DeepLearningAlgorithm):
    ALGORITHM_ID = ALGORITHM_ID
    DISPLAY_NAME = "Train Using AutoDL"
    GROUP_ID = "training"
    HELP = HELP
    TAGS = (
        "deep learning", "train", "training", "autodl", "automl", "automatic", "model", "dlpk", "leaderboard",
        "pytorch", "UnetClassifier", "PSPNetClassifier", "DeepLab", "SingleShotDetector", "RetinaNet",
        "FasterRCNN", "YOLOv3", "arcgis", "arcpy",
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.addParameter(
            QgsProcessingParameterFile(
                "IN_DATA", f"Input training data (export folder: {FORMATS})",
                behavior=QgsProcessingParameterFile.Folder,
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUT_MODEL", "Output model (best model, .dlpk)", fileFilter="Deep learning package (*.dlpk)"
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                "PRETRAINED_MODEL",
                "Pretrained model (.emd or .dlpk)",
                behavior=QgsProcessingParameterFile.File,
                fileFilter="Model definition (*.emd *.dlpk *.EMD *.DLPK)",
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "TOTAL_TIME_LIMIT", "Total time limit (hours; 0.05 = 3 minutes)",
                QgsProcessingParameterNumber.Double, config_default(AutoDLConfig, "total_time_limit"),
            )
        )
        self.addParameter(AUTODL_MODE.parameter())
        self.addParameter(
            QgsProcessingParameterEnum(
                "NETWORKS", "Networks (none selected: every network that fits the data)",
                options=[keyword_label(name, explanation) for name, explanation in NETWORK_OPTIONS],
                allowMultiple=True, defaultValue=None, optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterBoolean("SAVE_EVALUATED_MODELS", "Save the evaluated models",
                                          config_default(AutoDLConfig, "save_evaluated_models"))
        )
        self.addParameter(
            advanced(QgsProcessingParameterString("DEVICE", "Device (auto, cpu, cuda, cuda:N)",
                                                  config_default(AutoDLConfig, "device")))
        )
        self.addOutput(QgsProcessingOutputFile("OUTPUT_MODEL_FILE", "Best model package (.dlpk)"))
        self.addOutput(QgsProcessingOutputFile("LEADERBOARD", "Leaderboard (CSV)"))

    # ------------------------------------------------------------------
    def checkParameterValues(self, parameters, context):  # noqa: N802 (QGIS API name)
        """QGIS answers a PRETRAINED_MODEL outside the dialog's file filter, or a NETWORKS option that
        does not exist, with a bare "Incorrect parameter value for …"; those two are left to
        build_config, whose messages say what is accepted."""
        skipped = set()
        value = parameters.get("PRETRAINED_MODEL")
        if isinstance(value, str) and value.strip() and \
                os.path.splitext(value.strip())[1].lower() not in (".emd", ".dlpk"):
            skipped.add("PRETRAINED_MODEL")
        if _network_values(parameters.get("NETWORKS")) is not None:
            skipped.add("NETWORKS")
        if skipped:
            parameters = {k: v for k, v in parameters.items() if k not in skipped}
        return super().checkParameterValues(parameters, context)

    def _networks(self, parameters, context):
        """NETWORKS as arcgis.learn class names, in the order chosen (none = every one that fits)."""
        values = _network_values(parameters.get("NETWORKS"))
        if values is None:  # a QgsProperty (Modeler) or another type: QGIS's own reading
            values = self.parameterAsEnums(parameters, "NETWORKS", context)
        choices = ", ".join(f"{i} = {name}" for i, name in enumerate(NETWORKS))
        names = []
        for value in values:
            try:
                index = int(str(value).strip())
            except ValueError:
                raise QgsProcessingException(
                    f"NETWORKS: {value!r} is not an option index; give indices separated by ',': {choices}"
                ) from None
            if not 0 <= index < len(NETWORKS):
                raise QgsProcessingException(f"NETWORKS: option {index} does not exist; use {choices}")
            if NETWORKS[index] not in names:
                names.append(NETWORKS[index])
        return names

    def build_config(self, parameters, context, feedback=None):
        """The ``AutoDLConfig`` for these parameters, checked (``AutoDLConfig.check``; the export
        folder exists); what needs the data is the worker's check."""
        in_data = check_export_folder(self.parameterAsString(parameters, "IN_DATA", context))
        out_model = model_path(self.parameterAsFileOutput(parameters, "OUT_MODEL", context))

        pretrained = check_pretrained_model(self.parameterAsFile(parameters, "PRETRAINED_MODEL", context))

        device = (self.parameterAsString(parameters, "DEVICE", context) or "").strip()
        return check_config(AutoDLConfig(
            in_data=in_data,
            out_model=out_model,
            pretrained_model=pretrained,
            total_time_limit=self.parameterAsDouble(parameters, "TOTAL_TIME_LIMIT", context),
            autodl_mode=AUTODL_MODE.keyword(self, parameters, context),
            networks=self._networks(parameters, context),
            save_evaluated_models=self.parameterAsBool(parameters, "SAVE_EVALUATED_MODELS", context),
            device=device or config_default(AutoDLConfig, "device"),
        ))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        config = self.build_config(parameters, context, feedback)
        if feedback.isCanceled():
            raise QgsProcessingException("AutoDL canceled before it started; nothing was written")
        return run_guarded(lambda: run_autodl(config, feedback), feedback, "AutoDL")
