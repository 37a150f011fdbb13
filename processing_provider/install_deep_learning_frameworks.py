"""deeplearningtools:installdeeplearningframeworks — Install Deep Learning Frameworks (group Setup).

Thin: reads DEVICE, PACKAGE_INDEX and REINSTALL, adds QGIS's proxy settings, and calls
``dl_engine.environment.manager.install`` (standard library only: it runs pip in the new environment and a
smoke test there; QGIS's process never imports torch). Its progress, log lines and cancel check go to the
feedback; its bad input, failures and cancel become a QgsProcessingException with a message.
"""

import re
import time
from typing import Optional
from urllib.parse import quote

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterString,
    QgsSettings,
)

from dl_engine.errors import Canceled  # standard library only

from .base import DeepLearningAlgorithm, KeywordEnum, keyword_help, run_guarded
from .engine_process import MANAGED_SOURCE, OWN_SOURCE, resolve_worker_python

ALGORITHM_ID = "installdeeplearningframeworks"
WHAT = "Install Deep Learning Frameworks"

DEVICE = KeywordEnum(
    "DEVICE",
    "Device the frameworks are built for",
    [
        ("AUTO", "the NVIDIA GPU when its driver is found (Apple Silicon: MPS), else the CPU"),
        ("CPU", "the CPU build of PyTorch (smaller download)"),
        ("CUDA", "the CUDA build of PyTorch for an NVIDIA GPU"),
    ],
    "AUTO",
)

HELP = f"""
<p>Installs the deep-learning frameworks the tools run with — PyTorch, torchvision, timm, rasterio, shapely
and the rest of the plugin's pinned list — into a Python environment that the plugin manages, apart from QGIS's
own Python, which needs nothing beyond QGIS. Run it once after installing the plugin, and again to repair the
environment or after a plugin upgrade changed the pinned list (the tools say so). Nothing else needs setting up:
afterwards every tool of the provider runs its work in that environment.</p>
<p>The environment is created from QGIS's own Python in a per-user data folder that survives plugin upgrades
(<code>~/.local/share/deep_learning_tools/engine-env</code> on Linux,
<code>~/Library/Application Support/deep_learning_tools/engine-env</code> on macOS,
<code>%LOCALAPPDATA%\\deep_learning_tools\\engine-env</code> on Windows); the environment variable
<code>DLT_ENV_DIR</code> puts it elsewhere. pip downloads about 300 MB for the CPU build (about 1 GB on disk) and
about 3–4 GB for a CUDA build (most of it NVIDIA's CUDA libraries); keep {{disk}} free. On a fast connection
it takes a few minutes. pip's own configuration (mirrors, certificates) and QGIS's proxy settings (Settings ▸
Options ▸ Network) are used. A log is written in the environment folder; an interrupted or failed installation
is finished by running the tool again.</p>
<p>{keyword_help(DEVICE)}. AUTO reads the NVIDIA driver (<code>nvidia-smi</code>) and takes the CUDA build
that driver runs, or the CPU build when there is no driver or it is too old; on Apple Silicon PyTorch uses the
GPU through MPS. A smoke test in the new environment (a small convolution forward and backward on the device)
confirms the choice before the tool finishes.</p>
<p><b>PACKAGE_INDEX</b> (optional): for disconnected sites, a package index URL (a company mirror) or a folder
of wheel files (<code>.whl</code>) downloaded on a connected machine with the same system and Python version
(<code>pip download</code>); pip then installs from there only.
<b>REINSTALL</b>: remove the environment and build it again from scratch (otherwise only what is missing or
broken is installed).</p>
<p>Outputs: <b>PYTHON</b>, the environment's Python interpreter, and <b>DEVICE</b>, what the smoke test ran on
(<code>cuda</code>, <code>mps</code> or <code>cpu</code>).
<i>Check Deep Learning Environment</i> reports the versions, the GPU and its memory.</p>
"""

# The manager's progress texts for pip's per-package steps (dl_engine.environment.progress).
_PIP_STEP = re.compile(r"(Collecting|Downloading|Using cached) ")
_DIGITS = re.compile(r"\d+(?:[.,]\d+)?")
PIP_STEP_INTERVAL_S = 2.0

# What stays in the install log only: pip's per-package chatter, the commands the manager runs ("$ …") and
# their answers (a version, a folder), the manager's own progress lines ("[ 40.0 %] …", shown as the progress text), the smoke
# test's raw JSON and the failure line (the error message says it).
_LOG_ONLY = re.compile(
    r"^\s|^\$ |^\[\s*[\d.]+ ?%\]|^pip \d|^\d+(\.\d+)*$|^smoke: \{|^FAILED: |^(/|[A-Za-z]:\\)\S*$|"
    r"^(Requirement already satisfied|Using cached|Downloading|Collecting|Obtaining|Looking in|"
    r"Processing |Saved |Stored in|Building wheel|Created wheel|Preparing metadata|Getting requirements|"
    r"Installing build dependencies|Installing collected packages|Attempting uninstall|Found existing installation|"
    r"Uninstalling|Successfully uninstalled)|[━█▏▎▍▌▋▊▉]"
)
# pip's warnings of one kind (the same words, other names) are shown once; the log has them all.
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def qgis_proxy(settings=None) -> Optional[str]:
    """QGIS's proxy (Settings ▸ Options ▸ Network, the keys QgsNetworkAccessManager reads) as a URL pip
    takes, ``scheme://[user:password@]host:port``; None when it is off, or the system's own proxy
    (``DefaultProxy``: pip reads the system's environment variables itself)."""
    settings = settings or QgsSettings()
    if not _truthy(settings.value("proxy/proxyEnabled", False)):
        return None
    scheme = {"HttpProxy": "http", "HttpCachingProxy": "http", "Socks5Proxy": "socks5"}.get(
        str(settings.value("proxy/proxyType", "") or ""))
    host = str(settings.value("proxy/proxyHost", "") or "").strip()
    if scheme is None or not host:
        return None
    port = str(settings.value("proxy/proxyPort", "") or "").strip()
    user = str(settings.value("proxy/proxyUser", "") or "")
    password = str(settings.value("proxy/proxyPassword", "") or "")
    credentials = ""
    if user:
        credentials = quote(user, safe="") + (":" + quote(password, safe="") if password else "") + "@"
    return f"{scheme}://{credentials}{host}" + (f":{port}" if port and port != "0" else "")


def _truthy(value) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes")


def hide_password(text: str) -> str:
    """A proxy URL as it may be shown: no password."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", text)


class FeedbackReporter:
    """The manager's callbacks on a Processing feedback: the progress bar; each phase's text once (qgis_process
    prints every progress text: a download's percent moves the bar, not the text, and pip's per-package steps
    show at most every PIP_STEP_INTERVAL_S); pip's notable log lines (its chatter stays in the log file);
    the cancel check."""

    def __init__(self, feedback):
        self.feedback = feedback
        self.phase = None
        self.pip_step_at = float("-inf")
        self.warnings = {}

    def progress(self, percent: float, message: str = "") -> None:
        if self.feedback is None:
            return
        try:
            self.feedback.setProgress(max(0.0, min(100.0, float(percent))))
        except (TypeError, ValueError):
            pass
        phase = _DIGITS.sub("#", message or "")
        if not phase or phase == self.phase:
            return
        if _PIP_STEP.match(message):
            now = time.monotonic()
            if now - self.pip_step_at < PIP_STEP_INTERVAL_S:
                return
            self.pip_step_at = now
        self.phase = phase
        self.feedback.setProgressText(message)

    def log(self, line: str) -> None:
        line = (line or "").rstrip()
        if self.feedback is None or not line.strip() or _LOG_ONLY.search(line):
            return
        if not line.startswith(("ERROR", "WARNING")):
            self.feedback.pushConsoleInfo(line)
            return
        kind = _QUOTED.sub("…", line)
        seen = self.warnings.get(kind, 0)
        self.warnings[kind] = seen + 1
        if seen == 0:
            self.feedback.pushWarning(line)
        elif seen == 1:
            self.feedback.pushWarning("(More warnings like this one are in the install log.)")

    def is_canceled(self) -> bool:
        return self.feedback is not None and self.feedback.isCanceled()


def _manager():
    from dl_engine.environment import manager  # standard library only

    return manager


def install(options, feedback):
    """``manager.install`` with the feedback; its failure, bad input and cancel as QgsProcessingException."""
    manager = _manager()
    reporter = FeedbackReporter(feedback)
    folder = options.folder
    try:
        return manager.install(options, progress=reporter.progress, log=reporter.log,
                               is_canceled=reporter.is_canceled)
    except Canceled as canceled:
        where = folder or _env_dir()
        raise QgsProcessingException(
            f"{WHAT} canceled: {str(canceled).rstrip('.')}. The environment in {where} is not finished and the "
            f"tools cannot use it yet; run {WHAT} again to complete it (what is already there is kept)."
        ) from None
    except manager.EnvironmentInstallError as failed:  # its message names the log
        raise QgsProcessingException(f"{WHAT} failed: {failed}") from None


def _env_dir() -> str:
    from dl_engine.environment import location

    return location.env_dir()


class InstallDeepLearningFrameworks(DeepLearningAlgorithm):
    ALGORITHM_ID = ALGORITHM_ID
    DISPLAY_NAME = WHAT
    GROUP_ID = "setup"
    HELP = HELP
    TAGS = ("deep learning", "install", "setup", "environment", "pytorch", "torch", "cuda", "gpu", "pip",
            "offline", "disconnected", "wheels", "repair")

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API name)
        self.addParameter(DEVICE.parameter())
        self.addParameter(QgsProcessingParameterString(
            "PACKAGE_INDEX", "Package index URL or folder of wheels (disconnected sites)", optional=True))
        self.addParameter(QgsProcessingParameterBoolean(
            "REINSTALL", "Remove the environment and install it from scratch", defaultValue=False))
        self.addOutput(QgsProcessingOutputString("PYTHON", "Python of the deep-learning environment"))
        self.addOutput(QgsProcessingOutputString("DEVICE", "Device the smoke test ran on"))

    def build_options(self, parameters, context):
        """The manager's InstallOptions; its own checks name DEVICE and PACKAGE_INDEX."""
        manager = _manager()
        index = (self.parameterAsString(parameters, "PACKAGE_INDEX", context) or "").strip()
        return manager.InstallOptions(
            device=DEVICE.keyword(self, parameters, context).lower(),
            package_index=index or None,
            reinstall=self.parameterAsBoolean(parameters, "REINSTALL", context),
            proxy=qgis_proxy(),
        )

    def shortHelpString(self):  # noqa: N802 (QGIS API name)
        return super().shortHelpString().replace("{disk}", f"{_manager().DISK_NEEDED_BYTES / 1024 ** 3:.0f} GB")

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API name)
        options = self.build_options(parameters, context)
        if feedback is not None and options.proxy:
            feedback.pushInfo(f"Through QGIS's proxy {hide_password(options.proxy)}")
        state = run_guarded(lambda: install(options, feedback), feedback, WHAT)
        if not state.ready:
            problems = "; ".join(state.problems) or "the smoke test did not pass"
            raise QgsProcessingException(
                f"{WHAT} finished, but the environment is not usable: {problems}. The log is {state.log_path}")
        if feedback is not None:
            feedback.pushInfo(state.summary())
            self.note_override(state.python, feedback)
        return {"PYTHON": state.python, "DEVICE": state.device}

    @staticmethod
    def note_override(python: str, feedback) -> None:
        """When DLT_PYTHON or the plugin setting chooses another Python, the tools keep using that one: say so."""
        try:
            chosen = resolve_worker_python(WHAT)
        except QgsProcessingException:
            return
        if chosen.source not in (MANAGED_SOURCE, OWN_SOURCE) and chosen.python != python:
            feedback.pushWarning(f"The tools still run with {chosen.python} ({chosen.source} chooses it); "
                                 f"clear it to use this environment.")
