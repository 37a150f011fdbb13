"""nvidia-smi → the torch build (dl_engine/environment/gpu.py), against recorded outputs
(tests/data/nvidia-smi/) and NVIDIA's minimum drivers per CUDA toolkit."""

from pathlib import Path

import pytest

from dl_engine.environment import gpu
from dl_engine.errors import InputError

RECORDED = Path(__file__).resolve().parents[1] / "data" / "nvidia-smi"


def recorded(name: str) -> str:
    return (RECORDED / name).read_bytes().decode("utf-8")


# file → (name, driver, memory MiB, CUDA version the driver reports); the table's names may be cut short
PARSED = {
    "h100-linux-580.txt": ("NVIDIA H100 80GB HBM3", "580.65.06", 81559, "13.0"),
    "h100-linux-580.csv": ("NVIDIA H100 80GB HBM3", "580.65.06", 81559, None),
    "rtx3060-linux-535.txt": ("NVIDIA GeForce RTX 3060", "535.161.07", 12288, "12.2"),
    "gtx1080-linux-470.txt": ("NVIDIA GeForce ...", "470.199.02", 8119, "11.4"),
    "gtx1080-linux-470.csv": ("NVIDIA GeForce GTX 1080", "470.199.02", 8119, None),
    "rtx4070-windows-566.txt": ("NVIDIA GeForce RTX 4070 ...", "566.36", 12282, "12.7"),
    "rtx4070-windows-566.csv": ("NVIDIA GeForce RTX 4070 SUPER", "566.36", 12282, None),
    "h100-linux-580-compute.csv": ("NVIDIA H100 80GB HBM3", "580.65.06", 81559, None),
    "gtx1080-linux-580-compute.csv": ("NVIDIA GeForce GTX 1080", "580.95.05", 8192, None),
    "v100-linux-570-compute.csv": ("Tesla V100-SXM2-16GB", "570.172.08", 16384, None),
}
COMPUTE = {"h100-linux-580-compute.csv": "9.0", "gtx1080-linux-580-compute.csv": "6.1",
           "v100-linux-570-compute.csv": "7.0"}


@pytest.mark.parametrize("name", sorted(PARSED))
def test_recorded_outputs_parse(name):
    found = gpu.parse_nvidia_smi(recorded(name))
    assert len(found) == 1
    card = found[0]
    assert (card.name, card.driver_version, card.memory_mib, card.cuda_version) == PARSED[name]
    assert card.compute_capability == COMPUTE.get(name)


def test_two_gpus_without_units():
    found = gpu.parse_nvidia_smi(recorded("two-a100-linux-570-nounits.csv"))
    assert [(g.name, g.driver_version, g.memory_mib) for g in found] == [("NVIDIA A100-SXM4-40GB", "570.133.20", 40960)] * 2


def test_the_csv_names_and_the_table_cuda_version_together():
    both = recorded("gtx1080-linux-470.csv") + recorded("gtx1080-linux-470.txt")
    (card,) = gpu.parse_nvidia_smi(both)
    assert (card.name, card.cuda_version, card.memory_mib) == ("NVIDIA GeForce GTX 1080", "11.4", 8119)


@pytest.mark.parametrize("name", ["no-gpu.txt", "garbage.txt"])
def test_no_gpu_and_garbage_give_nothing(name):
    assert gpu.parse_nvidia_smi(recorded(name)) == []
    assert gpu.parse_nvidia_smi("") == []


# (recorded output, system) → (device, variant, from the PyTorch index?) for the pinned torch 2.13
TABLE = [
    ("h100-linux-580.txt", "Linux", ("cuda", "cu130", False)),      # PyPI's default Linux wheel is CUDA 13
    ("h100-linux-580.csv", "Linux", ("cuda", "cu130", False)),
    ("rtx3060-linux-535.txt", "Linux", ("cuda", "cu126", True)),    # CUDA 12 driver: cu126 by minor-version compat
    ("two-a100-linux-570-nounits.csv", "Linux", ("cuda", "cu128", True)),
    ("gtx1080-linux-470.txt", "Linux", ("cpu", "cpu", True)),       # CUDA 11.4 driver: no torch 2.13 build
    ("h100-linux-580-compute.csv", "Linux", ("cuda", "cu130", False)),
    ("gtx1080-linux-580-compute.csv", "Linux", ("cuda", "cu126", True)),  # Pascal: the cu128/cu130 builds lack it
    ("v100-linux-570-compute.csv", "Linux", ("cuda", "cu126", True)),     # Volta (7.0) likewise
    ("rtx4070-windows-566.txt", "Windows", ("cuda", "cu126", True)),  # PyPI's Windows wheel is CPU-only
    ("no-gpu.txt", "Linux", ("cpu", "cpu", True)),
    ("garbage.txt", "Linux", ("cpu", "cpu", True)),
    ("no-gpu.txt", "Windows", ("cpu", "cpu", False)),                 # Windows: PyPI's wheel is the CPU build
]


@pytest.mark.parametrize("name,system,expected", TABLE)
def test_the_table_against_recorded_outputs(name, system, expected):
    build = gpu.choose_build("auto", system=system, machine="x86_64", gpus=gpu.parse_nvidia_smi(recorded(name)))
    device, variant, from_pytorch = expected
    assert (build.device, build.variant) == (device, variant), build.reason
    if from_pytorch:
        assert build.index_url == f"https://download.pytorch.org/whl/{variant}"
    else:
        assert build.index_url is None
    assert build.reason  # said to the user
    if device == "cuda":
        assert build.gpu is not None and build.gpu.driver_version in build.reason


def test_a_windows_driver_new_enough_for_cuda_13_takes_it_from_the_pytorch_index():
    card = gpu.GpuInfo("NVIDIA GeForce RTX 5090", "581.29", 32607, "13.0")
    build = gpu.choose_build("auto", system="Windows", gpus=[card])
    assert (build.device, build.variant, build.index_url) == ("cuda", "cu130", "https://download.pytorch.org/whl/cu130")
    assert "CPU-only" in build.reason


@pytest.mark.parametrize("system", ["Linux", "Windows"])
def test_the_minimum_drivers_are_the_edges_of_the_table(system):
    column = 2 if system == "Windows" else 1
    for variant, row in gpu.MINIMUM_DRIVERS.items():
        assert gpu.cuda_variant(row[column], system) == variant
    oldest = gpu.MINIMUM_DRIVERS[gpu.CUDA_VARIANTS[-1]][column]
    below = gpu.version_tuple(oldest)[:-1] + (gpu.version_tuple(oldest)[-1] - 1,)
    assert gpu.cuda_variant(".".join(map(str, below)), system) is None


def test_macos():
    assert (gpu.choose_build(system="Darwin", machine="arm64", gpus=[]).device,
            gpu.choose_build(system="Darwin", machine="arm64", gpus=[]).index_url) == ("mps", None)
    intel = gpu.choose_build(system="Darwin", machine="x86_64", gpus=[])
    assert intel.device == "cpu" and "Intel" in intel.reason
    assert gpu.choose_build("cpu", system="Darwin", machine="arm64").device == "cpu"
    with pytest.raises(InputError) as e:
        gpu.choose_build("cuda", system="Darwin", machine="arm64")
    assert e.value.parameter == "DEVICE"


def test_requests_are_honoured():
    h100 = gpu.parse_nvidia_smi(recorded("h100-linux-580.txt"))
    cpu = gpu.choose_build("cpu", system="Linux", gpus=h100)
    assert (cpu.device, cpu.index_url) == ("cpu", "https://download.pytorch.org/whl/cpu")
    assert gpu.choose_build("cuda", system="Linux", gpus=h100).variant == "cu130"
    with pytest.raises(InputError) as e:
        gpu.choose_build("cuda", system="Linux", gpus=gpu.parse_nvidia_smi(recorded("gtx1080-linux-470.txt")))
    assert e.value.parameter == "DEVICE"
    assert "470.199.02" in e.value.message and "525.60.13" in e.value.message  # what was found, what is needed
    with pytest.raises(InputError) as e:
        gpu.choose_build("cuda", system="Linux", gpus=[])
    assert "no NVIDIA driver" in e.value.message
    with pytest.raises(InputError) as e:
        gpu.choose_build("tpu", system="Linux", gpus=[])
    assert "auto, cpu or cuda" in e.value.message


def test_a_gpu_older_than_every_build():
    kepler = gpu.GpuInfo("Tesla K80", "580.65.06", 11441, "13.0", "3.7")
    build = gpu.choose_build("auto", system="Linux", gpus=[kepler])
    assert build.device == "cpu" and "compute capability 5.0 or newer" in build.reason
    with pytest.raises(InputError) as e:
        gpu.choose_build("cuda", system="Linux", gpus=[kepler])
    assert "compute capability 3.7" in e.value.message and "driver" not in e.value.message.split(":")[-1]
    limited = gpu.choose_build("auto", system="Linux",
                               gpus=gpu.parse_nvidia_smi(recorded("v100-linux-570-compute.csv")))
    assert "no kernels for compute capability 7.0" in limited.reason


def test_an_old_driver_without_compute_cap_is_asked_the_three_fields():
    asked = []

    def runner(argv):
        asked.append(argv)
        if any(a.endswith("compute_cap") for a in argv):
            raise OSError('Field "compute_cap" is not a valid field to query.')
        return recorded("gtx1080-linux-470.csv") if any("--query-gpu" in a for a in argv) else recorded("gtx1080-linux-470.txt")

    (card,) = gpu.detect_gpus(runner)
    assert (card.name, card.cuda_version, card.compute_capability) == ("NVIDIA GeForce GTX 1080", "11.4", None)
    assert len(asked) == 3


def test_detect_gpus_runs_nvidia_smi_through_the_runner():
    asked = []

    def runner(argv):
        asked.append(argv)
        if any("--query-gpu" in a for a in argv):
            return recorded("h100-linux-580-compute.csv")
        return recorded("h100-linux-580.txt")

    (card,) = gpu.detect_gpus(runner)
    assert (card.name, card.memory_mib, card.cuda_version, card.compute_capability) == \
        ("NVIDIA H100 80GB HBM3", 81559, "13.0", "9.0")
    assert any("--format=csv,noheader" in a for a in asked[0])

    def failing(argv):
        raise OSError("nvidia-smi: not found")

    assert gpu.detect_gpus(failing) == []
