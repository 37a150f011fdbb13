"""Running pip and the environment's Python: every line of output to a callback, and a
cancel that ends the whole process tree (pip's build subprocesses included) within about a
second, raising Canceled.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, Optional, Sequence

from ..errors import Canceled

POLL_S = 0.2
# Variables of the caller's Python that must not reach another installation's Python (QGIS sets
# PYTHONHOME/PYTHONPATH on Windows; macOS app bundles set __PYVENV_LAUNCHER__).
FOREIGN = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONEXECUTABLE", "PYTHONUSERBASE",
           "VIRTUAL_ENV", "__PYVENV_LAUNCHER__", "PYTHONSAFEPATH")


def child_env(pythonpath: Optional[str] = None, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The caller's environment (proxies, pip's PIP_* settings, certificates) without the variables
    that tie a Python to another installation; the user's site-packages kept out."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    env.update(PYTHONNOUSERSITE="1", PYTHONIOENCODING="utf-8", PYTHONUNBUFFERED="1")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    env.update(extra or {})
    return env


def kill_tree(proc: subprocess.Popen) -> None:
    """Ends ``proc`` and its children: its process group on POSIX (it was started in a new
    session), ``taskkill /T`` on Windows."""
    if proc.poll() is not None:
        return
    if sys.platform == "win32":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True,
                       creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))
    else:
        for sig, wait in ((signal.SIGTERM, 0.5), (signal.SIGKILL, 2.0)):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
    try:
        proc.wait(2.0)
    except subprocess.TimeoutExpired:
        proc.kill()


def run(argv: Sequence[str], on_line: Callable[[str], None], env: Optional[Dict[str, str]] = None,
        is_canceled: Optional[Callable[[], bool]] = None, timeout_s: Optional[float] = None,
        cwd: Optional[str] = None) -> int:
    """Runs ``argv``, calling ``on_line`` for each line of its stdout and stderr together; its
    exit status. ``is_canceled()`` is asked every 0.2 s: True (or Ctrl-C) ends the process tree
    and raises Canceled; past ``timeout_s`` it is ended and 124 returned."""
    options = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd)
    if sys.platform == "win32":
        options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | getattr(subprocess, "CREATE_NO_WINDOW", 0)
    else:
        options["start_new_session"] = True
    proc = subprocess.Popen(list(argv), **options)
    lines: "queue.Queue[Optional[str]]" = queue.Queue()

    def read():
        for raw in iter(proc.stdout.readline, b""):
            lines.put(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    started = time.monotonic()
    try:
        done = False
        while not done:
            try:
                line = lines.get(timeout=POLL_S)
                if line is None:
                    done = True
                else:
                    on_line(line)
            except queue.Empty:
                pass
            if is_canceled is not None and is_canceled():
                raise Canceled("canceled: the install stopped; run it again to finish it")
            if timeout_s is not None and time.monotonic() - started > timeout_s:
                kill_tree(proc)
                return 124
        return proc.wait()
    except (Canceled, KeyboardInterrupt):
        kill_tree(proc)
        raise Canceled("canceled: the install stopped; run it again to finish it") from None
    finally:
        if proc.poll() is None:
            kill_tree(proc)
        reader.join(1.0)  # not closed here: a grandchild holding the pipe would block close()
