"""deeplearningtools:checkdeeplearningenvironment — Check Deep Learning Environment (group Setup).

Thin: ``dl_engine.environment.manager.inspect`` (with its smoke test in the environment) says whether the
plugin-managed environment is ready; ``manager.report_text`` writes the REPORT file (versions, device,
CUDA, GPU memory, free disk, problems) for bug reports, with the Python the tools run with added.
"""

import os
from typing import Tuple

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputBoolean,
    QgsProcessingOutputString,
    QgsProcessingParameterFileDestination,
    QgsProcessingUtils,
)

from .base import DeepLearningAlgorithm, run_guarded
from .engine_process import INSTALL_ALGORITHM, resolve_worker_python

ALGORITHM_ID = "checkdeeplearningenvironment"
WHAT = "Check Deep Learning Environment"

HELP = """
<p>Says whether the deep-learning environment that the plugin manages is installed and works, and writes a
report to attach to a bug report. It needs no parameters and changes nothing.</p>
<p>The check runs a smoke test inside the environment: PyTorch and torchvision are imported together and a
small convolution runs forward and backward on the device. It takes a few seconds (longer on the first run
after an installation, while the libraries are loaded from disk).</p>
<p>Outputs: <b>READY</b> (true when the tools can run their work in the environment), <b>PYTHON</b> (the
environment's interpreter), <b>DEVICE</b> (<code>cuda</code>, <code>mps</code> or <code>cpu</code>) and
<b>REPORT</b> (optional text file, a temporary one by default): the versions of Python, PyTorch, torchvision,
timm, rasterio and the rest, the device, the CUDA version, the GPU and its memory, the free disk space, what is
missing or broken, and which Python the tools actually run with (the environment variable
<code>DLT_PYTHON</code> or the plugin setting <code>deep_learning_tools/python</code> choose another one).</p>
<p>When READY is false, run <i>Install Deep Learning Frameworks</i> (it repairs what is there); for a
disconnected site give it a folder of wheels as <b>PACKAGE_INDEX</b>. The environment lives in a per-user data
folder, or where the environment variable <code>DLT_ENV_DIR</code> says.</p>
"""


def _manager():
    from dl_engine.environment import manager  # standard library only

    return manager


def engine_python_line() -> Tuple[str, bool]:
    """Which Python the tools run the engine with and why, in one line, or what is missing; and whether
    there is one."""
    try:
        chosen = resolve_worker_python("Each of the plugin's tools")
    except QgsProcessingException as missing:
        return str(missing), False
    return f"The tools run the engine with {chosen.python} ({chosen.source}).", True


def write_text(path: str, text: str) -> None:
    """``text`` into ``path`` through a temporary name, so no half-written report is left behind."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    partial = path + ".partial"
    try:
        with open(partial, "w", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")
        os.replace(partial, path)
    except OSError as error:
        try:
            os.remove(partial)
        except OSError:
            pass
        raise QgsProcessingException(f"REPORT: cannot write {path}: {error.strerror or error}") from None


class CheckDeepLearningEnvironment(DeepLearningAlgorithm):
    ALGORITHM_ID = ALGORITHM_ID
    DISPLAY_NAME = WHAT
    GROUP_ID = "setup"
    HELP = HELP
    TAGS = ("deep learning", "check", "environment", "setup", "pytorch", "torch", "cuda", "gpu", "versions",
            "report", "diagnostics")

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.addParameter(QgsProcessingParameterFileDestination(
            "REPORT", "Report", fileFilter="Text files (*.txt)", optional=True, createByDefault=True))
        self.addOutput(QgsProcessingOutputBoolean("READY", "Ready"))
        self.addOutput(QgsProcessingOutputString("PYTHON", "Python of the deep-learning environment"))
        self.addOutput(QgsProcessingOutputString("DEVICE", "Device"))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        path = self.parameterAsFileOutput(parameters, "REPORT", context) or \
            QgsProcessingUtils.generateTempFilename("dlt-environment.txt")
        manager = _manager()
        if feedback is not None:
            feedback.setProgressText("Running the smoke test in the deep-learning environment")
        state = run_guarded(lambda: manager.inspect(), feedback, WHAT)
        engine_line, engine_found = engine_python_line()
        write_text(path, manager.report_text(state).rstrip("\n") + "\n\n" + engine_line + "\n")
        if feedback is not None:
            feedback.setProgress(100.0)
            feedback.pushInfo(state.summary())
            for problem in state.problems:
                feedback.pushWarning(problem)
            feedback.pushInfo(engine_line)
            if not state.ready and engine_found:
                feedback.pushInfo(f"To install or repair the environment, run Install Deep Learning Frameworks "
                                  f"(`qgis_process run {INSTALL_ALGORITHM}`).")
            feedback.pushInfo(f"REPORT: {path}")
        return {"READY": bool(state.ready), "PYTHON": state.python or "", "DEVICE": state.device or "",
                "REPORT": path}
