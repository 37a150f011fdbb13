"""A stand-in for ``python -m dl_engine train``: prints the worker's JSON-line events.

    python fake_worker.py MODE [OUT_FOLDER]

MODE: ``ok`` (progress, log, metric, result), ``error`` (an error event, exit 2),
``crash`` (a traceback on stderr, exit 1), ``missing_module`` (ModuleNotFoundError),
``slow`` (progress, then sleeps; stops on SIGTERM with a canceled event, exit 130),
``stubborn`` (ignores SIGTERM and sleeps), ``quiet`` (prints nothing, sleeps).
Writes its pid to OUT_FOLDER/pid when given, so a test can check the process is gone.

    python fake_worker.py config -m dl_engine train --config FILE

(what a DLT_PYTHON wrapper script passes on) answers with a result whose metrics hold the
config it was given and the PYTHONPATH it saw.
"""

import json
import os
import signal
import sys
import time


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


def echo_config():
    config = json.load(open(sys.argv[sys.argv.index("--config") + 1], encoding="utf-8"))
    emit("progress", percent=50.0)
    emit("result", out_model_file=os.path.join(config["out_folder"], "fake.dlpk"), out_folder=config["out_folder"],
         metrics={"config": config, "argv": sys.argv[2:], "pythonpath": os.environ.get("PYTHONPATH", "")})
    return 0


def main():
    mode = sys.argv[1]
    if mode == "config":
        return echo_config()
    out = sys.argv[2] if len(sys.argv) > 2 and not sys.argv[2].startswith("-") else None
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "pid"), "w") as f:
            f.write(str(os.getpid()))

    if mode == "ok":
        emit("log", level="info", message="Training UNET on 4 chips")
        print("a library printed this", flush=True)
        print("UserWarning: something was guessed", file=sys.stderr, flush=True)
        for epoch in (1, 2):
            emit("progress", percent=epoch * 45.0, message=f"epoch {epoch}")
            emit("metric", epoch=epoch, epochs=2, train_loss=0.5 / epoch, valid_loss=0.6 / epoch,
                 accuracy=0.8 + epoch / 100, samples_per_s=12.5, seconds=1.25, device="cpu")
        emit("log", level="warning", message="pretrained weights not cached: random init")
        model = os.path.join(out or ".", "model.dlpk")
        emit("progress", percent=100.0)
        emit("result", out_model_file=model, out_folder=out or ".", metrics={"accuracy": 0.82, "miou": 0.5})
        return 0
    if mode == "error":
        emit("progress", percent=1.0)
        emit("error", parameter="BATCH_SIZE", message="must be at least 1; got 0")
        return 2
    if mode == "crash":
        emit("progress", percent=5.0)
        print("Traceback (most recent call last):", file=sys.stderr)
        print('  File "train.py", line 1, in <module>', file=sys.stderr)
        print("    boom()", file=sys.stderr)
        print("RuntimeError: CUDA error: out of memory", file=sys.stderr, flush=True)
        return 1
    if mode == "missing_module":
        print("Traceback (most recent call last):", file=sys.stderr)
        print("ModuleNotFoundError: No module named 'torch'", file=sys.stderr, flush=True)
        return 1
    if mode == "slow":
        def on_term(signum, frame):
            emit("canceled", message="checkpoint saved in /tmp/ckpt.pth; resume with ARGUMENTS 'resume true'")
            sys.exit(130)

        signal.signal(signal.SIGTERM, on_term)
        emit("progress", percent=10.0, message="epoch 1")
        time.sleep(60)
        return 0
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        emit("progress", percent=10.0)
        time.sleep(60)
        return 0
    if mode == "quiet":
        time.sleep(60)
        return 0
    print(f"unknown mode {mode}", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
