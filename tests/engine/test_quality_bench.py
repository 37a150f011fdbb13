"""benchmarks/quality_bench.py --quick runs end to end (export, Train Deep Learning Model with its
defaults from pretrained and random weights, the plain recipe, Classify Pixels on the held-out
part, Compute Accuracy) and prints its table of held-out IoU."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.heavy
@pytest.mark.trains
def test_quick_bench_prints_the_table():
    env = {**os.environ, "DLT_WEIGHTS_OFFLINE": "1"}
    p = subprocess.run([sys.executable, str(REPO / "benchmarks" / "quality_bench.py"), "--quick", "--seconds", "6",
                        "--json", "quality_bench_smoke.json"],
                       capture_output=True, text=True, timeout=600, env=env, cwd=str(REPO))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    out = p.stdout
    assert "held-out IoU of the foreground class" in out
    rows = {}
    for run, weights, iou in re.findall(r"^  (defaults|plain)\s+(ImageNet|random)\s+([0-9.]+)", out, re.M):
        rows[(run, weights)] = float(iou)
    assert set(rows) == {("defaults", "ImageNet"), ("defaults", "random"), ("plain", "ImageNet"), ("plain", "random")}
    assert all(0.0 <= v <= 1.0 for v in rows.values())
    assert re.search(r"defaults\s+ImageNet .* x plain ImageNet", out)
    assert "pretrained / random (defaults)" in out or rows[("defaults", "random")] == 0.0
