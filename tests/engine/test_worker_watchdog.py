"""Workers die with their host (issue 18 item 3): a worker the plugin started (``DLT_HOST_PID``)
cancels when the process that started it is killed, kills its own children and exits if the
run does not stop, and removes the host's temporary files (``DLT_TEMPORARY``) and its own
temporary folder on every exit path. SIGTERM of a worker is a cancel with the run's message.

The host here is a small Python process that starts the worker as the plugin's runner does
(its pid in the environment, the worker's stdout read through a pipe) and relays the events."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from dl_engine.events import EXIT_CANCELED
from dl_engine.export.config import ExportConfig
from dl_engine.export.job import write_job
from dl_engine.host import HOST_PID_ENV, TEMPORARY_ENV
from process_tree import descendants, running  # tests/process_tree.py

REPO = Path(__file__).resolve().parents[2]
DSM = REPO / "tests" / "data" / "elevation" / "dsm.tif"

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads process states from /proc")

# argv: the worker's command line as JSON, the temporary paths as JSON. Prints the worker's pid,
# then each line the worker prints; sleeps until it is killed.
HOST = r'''
import json, os, subprocess, sys, time
command, temporary = json.loads(sys.argv[1]), json.loads(sys.argv[2])
env = dict(os.environ, DLT_HOST_PID=str(os.getpid()), DLT_TEMPORARY=os.pathsep.join(temporary))
worker = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
print(json.dumps({"worker": worker.pid}), flush=True)
for line in worker.stdout:
    print(line.rstrip(), flush=True)
time.sleep(600)
'''

# A job that ignores the cancel, holds a temporary folder and a child process.
STUBBORN = r'''
import multiprocessing, sys, tempfile, time
from dl_engine.worker import leave, run_job


def sleeper():
    time.sleep(600)


def job(events, cancel):
    extracted = tempfile.mkdtemp(prefix="extracted-")
    child = multiprocessing.get_context("spawn").Process(target=sleeper)
    child.start()
    events.log(f"{child.pid} {extracted}")
    while True:
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(leave(run_job(job, "test")))
'''


def env():
    return dict(os.environ, PYTHONPATH=str(REPO))


def start_host(command, temporary):
    host = subprocess.Popen([sys.executable, "-c", HOST, json.dumps(command), json.dumps([str(p) for p in temporary])],
                            stdout=subprocess.PIPE, text=True, env=env())
    worker = json.loads(host.stdout.readline())["worker"]
    return host, worker


def read_until(host, predicate, timeout=60.0):
    """Lines of the host's output until one satisfies ``predicate`` (returned)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = host.stdout.readline()
        if not line:
            break
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if predicate(event):
            return event
    raise AssertionError("the worker never said it")


def wait_gone(pids, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not [p for p in pids if running(p)]:
            return []
        time.sleep(0.1)
    return [p for p in pids if running(p)]


def export_job(tmp_path, out):
    """A job of 16,000 chip positions in 2 pool processes: seconds of work, cancelled long before its end."""
    folder = Path(tempfile.mkdtemp(prefix="dlt-export-", dir=tmp_path))
    config = ExportConfig(raster=str(DSM), out_folder=str(out), metadata_format="Export_Tiles", tile_size_x=16,
                          tile_size_y=16, stride_x=2, stride_y=2, workers=2, output_nofeature_tiles=True)
    return folder, write_job(str(folder), config)


@pytest.mark.heavy
def test_export_worker_and_its_pool_end_when_the_host_is_killed(tmp_path):
    out = tmp_path / "chips"
    folder, job = export_job(tmp_path, out)
    host, worker = start_host([sys.executable, "-m", "dl_engine", "export", "--job", job], [folder])
    try:
        read_until(host, lambda e: e.get("event") == "progress")
        family = descendants(worker) | {worker}
        assert len(family) >= 3, "the export should be cutting chips in two pool processes"
        host.kill()
        host.wait()
        killed = time.monotonic()
        assert wait_gone(family, 5.0) == [], "processes of the export outlived their host by 5 s"
        assert time.monotonic() - killed < 5.0
    finally:
        host.kill()
        host.stdout.close()
    assert not folder.exists(), "the job folder (the host's temporary files) is left"
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if ".partial-" in p], "the staging folder is left"


@pytest.mark.heavy  # waits out STOP_GRACE (3 s)
def test_a_run_that_ignores_the_cancel_is_ended_with_its_children(tmp_path):
    script = tmp_path / "stubborn.py"
    script.write_text(STUBBORN)
    host_file = tmp_path / "dlt-train-config.json"
    host_file.write_text("{}")
    host, worker = start_host([sys.executable, str(script)], [host_file])
    try:
        said = read_until(host, lambda e: e.get("event") == "log")
        child, extracted = said["message"].split()
        assert os.path.isdir(extracted) and running(int(child))
        host.kill()
        host.wait()
        # STOP_GRACE (3 s) for the run to stop by itself, then the hard exit.
        assert wait_gone([worker, int(child)], 5.0) == []
    finally:
        host.kill()
        host.stdout.close()
    assert not host_file.exists(), "the host's temporary config is left"
    assert not os.path.exists(extracted), "the worker's own temporary folder is left"


@pytest.mark.heavy
def test_sigterm_of_an_export_worker_is_a_cancel_that_leaves_nothing(tmp_path):
    out = tmp_path / "chips"
    folder, job = export_job(tmp_path, out)
    worker = subprocess.Popen([sys.executable, "-m", "dl_engine", "export", "--job", job], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=dict(env(), **{HOST_PID_ENV: str(os.getpid()), TEMPORARY_ENV: str(folder)}))
    for line in worker.stdout:
        if json.loads(line)["event"] == "progress":
            break
    worker.send_signal(signal.SIGTERM)
    rest, stderr = worker.communicate(timeout=30)
    events = [json.loads(line) for line in rest.splitlines()]
    assert worker.returncode == EXIT_CANCELED
    assert events[-1] == {"event": "canceled", "message": "Export canceled: nothing was written"}
    assert "leaked" not in stderr and "Traceback" not in stderr, stderr
    assert not folder.exists() and not out.exists()
    assert not [p for p in os.listdir(tmp_path) if ".partial-" in p]


@pytest.mark.heavy  # a few seconds (make test runs it)
def test_a_worker_started_by_a_person_does_not_watch_its_parent(tmp_path):
    """Without DLT_HOST_PID (a shell, nohup, a cluster job) losing the parent cancels nothing."""
    script = tmp_path / "orphan.py"
    marker = tmp_path / "finished"
    script.write_text(
        "import sys, time\n"
        "from dl_engine.worker import leave, run_job\n"
        "def job(events, cancel):\n"
        "    time.sleep(1.0)\n"
        f"    open({str(marker)!r}, 'w').write('canceled' if cancel() else 'done')\n"
        "sys.exit(leave(run_job(job, 'test')))\n")
    clean = {k: v for k, v in env().items() if k not in (HOST_PID_ENV, TEMPORARY_ENV)}
    # The parent (a shell) leaves at once; the worker runs on as an orphan.
    subprocess.run(["sh", "-c", f"{sys.executable} {script} >/dev/null 2>&1 &"], env=clean, check=True)
    deadline = time.monotonic() + 15
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.2)
    assert marker.read_text() == "done"
