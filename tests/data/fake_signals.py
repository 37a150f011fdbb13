"""What the fake workers share: SIGTERM as a flag, as in the real worker (dl_engine/worker.py).
Writing an event inside the handler could meet the event stream's lock held mid-write."""

import signal
import time

SIGTERM = []  # set by catch_sigterm


def catch_sigterm():
    signal.signal(signal.SIGTERM, lambda signum, frame: SIGTERM.append(signum))


def sigterm_within(seconds):
    """Wait up to ``seconds``; True when SIGTERM came (``catch_sigterm`` first)."""
    deadline = time.monotonic() + seconds
    while not SIGTERM and time.monotonic() < deadline:
        time.sleep(0.02)
    return bool(SIGTERM)
