"""The engine environment's installer (dl_engine/environment/manager.py) with a stand-in Python.

The stand-in is a script: as the base Python it makes a "venv" (a folder with pyvenv.cfg and
a copy of itself as bin/python3); as the venv's Python its ``-m pip install`` writes each
requested distribution as a module and a dist-info into <env>/site (skipping those already
there, like pip), and anything else runs the real interpreter with <env>/site on the path, so
the installer's own smoke test really runs. ``FAKE_PIP=slow`` makes pip hang with a child
process, for the cancel. One heavy test installs a small real list from PyPI (or pip's cache).
"""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dl_engine.environment import gpu, location, manager, requirements
from dl_engine.errors import Canceled, InputError

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the stand-in Python is a POSIX script")

FAKE = r'''#!@REAL@
import os, shutil, subprocess, sys, time
REAL = '@REAL@'
here = os.path.abspath(__file__)
args = sys.argv[1:]
env_folder = os.path.dirname(os.path.dirname(here))
site = os.path.join(env_folder, "site")
VALUE = ("-r", "--find-links", "--index-url", "--extra-index-url", "--proxy", "--progress-bar", "-c")
# A stand-in torch with what the smoke test touches, and a torchvision whose operators, like the
# real one's, fail against a torch build it was not made for (a "+cpu" one here).
TORCH = """
__version__ = "VERSION"
class version:
    cuda = None
class cuda:
    is_available = staticmethod(lambda: False)
class backends:
    class mps:
        is_available = staticmethod(lambda: False)
class Tensor:
    grad = None
    def to(self, device): return self
    def square(self): return self
    def mean(self): return self
    def all(self): return True
    def backward(self): nn.last.weight.grad = Tensor()
tensor = randn = lambda *a, **k: Tensor()
isfinite = lambda t: Tensor()
class nn:
    last = None
    class Conv2d(Tensor):
        def __init__(self, *a, **k):
            self.weight = Tensor()
            nn.last = self
        def __call__(self, x): return Tensor()
"""
OPS = """
import torch
if torch.__version__.endswith("+cpu"):
    raise RuntimeError("operator torchvision::nms does not exist")
def nms(*a): return None
"""
PACKAGES = {"torch": {"__init__.py": TORCH}, "torchvision": {"__init__.py": "__version__ = 'VERSION'\n", "ops.py": OPS}}


def requirement_lines(words):
    lines, skip = [], False
    for i, word in enumerate(words):
        if skip:
            skip = False
            continue
        if word == "-r":
            with open(words[i + 1]) as f:
                lines += [l.split("#")[0].strip() for l in f if l.strip() and not l.lstrip().startswith(("#", "-"))]
        if word in VALUE:
            skip = True
        elif not word.startswith("-"):
            lines.append(word)
    return lines


if args[:2] == ["-m", "venv"]:
    if os.environ.get("FAKE_NO_ENSUREPIP"):
        print("The virtual environment was not created successfully because ensurepip is not\n"
              "available.  On Debian/Ubuntu systems, you need to install the python3-venv\n"
              "package using the following command.\n\n    apt install python3.11-venv\n")
        sys.exit(1)
    folder = args[-1]
    os.makedirs(os.path.join(folder, "bin"))
    os.makedirs(os.path.join(folder, "site"))
    shutil.copy(here, os.path.join(folder, "bin", "python3"))
    with open(os.path.join(folder, "pyvenv.cfg"), "w") as f:
        f.write("home = /usr/bin\ninclude-system-site-packages = false\n")
elif args[:3] == ["-m", "pip", "--version"]:
    print("pip 25.0 from " + site + " (python 3.11)")
elif args[:3] == ["-m", "pip", "install"]:
    if os.environ.get("FAKE_PIP") == "slow":
        print("Collecting dlt-fake-alpha==1.0", flush=True)
        child = subprocess.Popen(["sleep", "60"])  # a grandchild: the cancel must end it too
        with open(os.environ["FAKE_PIDS"] + ".tmp", "w") as f:
            f.write("%d %d" % (os.getpid(), child.pid))
        os.replace(os.environ["FAKE_PIDS"] + ".tmp", os.environ["FAKE_PIDS"])
        time.sleep(60)
        sys.exit(0)
    done = []
    for line in requirement_lines(args[3:]):
        name, _, version = line.partition("==")
        module = name.replace("-", "_")
        if name == "torch" and "--isolated" not in args:
            version += "+cpu"  # what this machine's find-links folder holds
        installed = [n for n in os.listdir(site) if n.startswith(module + "-") and n.endswith(".dist-info")]
        print("Collecting " + line, flush=True)
        if installed and "--force-reinstall" not in args:
            print("Requirement already satisfied: " + line)
            continue
        info = os.path.join(site, "%s-%s.dist-info" % (module, version))
        os.makedirs(info, exist_ok=True)
        with open(os.path.join(info, "METADATA"), "w") as f:
            f.write("Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (name, version))
        if name in PACKAGES:
            os.makedirs(os.path.join(site, module), exist_ok=True)
            for file, text in PACKAGES[name].items():
                with open(os.path.join(site, module, file), "w") as f:
                    f.write(text.replace("VERSION", version))
        else:
            with open(os.path.join(site, module + ".py"), "w") as f:
                f.write("VERSION = %r\n" % version)
        done.append("%s-%s" % (name, version))
    if done:
        print("Installing collected packages: " + ", ".join(d.rsplit("-", 1)[0] for d in done))
        print("Successfully installed " + " ".join(done))
elif args[:3] == ["-m", "pip", "uninstall"]:
    for name in [w for w in args[3:] if not w.startswith("-")]:
        for entry in os.listdir(site):
            if entry == name or entry == name + ".py" or entry.startswith(name + "-"):
                path = os.path.join(site, entry)
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
else:
    env = dict(os.environ)
    if os.path.isfile(os.path.join(env_folder, "pyvenv.cfg")):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (site, env.get("PYTHONPATH", "")) if p)
    os.execve(REAL, [REAL] + args, env)
'''

SMALL = "dlt-fake-alpha==1.0\ndlt-fake-beta==2.0\n"


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """(base python, requirements file, wheel folder, env folder) of a stand-in install."""
    base = tmp_path / "python3"
    base.write_text(FAKE.replace("@REAL@", sys.executable))
    base.chmod(0o755)
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("# a small list\n" + SMALL)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "dlt_fake_alpha-1.0-py3-none-any.whl").write_bytes(b"")
    monkeypatch.setattr(gpu, "detect_gpus", lambda runner=None: [])  # the same table on a GPU machine
    monkeypatch.delenv("FAKE_PIP", raising=False)
    return base, reqs, wheels, tmp_path / "env"


def options(fake, **more):
    base, reqs, wheels, folder = fake
    chosen = dict(device="cpu", package_index=str(wheels), base_python=str(base), folder=str(folder),
                  requirements_file=str(reqs))
    return manager.InstallOptions(**{**chosen, **more})


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for a reaper is gone for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def test_install_makes_a_ready_environment_and_stamps_it(fake):
    seen = []
    state = manager.install(options(fake), progress=lambda p, m: seen.append((p, m)))
    folder = fake[3]
    assert state.ready and state.current and not state.problems
    assert state.versions["dlt-fake-alpha"] == "1.0" and state.versions["dlt-fake-beta"] == "2.0"
    assert state.device == "cpu"
    stamp = json.loads((folder / location.STAMP_NAME).read_text())
    assert stamp["smoke_ok"] is True and stamp["hash"] == requirements.requirements_hash(str(fake[1]))
    assert stamp["variant"] == "cpu" and stamp["versions"]["python"]
    assert manager.ready_python(str(folder), requirements_file=str(fake[1])) == location.env_python(str(folder))
    percents = [p for p, _ in seen]
    assert percents == sorted(percents) and percents[-1] == 100
    assert any("Collecting dlt-fake-beta==2.0" in m for _, m in seen)
    log = Path(location.log_path(str(folder))).read_text()
    assert "--no-index --find-links" in log and "smoke test: passed" in log
    assert state.log_path == location.log_path(str(folder)) and not state.log_path.startswith(str(folder) + os.sep)


def test_a_second_install_changes_nothing_and_stays_ready(fake):
    manager.install(options(fake))
    again = manager.install(options(fake))
    assert again.ready
    log = Path(location.log_path(str(fake[3]))).read_text()
    assert "Using the environment in" in log and "Requirement already satisfied: dlt-fake-beta==2.0" in log


def test_bad_options_name_their_parameter(fake, tmp_path):
    with pytest.raises(InputError) as e:
        manager.install(options(fake, device="gpu"))
    assert e.value.parameter == "DEVICE" and "auto, cpu or cuda" in e.value.message
    with pytest.raises(InputError) as e:
        manager.install(manager.InstallOptions(package_index="not an index", folder=str(fake[3])))
    assert e.value.parameter == "PACKAGE_INDEX" and "index URL" in e.value.message
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    with pytest.raises(InputError) as e:
        manager.install(manager.InstallOptions(package_index=str(empty), folder=str(fake[3])))
    assert e.value.parameter == "PACKAGE_INDEX" and "holds no wheels" in e.value.message
    with pytest.raises(InputError) as e:
        manager.install(manager.InstallOptions(base_python=str(tmp_path / "nopython"), folder=str(fake[3])))
    assert e.value.parameter == "PYTHON"
    # cuda on a machine whose nvidia-smi finds nothing: said before anything is made
    with pytest.raises(InputError) as e:
        manager.install(options(fake, device="cuda"))
    assert e.value.parameter == "DEVICE" and "no NVIDIA driver" in e.value.message
    assert not fake[3].exists()


def test_an_index_url_goes_to_pip_as_the_index(fake):
    checked = manager.check_options(manager.InstallOptions(package_index=" https://mirror.example/simple "))
    assert checked.package_index == "https://mirror.example/simple"
    installer = manager._Installer(checked, None, None, None)
    build = gpu.TorchBuild("cpu", "cpu", None, "test")
    assert installer.pip_args(build)[-2:] == ["--index-url", "https://mirror.example/simple"]
    with_proxy = manager._Installer(manager.check_options(manager.InstallOptions(proxy="http://proxy:3128")),
                                    None, None, None)
    args = with_proxy.pip_args(build, isolated=True)
    assert "--isolated" in args and args[-2:] == ["--proxy", "http://proxy:3128"]


def test_the_proxy_reaches_pip_and_its_password_stays_out_of_the_log(fake):
    manager.install(options(fake, proxy="http://bob:s3cret@proxy.example:3128"))
    log = Path(location.log_path(str(fake[3]))).read_text()
    assert "--proxy http://bob:***@proxy.example:3128" in log and "s3cret" not in log


def test_debian_without_python3_venv_is_told_which_package_to_install(fake, monkeypatch):
    monkeypatch.setenv("FAKE_NO_ENSUREPIP", "1")
    with pytest.raises(manager.EnvironmentInstallError) as e:
        manager.install(options(fake))
    assert "python3-venv" in str(e.value) and "ensurepip" in str(e.value)
    assert e.value.log_path == location.log_path(str(fake[3])) and os.path.isfile(e.value.log_path)


def test_cancel_ends_pip_and_its_children_within_a_second_and_a_rerun_finishes(fake, tmp_path, monkeypatch):
    pids = tmp_path / "pids"
    monkeypatch.setenv("FAKE_PIP", "slow")
    monkeypatch.setenv("FAKE_PIDS", str(pids))
    asked = {}

    def is_canceled():
        if pids.exists() and "at" not in asked:
            asked["at"] = time.monotonic()
        return "at" in asked

    with pytest.raises(Canceled):
        manager.install(options(fake), is_canceled=is_canceled)
    took = time.monotonic() - asked["at"]
    assert took < 1.5, took
    pip_pid, child_pid = map(int, pids.read_text().split())
    deadline = time.monotonic() + 2
    while (alive(pip_pid) or alive(child_pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pip_pid) and not alive(child_pid)
    assert manager.ready_python(str(fake[3]), requirements_file=str(fake[1])) is None
    state = manager.inspect(str(fake[3]), smoke=False, requirements_file=str(fake[1]))
    assert not state.ready and any("did not finish" in p for p in state.problems)
    assert "==== canceled" in Path(location.log_path(str(fake[3]))).read_text()
    monkeypatch.delenv("FAKE_PIP")
    assert manager.install(options(fake)).ready


def test_a_torch_from_pip_configuration_that_torchvision_rejects_is_replaced_by_a_matching_pair(fake):
    """This machine's case: pip's find-links folder holds a CPU-only torch that the index's
    torchvision does not import against; the pair is taken again with pip's configuration ignored."""
    base, reqs, wheels, folder = fake
    reqs.write_text(SMALL + "torch==2.13.0\ntorchvision==0.28.0\n")
    state = manager.install(options(fake))
    assert state.ready, state.problems
    assert state.versions["torch"] == "2.13.0" and state.versions["torchvision"] == "0.28.0"
    log = Path(location.log_path(str(folder))).read_text()
    assert "operator torchvision::nms does not exist" in log
    assert "pip install --disable-pip-version-check --no-input --isolated" in log
    assert "smoke test: passed" in log.split("--isolated", 1)[1]
    # the same mismatch on an installed environment: inspect says what it is and what fixes it
    os.rename(folder / "site" / "torch-2.13.0.dist-info", folder / "site" / "torch-2.13.0+cpu.dist-info")
    (folder / "site" / "torch" / "__init__.py").write_text(
        (folder / "site" / "torch" / "__init__.py").read_text().replace('"2.13.0"', '"2.13.0+cpu"'))
    broken = manager.inspect(str(folder), requirements_file=str(reqs))
    assert not broken.ready
    assert broken.problems == [
        "torchvision 0.28.0 does not work with torch 2.13.0+cpu (RuntimeError: operator torchvision::nms does not "
        "exist): Repair reinstalls the pair from one index"]


@pytest.mark.parametrize("left", ["pyvenv.cfg", location.STAMP_NAME])
def test_a_half_made_venv_is_recreated(fake, left):
    """Interrupted before venv copied its python (pyvenv.cfg there), or before venv wrote anything
    (only the installer's own "installing" stamp there)."""
    folder = fake[3]
    (folder / "bin").mkdir(parents=True)
    (folder / left).write_text("home = /usr/bin\n" if left == "pyvenv.cfg" else '{"installing": true}')
    state = manager.install(options(fake))
    assert state.ready
    assert "Recreating" in Path(location.log_path(str(folder))).read_text()


def test_a_folder_that_is_not_an_environment_is_left_alone(fake):
    folder = fake[3]
    folder.mkdir()
    (folder / "thesis.docx").write_text("years of work")
    with pytest.raises(manager.EnvironmentInstallError) as e:
        manager.install(options(fake))
    assert "not an engine environment" in str(e.value)
    with pytest.raises(InputError):
        manager.reset(str(folder))
    assert (folder / "thesis.docx").read_text() == "years of work"


@pytest.mark.heavy
def test_a_removed_package_is_found_by_inspect_and_repaired(fake):
    folder = fake[3]
    manager.install(options(fake))
    (folder / "site" / "dlt_fake_beta.py").unlink()
    state = manager.inspect(str(folder), requirements_file=str(fake[1]))
    assert not state.ready
    assert any("dlt_fake_beta is missing or broken" in p for p in state.problems), state.problems
    assert "dlt_fake_beta" in manager.report_text(state)
    repaired = manager.install(options(fake))
    assert repaired.ready and (folder / "site" / "dlt_fake_beta.py").exists()
    assert "reinstalling what does not import: dlt_fake_beta" in Path(location.log_path(str(folder))).read_text()
    assert manager.inspect(str(folder), requirements_file=str(fake[1])).ready


def test_a_changed_list_makes_the_environment_stale_until_the_next_install(fake):
    folder, reqs = fake[3], fake[1]
    manager.install(options(fake))
    reqs.write_text(reqs.read_text() + "dlt-fake-gamma==3.0\n")
    assert manager.ready_python(str(folder), requirements_file=str(reqs)) is None
    state = manager.inspect(str(folder), smoke=False, requirements_file=str(reqs))
    assert not state.current and not state.ready
    assert any("another list of packages" in p for p in state.problems)
    upgraded = manager.install(options(fake))
    assert upgraded.ready and upgraded.versions["dlt-fake-gamma"] == "3.0"


def test_missing_environment_report_and_summary(tmp_path):
    state = manager.inspect(str(tmp_path / "none"), smoke=False)
    assert not state.exists and not state.ready
    assert "install it" in state.summary() and state.summary().startswith("Not ready")
    text = manager.report_text(state)
    for heading in ("Ready: no", "Device:", "CUDA:", "GPU:", "Free disk:", "Versions:", "Problems:"):
        assert heading in text
    assert state.free_disk_bytes and state.free_disk_bytes > 0


def test_reset_removes_the_environment_and_keeps_the_log(fake):
    folder = fake[3]
    manager.install(options(fake))
    manager.reset(str(folder))
    assert not folder.exists() and os.path.isfile(location.log_path(str(folder)))
    manager.reset(str(folder))  # nothing there: nothing to do


def test_one_install_at_a_time_per_folder(fake, tmp_path, monkeypatch):
    pids = tmp_path / "pids"
    monkeypatch.setenv("FAKE_PIP", "slow")
    monkeypatch.setenv("FAKE_PIDS", str(pids))
    stop = threading.Event()
    first = threading.Thread(target=lambda: pytest.raises(Canceled, manager.install, options(fake),
                                                          is_canceled=stop.is_set))
    first.start()
    try:
        deadline = time.monotonic() + 20
        while not pids.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(manager.EnvironmentInstallError) as e:
            manager.install(options(fake))
        assert "another install" in str(e.value)
    finally:
        stop.set()
        first.join(10)
    monkeypatch.delenv("FAKE_PIP")
    assert manager.install(options(fake)).ready


def test_the_command_line_installs_checks_and_resets(fake):
    base, reqs, wheels, folder = fake
    env = dict(os.environ, PYTHONPATH=str(requirements.PLUGIN_ROOT))
    cli = [sys.executable, "-m", "dl_engine.environment"]
    check = subprocess.run(cli + ["check", "--folder", str(folder), "--no-smoke"], capture_output=True, text=True,
                           env=env, timeout=60)
    assert check.returncode == 1 and "no engine environment" in check.stdout
    bad = subprocess.run(cli + ["install", "--device", "tpu", "--folder", str(folder)], capture_output=True,
                         text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "DEVICE" in bad.stderr and "Traceback" not in bad.stderr
    reset = subprocess.run(cli + ["reset", "--folder", str(tmp_folder_with_file(folder.parent))],
                           capture_output=True, text=True, env=env, timeout=60)
    assert reset.returncode == 2 and "left alone" in reset.stderr


def tmp_folder_with_file(parent: Path) -> Path:
    folder = parent / "not-an-env"
    folder.mkdir(exist_ok=True)
    (folder / "keep.txt").write_text("keep")
    return folder


@pytest.mark.heavy
def test_a_real_install_of_a_small_list(tmp_path):
    """venv + pip + smoke + stamp + inspect for real, with one small package (PyPI or pip's cache)."""
    reqs = tmp_path / "requirements.txt"
    reqs.write_text(f"-c {requirements.PLUGIN_ROOT}/constraints.txt\naffine==2.4.0\n")
    folder = tmp_path / "env"
    state = manager.install(manager.InstallOptions(device="cpu", folder=str(folder), requirements_file=str(reqs)))
    assert state.ready and state.versions["affine"] == "2.4.0"
    python = location.env_python(str(folder))
    assert manager.ready_python(str(folder), requirements_file=str(reqs)) == python
    # isolated: neither the system's packages (QGIS, GDAL) nor .venv's are seen
    probe = subprocess.run([python, "-c", "import sys; import affine\ntry:\n import osgeo\nexcept ImportError:\n"
                            " print('isolated')"], capture_output=True, text=True, timeout=60,
                           env={"PATH": os.environ.get("PATH", "")})
    assert probe.stdout.strip() == "isolated", probe.stderr
    assert "include-system-site-packages = false" in (folder / "pyvenv.cfg").read_text()
    assert manager.inspect(str(folder), requirements_file=str(reqs)).ready
