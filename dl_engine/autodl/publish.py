"""Puts the best trial's package at OUT_MODEL: its files plus the leaderboard (leaderboard.csv
and a section in model_metrics.html), zipped under a temporary name and moved into place, so
OUT_MODEL is always a whole package: the best so far while the search runs, the best of all
at the end."""

from __future__ import annotations

import os
import shutil
from typing import Any, Dict, List

from ..package.writer import write_dlpk
from .leaderboard import html_section, write_csv
from .plan import Plan
from .trial import TrialRecord

METRICS_HTML = "model_metrics.html"
LEADERBOARD_IN_PACKAGE = "leaderboard.csv"
SKIPPED = ("checkpoint", "tensorboard")  # working folders, not part of a package


def publish_best(best: TrialRecord, plan: Plan, table: List[Dict[str, Any]], work: str) -> str:
    staging = os.path.join(work, f".publish-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    try:
        files = _stage(best.folder, staging)
        write_csv(os.path.join(staging, LEADERBOARD_IN_PACKAGE), table)
        files.append(LEADERBOARD_IN_PACKAGE)
        _add_section(os.path.join(staging, METRICS_HTML),
                     html_section(table, plan.monitor, plan.config.autodl_mode, plan.config.total_time_limit))
        write_dlpk(staging, files, "best.dlpk")
        os.makedirs(os.path.dirname(plan.out_model), exist_ok=True)
        tmp = f"{plan.out_model}.partial-{os.getpid()}"
        shutil.move(os.path.join(staging, "best.dlpk"), tmp)
        os.replace(tmp, plan.out_model)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return plan.out_model


def _stage(folder: str, staging: str) -> List[str]:
    """Links (or copies) the package's files into ``staging``; their paths, "/"-separated."""
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not (root == folder and d in SKIPPED) and not d.startswith(".")]
        for name in names:
            if name.lower().endswith(".dlpk") or name.startswith("."):
                continue
            src = os.path.join(root, name)
            rel = os.path.relpath(src, folder).replace(os.sep, "/")
            dst = os.path.join(staging, *rel.split("/"))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            if name == METRICS_HTML:
                shutil.copyfile(src, dst)  # edited below: never through a link to the trial's own file
            else:
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
            files.append(rel)
    return sorted(files)


def _add_section(path: str, section: str) -> None:
    text = ""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
    marker = "</body>"
    text = text.replace(marker, section + "\n" + marker, 1) if marker in text else text + section
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)

