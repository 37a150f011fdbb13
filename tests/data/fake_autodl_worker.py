"""A stand-in for ``python -m dl_engine autodl``: prints the worker's JSON-line events.

    python fake_autodl_worker.py MODE -m dl_engine autodl --config FILE

(what a DLT_PYTHON wrapper script passes on). MODE:

- ``ok``: progress, log and metric events, then writes OUT_MODEL, the leaderboard CSV (two
  ranked rows) and ``<OUT_MODEL>.received.json`` (the config it was given, its argv and the
  PYTHONPATH it saw) and reports them in a ``result`` event;
- ``error``: an ``error`` event naming NETWORKS, exit 2;
- ``slow``: progress, then sleeps; on SIGTERM it "finishes the running trial" for a few
  seconds (longer than a training run's stop timeout), publishes OUT_MODEL and ends with a
  ``canceled`` event saying where the best model is, exit 130.

The events and the exit codes are the engine's own (dl_engine.events.Events and EXIT_*): the
runner puts the plugin folder on PYTHONPATH, as it does for the real worker.
"""

import csv
import json
import os
import sys
import time

from dl_engine.events import EXIT_BAD_INPUT, EXIT_CANCELED, EXIT_OK, Events

from fake_signals import catch_sigterm, sigterm_within  # beside this script

EVENTS = Events.json_lines()
FINISH_TRIAL_S = 3.0  # how long the graceful cancel takes


def load_config():
    with open(sys.argv[sys.argv.index("--config") + 1], encoding="utf-8") as f:
        return json.load(f)


def publish(config):
    """OUT_MODEL, the leaderboard and the received config; the result event's fields."""
    out_model = config["out_model"]
    os.makedirs(os.path.dirname(out_model), exist_ok=True)
    with open(out_model, "wb") as f:
        f.write(b"PK fake package")
    base = os.path.splitext(out_model)[0]
    leaderboard = base + "_leaderboard.csv"
    trials = [
        {"rank": 1, "network": "UnetClassifier", "backbone": "resnet34", "metric": "accuracy", "value": 0.91,
         "seconds": 12.5},
        {"rank": 2, "network": "PSPNetClassifier", "backbone": "resnet50", "metric": "accuracy", "value": 0.87,
         "seconds": 14.0},
    ]
    with open(leaderboard, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(trials[0]))
        writer.writeheader()
        writer.writerows(trials)
    with open(out_model + ".received.json", "w", encoding="utf-8") as f:
        json.dump({"config": config, "argv": sys.argv[2:], "pythonpath": os.environ.get("PYTHONPATH", "")}, f)
    evaluated = base + "_evaluated" if config.get("save_evaluated_models") else None
    return dict(out_model_file=out_model, leaderboard=leaderboard, best=trials[0], trials=trials,
                evaluated_folder=evaluated)


def main():
    mode = sys.argv[1]
    config = load_config()
    if mode == "ok":
        EVENTS.log("AutoDL: 2 networks within 0.1 h")
        EVENTS.progress(25.0, "UnetClassifier")
        EVENTS.metric(epoch=1, epochs=2, train_loss=0.5, valid_loss=0.6, accuracy=0.91, device="cpu")
        EVENTS.progress(60.0, "PSPNetClassifier")
        fields = publish(config)
        EVENTS.progress(100.0)
        EVENTS.result(**fields)
        return EXIT_OK
    if mode == "error":
        EVENTS.progress(1.0)
        EVENTS.error("NETWORKS", "SingleShotDetector does not train on Classified_Tiles; "
                               "choose DeepLab, UnetClassifier or PSPNetClassifier")
        return EXIT_BAD_INPUT
    if mode == "slow":
        catch_sigterm()
        EVENTS.progress(10.0, "UnetClassifier")
        if sigterm_within(60):
            time.sleep(FINISH_TRIAL_S)  # the running trial finishes its epoch
            publish(config)
            EVENTS.canceled(f"AutoDL canceled after 1 of 2 networks; the best model so far is at "
                            f"{config['out_model']}")
            return EXIT_CANCELED
        return EXIT_OK
    print(f"unknown mode {mode}", file=sys.stderr)
    return 3  # no engine exit code: the test called the fake wrongly


if __name__ == "__main__":
    sys.exit(main())
