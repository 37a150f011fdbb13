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
"""

import csv
import json
import os
import signal
import sys
import time

FINISH_TRIAL_S = 3.0  # how long the graceful cancel takes


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


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
        emit("log", level="info", message="AutoDL: 2 networks within 0.1 h")
        emit("progress", percent=25.0, message="UnetClassifier")
        emit("metric", epoch=1, epochs=2, train_loss=0.5, valid_loss=0.6, accuracy=0.91, device="cpu")
        emit("progress", percent=60.0, message="PSPNetClassifier")
        fields = publish(config)
        emit("progress", percent=100.0)
        emit("result", **fields)
        return 0
    if mode == "error":
        emit("progress", percent=1.0)
        emit("error", parameter="NETWORKS", message="SingleShotDetector does not train on Classified_Tiles; "
                                                    "choose DeepLab, UnetClassifier or PSPNetClassifier")
        return 2
    if mode == "slow":
        def on_term(signum, frame):
            time.sleep(FINISH_TRIAL_S)  # the running trial finishes its epoch
            publish(config)
            emit("canceled", message=f"AutoDL canceled after 1 of 2 networks; the best model so far is at "
                                     f"{config['out_model']}")
            sys.exit(130)

        signal.signal(signal.SIGTERM, on_term)
        emit("progress", percent=10.0, message="UnetClassifier")
        time.sleep(60)
        return 0
    print(f"unknown mode {mode}", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
