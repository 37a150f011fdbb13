"""A stand-in for ``python -m dl_engine train``: prints the worker's JSON-line events.

    python fake_worker.py MODE [OUT_FOLDER]

MODE: ``ok`` (progress, log, metric, result), ``error`` (an error event, exit 2),
``crash`` (a traceback on stderr, exit 1), ``missing_module`` (ModuleNotFoundError),
``slow`` (progress, then sleeps; stops on SIGTERM with a canceled event, exit 130),
``stubborn`` (ignores SIGTERM and sleeps), ``quiet`` (prints nothing, sleeps).
Writes its pid to OUT_FOLDER/pid when given, so a test can check the process is gone.

    python fake_worker.py config -m dl_engine train --config FILE

(what a DLT_PYTHON wrapper script passes on) answers with a result whose metrics hold the
config it was given and the PYTHONPATH and DLT_WEIGHTS_DIR it saw (None when unset).

Any other engine command (``export``: a Modeler chain's first step) runs the real engine (a
``--job`` command line).

The events and the exit codes are the engine's own (dl_engine.events.Events and EXIT_*): the
runner puts the plugin folder on PYTHONPATH, as it does for the real worker.
"""

import json
import os
import signal
import sys
import time

from dl_engine.events import EXIT_BAD_INPUT, EXIT_CANCELED, EXIT_CRASH, EXIT_OK, Events

from fake_signals import catch_sigterm, sigterm_within  # beside this script

EVENTS = Events.json_lines()


def echo_config():
    config = json.load(open(sys.argv[sys.argv.index("--config") + 1], encoding="utf-8"))
    EVENTS.progress(50.0)
    EVENTS.result(out_model_file=os.path.join(config["out_folder"], "fake.dlpk"), out_folder=config["out_folder"],
                  metrics={"config": config, "argv": sys.argv[2:], "pythonpath": os.environ.get("PYTHONPATH", ""),
                           "weights_dir": os.environ.get("DLT_WEIGHTS_DIR")})
    return EXIT_OK


def real_engine(argv):
    """A command other than ``train`` (a Modeler chain's export step) runs the real engine, as the
    runner would have with the real worker Python."""
    import runpy

    sys.argv = ["python -m dl_engine", *argv]
    runpy.run_module("dl_engine", run_name="__main__", alter_sys=True)


def main():
    mode = sys.argv[1]
    if "--job" in sys.argv and "-m" in sys.argv:  # a job the algorithm wrote for the real engine
        return real_engine(sys.argv[sys.argv.index("-m") + 2:])
    if mode == "config":
        return echo_config()
    out = sys.argv[2] if len(sys.argv) > 2 and not sys.argv[2].startswith("-") else None
    if out:
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "pid"), "w") as f:
            f.write(str(os.getpid()))

    if mode == "ok":
        EVENTS.log("Training UNET on 4 chips")
        print("a library printed this", flush=True)
        print("UserWarning: something was guessed", file=sys.stderr, flush=True)
        for epoch in (1, 2):
            EVENTS.progress(epoch * 45.0, f"epoch {epoch}")
            EVENTS.metric(epoch=epoch, epochs=2, train_loss=0.5 / epoch, valid_loss=0.6 / epoch,
                          accuracy=0.8 + epoch / 100, samples_per_s=12.5, seconds=1.25, device="cpu")
        EVENTS.warning("pretrained weights not cached: random init")
        model = os.path.join(out or ".", "model.dlpk")
        EVENTS.progress(100.0)
        EVENTS.result(out_model_file=model, out_folder=out or ".", metrics={"accuracy": 0.82, "miou": 0.5})
        return EXIT_OK
    if mode == "error":
        EVENTS.progress(1.0)
        EVENTS.error("BATCH_SIZE", "must be at least 1; got 0")
        return EXIT_BAD_INPUT
    if mode == "crash":
        EVENTS.progress(5.0)
        print("Traceback (most recent call last):", file=sys.stderr)
        print('  File "train.py", line 1, in <module>', file=sys.stderr)
        print("    boom()", file=sys.stderr)
        print("RuntimeError: CUDA error: out of memory", file=sys.stderr, flush=True)
        return EXIT_CRASH
    if mode == "missing_module":
        print("Traceback (most recent call last):", file=sys.stderr)
        print("ModuleNotFoundError: No module named 'torch'", file=sys.stderr, flush=True)
        return EXIT_CRASH
    if mode == "slow":
        catch_sigterm()
        EVENTS.progress(10.0, "epoch 1")
        if sigterm_within(60):
            EVENTS.canceled("checkpoint saved in /tmp/ckpt.pth; resume with ARGUMENTS 'resume true'")
            return EXIT_CANCELED
        return EXIT_OK
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        EVENTS.progress(10.0)
        time.sleep(60)
        return EXIT_OK
    if mode == "quiet":
        time.sleep(60)
        return EXIT_OK
    print(f"unknown mode {mode}", file=sys.stderr)
    return 3  # no engine exit code: the test called the fake wrongly


if __name__ == "__main__":
    sys.exit(main())
