"""Whether the process that started this one is still there. The plugin's workers and the export's
pool processes watch their host and stop when it dies (killed, crashed, closed), so none of
them is left running with nobody to read its output. Standard library only.

POSIX: the parent changes when it dies (the orphan is adopted), which no reused process id can
fake; a host that is not the direct parent (a wrapper between) is also asked with ``kill(pid, 0)``.
Windows: a handle to the host is waited on."""

from __future__ import annotations

import os
import threading
from typing import Callable, Optional

HOST_PID_ENV = "DLT_HOST_PID"  # set by the plugin's runner (engine_process.run_worker) to its own id
TEMPORARY_ENV = "DLT_TEMPORARY"  # paths (os.pathsep between them) the host wrote for this run only
WATCH_INTERVAL = 0.5  # seconds between two looks

_SYNCHRONIZE = 0x00100000
_WAIT_OBJECT_0 = 0


class Host:
    def __init__(self, pid: Optional[int] = None):
        self.parent = os.getppid()
        self.pid = int(pid) if pid else self.parent
        self._handle = None
        if os.name == "nt":
            import ctypes
            from ctypes import wintypes
            self._kernel32 = kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
            kernel32.OpenProcess.restype = wintypes.HANDLE
            kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
            kernel32.WaitForSingleObject.restype = wintypes.DWORD
            kernel32.WaitForSingleObject.argtypes = (wintypes.HANDLE, wintypes.DWORD)
            # Held for the life of this process, so the id cannot be reused unnoticed.
            self._handle = kernel32.OpenProcess(_SYNCHRONIZE, False, self.pid) or None

    @classmethod
    def from_environment(cls) -> Optional["Host"]:
        """The host the plugin's runner named, or None (started by a person or a script: not watched)."""
        value = os.environ.get(HOST_PID_ENV, "").strip()
        return cls(int(value)) if value.isdigit() else None

    def alive(self) -> bool:
        if os.name == "nt":
            if self._handle is None:
                return True  # no handle (no access): cannot tell, keep running
            return self._kernel32.WaitForSingleObject(self._handle, 0) != _WAIT_OBJECT_0
        if os.getppid() != self.parent:
            return False
        if self.pid == self.parent:
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except OSError:  # someone else's process: it exists
            pass
        return True


def watch(host: Host, on_death: Callable[[], None], interval: float = WATCH_INTERVAL) -> threading.Thread:
    """A daemon thread that calls ``on_death()`` once, within ``interval`` of the host's end."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            if not host.alive():
                on_death()
                return

    thread = threading.Thread(target=loop, name="dlt-host-watch", daemon=True)
    thread.stop = stop  # type: ignore[attr-defined]
    thread.start()
    return thread
