"""Replays a recorded run (a training_events.jsonl the worker wrote) as a worker would print it.

    python replay_worker.py EVENTS_FILE DELAY_S -m dl_engine train --config FILE

(the arguments after DELAY_S are what the runner passes the real worker; the jobs registry reads
the command and the config from them). Each recorded event is printed as one JSON line, DELAY_S
apart, without its ``time``; the recorded OUT_FOLDER is replaced by the config's ``out_folder``.
SIGTERM ends it with a ``canceled`` event and exit code 130, as the real worker.
"""

import json
import signal
import sys
import time

from dl_engine.events import EXIT_CANCELED, EXIT_OK, Events

EVENTS = Events.json_lines()
stop = {"flag": False}


def main():
    path, delay = sys.argv[1], float(sys.argv[2])
    config = json.load(open(sys.argv[sys.argv.index("--config") + 1], encoding="utf-8"))
    with open(path, encoding="utf-8") as f:
        recorded = [json.loads(line) for line in f if line.strip()]
    old = next((e["out_folder"] for e in recorded if e.get("event") == "result"), None)
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))
    for event in recorded:
        if stop["flag"]:
            EVENTS.canceled(f"Training canceled after {sys.argv[0]}'s replay was stopped")
            return EXIT_CANCELED
        fields = {k: v for k, v in event.items() if k not in ("event", "time")}
        if old and config.get("out_folder"):
            fields = json.loads(json.dumps(fields).replace(json.dumps(old)[1:-1], config["out_folder"]))
        EVENTS.emit(event["event"], **fields)
        end = time.monotonic() + delay
        while time.monotonic() < end and not stop["flag"]:
            time.sleep(0.01)
    return EXIT_CANCELED if stop["flag"] else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
