"""The GPU (from ``nvidia-smi``) and the torch build for it: THE table, in one place.

The pinned torch is 2.13.0 (requirements-engine.txt). Its wheels:

- Linux: PyPI's default wheel is the CUDA 13.0 build (it pulls the nvidia-* runtime
  packages, about 4.8 GB, and also runs on the CPU); the PyTorch index
  (https://download.pytorch.org/whl/<variant>) has cu126, cu128, cu130 and a small cpu build.
- Windows: PyPI's wheel is CPU-only; a CUDA build comes only from the PyTorch index.
- macOS: PyPI's wheel; on Apple silicon it uses the GPU through MPS. (PyTorch publishes no
  macOS Intel wheels for releases after 2.2: there the install fails and says so.)

A CUDA build needs a driver at least as new as its CUDA toolkit's minimum
(``MINIMUM_DRIVERS``) and a GPU its kernels were compiled for (``MINIMUM_COMPUTE``: the CUDA 12.8
and 13 builds leave out Maxwell, Pascal and Volta; nvidia-smi reports the compute capability
with drivers from 510 on, older ones are judged by their driver only). The CUDA 12 builds also run on any CUDA 12 driver (525.60.13 / 527.41
and newer) through CUDA's minor-version compatibility; a driver for CUDA 11 or older gets the
CPU build, as does a machine without ``nvidia-smi``. The PyTorch index is passed to pip as an
*extra* index, so where it is unreachable PyPI's wheel is installed instead (the installer
says so in its log).
"""

from __future__ import annotations

import platform as _platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

from ..errors import InputError

PARAMETER = "DEVICE"
REQUESTS = ("auto", "cpu", "cuda")
TORCH_VERSION = "2.13.0"
PYTORCH_INDEX = "https://download.pytorch.org/whl/{variant}"

# The minimum driver for each CUDA build of torch 2.13, newest first: NVIDIA's CUDA Toolkit
# release notes, Table 3 "CUDA Toolkit and Corresponding Driver Versions" (the GA release of
# each toolkit: 13.0 GA 580.65.06 / 580.88, 12.8 GA 570.26 / 570.65) and Table 2's minimum for
# CUDA 12.x minor-version compatibility (525.60.13 / 527.41), which the cu126 build relies on
# for the older CUDA 12 drivers.
#   variant: (CUDA version, Linux minimum, Windows minimum)
MINIMUM_DRIVERS = {
    "cu130": ("13.0", "580.65.06", "580.88"),
    "cu128": ("12.8", "570.26", "570.65"),
    "cu126": ("12.6", "525.60.13", "527.41"),
}
CUDA_VARIANTS = tuple(MINIMUM_DRIVERS)  # newest first
# The oldest GPU architecture (compute capability) each build has kernels for: PyTorch's CUDA 12.8
# and 13 builds start at Turing (7.5; CUDA 13 cannot compile for older ones), cu126 keeps Maxwell (5.0)
# onwards (PyTorch 2.8's release notes, "CUDA support").
MINIMUM_COMPUTE = {"cu130": "7.5", "cu128": "7.5", "cu126": "5.0"}
LINUX_PYPI_CUDA = "cu130"  # what PyPI's default Linux wheel of the pinned torch is built for


@dataclass
class GpuInfo:
    name: str
    driver_version: str
    memory_mib: Optional[int] = None
    cuda_version: Optional[str] = None  # the newest CUDA the driver supports (nvidia-smi's header)
    compute_capability: Optional[str] = None  # "9.0" for an H100 (the CSV query's compute_cap)


@dataclass
class TorchBuild:
    device: str                 # "cuda" | "cpu" | "mps"
    variant: str                # "cu130", "cu128", "cu126", "cpu" or "default" (PyPI's wheel on macOS)
    index_url: Optional[str]    # None: the user's own pip index (PyPI)
    reason: str                 # a sentence for the log and the dialog
    gpu: Optional[GpuInfo] = None


# ---- nvidia-smi --------------------------------------------------------------------------------

_HEADER = re.compile(r"Driver Version:\s*([0-9][0-9.]*)(?:.*?CUDA Version:\s*([0-9][0-9.]*|N/A))?")
# "|   0  NVIDIA H100 80GB HBM3   On  |   00000000:19:00.0 Off |" then the line below it holds
# "| N/A 29C P0 69W / 700W |  0MiB /  81559MiB |"
_ROW = re.compile(r"^\|\s+(\d+)\s+(.+?)\s+(On|Off|WDDM|TCC|MCDM)\s*\|")
_MEMORY = re.compile(r"(\d+)\s*MiB\s*/\s*(\d+)\s*MiB")
_CSV = re.compile(r"^\s*([^,|]+?)\s*,\s*([0-9]+(?:\.[0-9]+)*)\s*,\s*(\d+)(?:\s*MiB)?\s*"
                  r"(?:,\s*(\d+\.\d+)\s*)?$")
QUERY = "--query-gpu=name,driver_version,memory.total"
QUERY_COMPUTE = QUERY + ",compute_cap"  # drivers from 510 on


def parse_nvidia_smi(text: str) -> List[GpuInfo]:
    """The GPUs in ``nvidia-smi``'s output: its table (driver and CUDA version in the header;
    the names there may be cut short), the CSV of
    ``--query-gpu=name,driver_version,memory.total[,compute_cap] --format=csv,noheader[,nounits]``, or both
    one after the other (the CSV's names win; the header adds the CUDA version)."""
    text = text or ""
    header = _HEADER.search(text)
    driver = header.group(1) if header else None
    cuda = header.group(2) if header and header.group(2) not in (None, "N/A") else None
    from_csv = []
    for line in text.splitlines():
        m = _CSV.match(line)
        if m and not line.lstrip().startswith("name"):
            from_csv.append(GpuInfo(m.group(1), m.group(2), int(m.group(3)), cuda, m.group(4)))
    if from_csv:
        return from_csv
    if not driver:
        return []
    found, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        m = _ROW.match(line)
        if not m:
            continue
        memory = _MEMORY.search(lines[i + 1]) if i + 1 < len(lines) else None
        found.append(GpuInfo(m.group(2).strip(), driver, int(memory.group(2)) if memory else None, cuda))
    return found


Runner = Callable[[Sequence[str]], str]


def _run(argv: Sequence[str]) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=20,
                          creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
    if done.returncode != 0:
        raise OSError(f"{argv[0]} exited with {done.returncode}: {(done.stderr or done.stdout).strip()[:200]}")
    return done.stdout


def nvidia_smi_path() -> Optional[str]:
    found = shutil.which("nvidia-smi")
    if found or sys.platform != "win32":
        return found
    for candidate in (r"C:\Windows\System32\nvidia-smi.exe",
                      r"C:\Program Files\NVIDIA Corporation\NVSMI\nvidia-smi.exe"):
        if shutil.which(candidate):
            return candidate
    return None


def detect_gpus(runner: Optional[Runner] = None) -> List[GpuInfo]:
    """The NVIDIA GPUs ``nvidia-smi`` reports ([] when it is absent or fails): its CSV query
    for full names, memory and compute capability (without it on drivers before 510), its
    table for the CUDA version."""
    runner = runner or _run
    exe = "nvidia-smi" if runner is not _run else nvidia_smi_path()
    if not exe:
        return []

    def ask(argv) -> str:
        try:
            return runner(argv) or ""
        except (OSError, subprocess.SubprocessError, ValueError):
            return ""

    listed = ask([exe, QUERY_COMPUTE, "--format=csv,noheader"])
    if not parse_nvidia_smi(listed):
        listed = ask([exe, QUERY, "--format=csv,noheader"])
    return parse_nvidia_smi(listed + "\n" + ask([exe]))


# ---- the table -----------------------------------------------------------------------------------

def version_tuple(text: Optional[str]) -> Tuple[int, ...]:
    parts = re.findall(r"\d+", text or "")
    return tuple(int(p) for p in parts) if parts else ()


def cuda_variant(driver_version: str, system: str, compute_capability: Optional[str] = None) -> Optional[str]:
    """The newest CUDA build of the pinned torch that ``driver_version`` runs and that has kernels
    for ``compute_capability`` (when known), else None."""
    have = version_tuple(driver_version)
    column = 2 if system == "Windows" else 1
    card = version_tuple(compute_capability)
    for variant, row in MINIMUM_DRIVERS.items():
        if have and have >= version_tuple(row[column]) and (not card or card >= version_tuple(MINIMUM_COMPUTE[variant])):
            return variant
    return None


def _platform_names(system: Optional[str], machine: Optional[str]) -> Tuple[str, str]:
    system = system or _platform.system()
    machine = (machine or _platform.machine() or "").lower()
    return system, machine


def describe(gpus: Sequence[GpuInfo]) -> str:
    if not gpus:
        return "no NVIDIA driver (nvidia-smi not found or it reports no GPU)"
    g = gpus[0]
    cuda = f", CUDA {g.cuda_version}" if g.cuda_version else ""
    compute = f", compute capability {g.compute_capability}" if g.compute_capability else ""
    return f"{g.name} with driver {g.driver_version}{cuda}{compute}"


def choose_build(requested: str = "auto", system: Optional[str] = None, machine: Optional[str] = None,
                 gpus: Optional[Sequence[GpuInfo]] = None) -> TorchBuild:
    """The torch build for this machine. ``requested``: auto, cpu or cuda (cuda without a
    usable driver raises InputError("DEVICE")). ``gpus`` None: ask nvidia-smi."""
    requested = (requested or "auto").strip().lower()
    if requested not in REQUESTS:
        raise InputError(PARAMETER, f"{requested!r} is not a device for the environment; accepted: auto, cpu or cuda")
    system, machine = _platform_names(system, machine)
    if system == "Darwin":
        if requested == "cuda":
            raise InputError(PARAMETER, "cuda: macOS has no NVIDIA CUDA driver; use auto (Apple silicon's GPU "
                                        "through MPS) or cpu")
        if machine in ("arm64", "aarch64") and requested == "auto":
            return TorchBuild("mps", "default", None, "Apple silicon: PyPI's torch uses its GPU through MPS")
        return TorchBuild("cpu", "default", None, "macOS: PyPI's torch on the CPU" + (
            "" if machine in ("arm64", "aarch64") else
            f" (PyTorch publishes no macOS Intel wheels of torch {TORCH_VERSION}; use Apple silicon or Linux/Windows)"))
    cpu_index = PYTORCH_INDEX.format(variant="cpu") if system != "Windows" else None
    if requested == "cpu":
        return TorchBuild("cpu", "cpu", cpu_index, "the CPU build, as asked for")
    if gpus is None:
        gpus = detect_gpus()
    gpus = list(gpus)
    variant = cuda_variant(gpus[0].driver_version, system, gpus[0].compute_capability) if gpus else None
    if variant is None:
        oldest = MINIMUM_DRIVERS[CUDA_VARIANTS[-1]][2 if system == "Windows" else 1]
        oldest_card = MINIMUM_COMPUTE[CUDA_VARIANTS[-1]]
        found = describe(gpus)
        # a driver new enough for a CUDA build but a GPU older than every build's kernels
        card_too_old = bool(gpus) and cuda_variant(gpus[0].driver_version, system) is not None
        needed = (f"a GPU of compute capability {oldest_card} or newer" if card_too_old else
                  f"an NVIDIA driver {oldest} or newer")
        if requested == "cuda":
            fix = "" if card_too_old else "install or update the NVIDIA driver, or "
            raise InputError(PARAMETER, f"cuda: found {found}; torch {TORCH_VERSION}'s CUDA builds need {needed}: "
                                        f"{fix}use auto or cpu")
        why = f"found {found}" + (f" (torch {TORCH_VERSION}'s CUDA builds need {needed})" if gpus else "")
        return TorchBuild("cpu", "cpu", cpu_index, f"the CPU build: {why}", gpus[0] if gpus else None)
    cuda = MINIMUM_DRIVERS[variant][0]
    if cuda_variant(gpus[0].driver_version, system) != variant:  # the driver allows newer builds, the GPU not
        limited = f" (the newer builds have no kernels for compute capability {gpus[0].compute_capability})"
    else:
        limited = ""
    if system != "Windows" and variant == LINUX_PYPI_CUDA:
        return TorchBuild("cuda", variant, None,
                          f"the CUDA {cuda} build (PyPI's default): found {describe(gpus)}{limited}", gpus[0])
    where = "from the PyTorch index" + (" (PyPI's Windows wheel is CPU-only)" if system == "Windows" else "")
    return TorchBuild("cuda", variant, PYTORCH_INDEX.format(variant=variant),
                      f"the CUDA {cuda} build {where}: found {describe(gpus)}{limited}", gpus[0])
