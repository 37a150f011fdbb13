"""The GPU (from ``nvidia-smi``) and the torch build for it: THE table, in one place.

The pinned torch is 2.13.0 (requirements-engine.txt). Its wheels:

- Linux: PyPI's default wheel is the CUDA 13.0 build (it pulls the nvidia-* runtime
  packages, about 4.8 GB, and also runs on the CPU); the PyTorch index
  (https://download.pytorch.org/whl/<variant>) has cu126, cu128, cu130 and a small cpu build.
- Windows: PyPI's wheel is CPU-only; a CUDA build comes only from the PyTorch index.
- macOS: PyPI's wheel; on Apple silicon it uses the GPU through MPS. (PyTorch publishes no
  macOS Intel wheels for releases after 2.2: there the install fails and says so.)

A CUDA build needs a driver at least as new as its CUDA toolkit's minimum
(``MINIMUM_DRIVERS``). The CUDA 12 builds also run on any CUDA 12 driver (525.60.13 / 527.41
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
LINUX_PYPI_CUDA = "cu130"  # what PyPI's default Linux wheel of the pinned torch is built for


@dataclass
class GpuInfo:
    name: str
    driver_version: str
    memory_mib: Optional[int] = None
    cuda_version: Optional[str] = None  # the newest CUDA the driver supports (nvidia-smi's header)


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
_CSV = re.compile(r"^\s*([^,|]+?)\s*,\s*([0-9]+(?:\.[0-9]+)*)\s*,\s*(\d+)(?:\s*MiB)?\s*$")


def parse_nvidia_smi(text: str) -> List[GpuInfo]:
    """The GPUs in ``nvidia-smi``'s output: its table (driver and CUDA version in the header;
    the names there may be cut short), the CSV of
    ``--query-gpu=name,driver_version,memory.total --format=csv,noheader[,nounits]``, or both
    one after the other (the CSV's names win; the header adds the CUDA version)."""
    text = text or ""
    header = _HEADER.search(text)
    driver = header.group(1) if header else None
    cuda = header.group(2) if header and header.group(2) not in (None, "N/A") else None
    from_csv = []
    for line in text.splitlines():
        m = _CSV.match(line)
        if m and not line.lstrip().startswith("name"):
            from_csv.append(GpuInfo(m.group(1), m.group(2), int(m.group(3)), cuda))
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
    for full names and memory, its table for the CUDA version."""
    runner = runner or _run
    exe = "nvidia-smi" if runner is not _run else nvidia_smi_path()
    if not exe:
        return []
    text = ""
    for argv in ([exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"], [exe]):
        try:
            text += runner(argv) + "\n"
        except (OSError, subprocess.SubprocessError, ValueError):
            continue
    return parse_nvidia_smi(text)


# ---- the table -----------------------------------------------------------------------------------

def version_tuple(text: Optional[str]) -> Tuple[int, ...]:
    parts = re.findall(r"\d+", text or "")
    return tuple(int(p) for p in parts) if parts else ()


def cuda_variant(driver_version: str, system: str) -> Optional[str]:
    """The newest CUDA build of the pinned torch that ``driver_version`` runs, else None."""
    have = version_tuple(driver_version)
    column = 2 if system == "Windows" else 1
    for variant, row in MINIMUM_DRIVERS.items():
        if have and have >= version_tuple(row[column]):
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
    return f"{g.name} with driver {g.driver_version}{cuda}"


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
    variant = cuda_variant(gpus[0].driver_version, system) if gpus else None
    if variant is None:
        oldest = MINIMUM_DRIVERS[CUDA_VARIANTS[-1]][2 if system == "Windows" else 1]
        found = describe(gpus)
        if requested == "cuda":
            raise InputError(PARAMETER, f"cuda: found {found}; torch {TORCH_VERSION}'s CUDA builds need an NVIDIA "
                                        f"driver {oldest} or newer. Install or update the NVIDIA driver, or use "
                                        f"auto or cpu")
        why = f"found {found}" + (f" (older than {oldest}, the oldest driver torch {TORCH_VERSION}'s CUDA "
                                  f"builds run on)" if gpus else "")
        return TorchBuild("cpu", "cpu", cpu_index, f"the CPU build: {why}", gpus[0] if gpus else None)
    cuda = MINIMUM_DRIVERS[variant][0]
    if system != "Windows" and variant == LINUX_PYPI_CUDA:
        return TorchBuild("cuda", variant, None, f"the CUDA {cuda} build (PyPI's default): found {describe(gpus)}",
                          gpus[0])
    where = "from the PyTorch index" + (" (PyPI's Windows wheel is CPU-only)" if system == "Windows" else "")
    return TorchBuild("cuda", variant, PYTORCH_INDEX.format(variant=variant),
                      f"the CUDA {cuda} build {where}: found {describe(gpus)}", gpus[0])
