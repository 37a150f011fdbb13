"""Draws docs/images/jobs-dock.png: the "Deep learning jobs" dock during a training, fed with the
training recorded in tests/data/events/training_events.jsonl (4 of its 6 epochs done), beside the
same training read back from its folder and a finished AutoDL search.

    QT_QPA_PLATFORM=xcb xvfb-run -a .venv/bin/python docs/images/jobs_dock_screenshot.py [OUT.png]

(a virtual display, so the dock has its title bar; QT_QPA_PLATFORM=offscreen draws the same without it)."""

import json
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PARENT = tempfile.mkdtemp(prefix="dlt-shot-")
os.symlink(REPO, os.path.join(PARENT, "deep_learning_tools"))
sys.path[:0] = [PARENT, REPO]

from qgis.core import QgsApplication  # noqa: E402
from qgis.PyQt.QtCore import QCoreApplication  # noqa: E402

RECORDED = os.path.join(REPO, "tests", "data", "events", "training_events.jsonl")


def main(out_png):
    app = QgsApplication([], True)
    app.initQgis()
    from deep_learning_tools.plugin.jobs import JobRegistry
    from deep_learning_tools.plugin.jobs_dock import JobsDock

    work = tempfile.mkdtemp(prefix="dlt-shot-data-")
    try:
        registry = JobRegistry()
        dock = JobsDock(registry)
        dock.resize(440, 640)

        # an earlier training, read back from its folder
        earlier = os.path.join(work, "trees_unet_lr1e-3")
        os.makedirs(earlier)
        shutil.copy(RECORDED, os.path.join(earlier, "training_events.jsonl"))
        open(os.path.join(earlier, "model_metrics.html"), "w").close()
        registry.open_history(earlier)

        # a training running now: the recorded events up to epoch 4, as the runner tells its listeners
        out = os.path.join(work, "trees_unet")
        os.makedirs(out)
        config = os.path.join(work, "config.json")
        with open(config, "w") as f:
            json.dump({"in_folder": "/data/osbs/chips", "out_folder": out}, f)
        run_id = "shot-1"
        registry._on_event(run_id, "Training", {"event": "started", "pid": os.getpid(),
                                                "args": ["-m", "dl_engine", "train", "--config", config]})
        with open(RECORDED, encoding="utf-8") as f:
            events = [json.loads(line) for line in f]
        fifth = next(i for i, e in enumerate(events) if e.get("event") == "metric" and e["epoch"] == 5)
        for event in events[:fifth - 2]:
            registry._on_event(run_id, "Training", event)
        QCoreApplication.processEvents()
        registry.jobs[run_id].started = time.time() - 300
        dock.select(run_id)
        dock.show()
        QCoreApplication.processEvents()
        image = dock.grab()
        image.save(out_png)
        print(out_png, image.width(), image.height(), dock.rows())
        dock.close()
        registry.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(PARENT, ignore_errors=True)
    os._exit(0)  # QGIS's own teardown may crash a script that made widgets; the picture is saved


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "docs", "images", "jobs-dock.png"))
