"""The leaderboard: every trial ranked by the ranking metric (failed trials last), as a CSV
and as a section of the best model's model_metrics.html."""

from __future__ import annotations

import csv
import html
import io
import os
from typing import Any, Dict, List, Sequence

from .trial import TrialRecord

COLUMNS = ("rank", "trial", "phase", "network", "model_type", "backbone", "learning_rate", "batch_size",
           "augmentation", "metric", "value", "valid_loss", "epochs", "best_epoch", "seconds", "status", "package",
           "message")


def ranked(records: Sequence[TrialRecord]) -> List[TrialRecord]:
    """Best first: the highest metric; trials without a value, then failed and skipped ones, last."""
    def key(r: TrialRecord):
        return (not r.trained, r.value is None, -(r.value or 0.0), r.number)
    return sorted(records, key=key)


def rows(records: Sequence[TrialRecord], monitor: str) -> List[Dict[str, Any]]:
    out = []
    for rank, r in enumerate(ranked(records), 1):
        s = r.spec
        out.append({
            "rank": rank if r.trained else "", "trial": r.name, "phase": s.phase,
            "network": r.model_name, "model_type": s.network, "backbone": s.backbone,
            "learning_rate": _round(r.learning_rate or s.learning_rate, 6), "batch_size": r.batch_size or "",
            "augmentation": s.augmentation, "metric": monitor.lower(), "value": _round(r.value, 4),
            "valid_loss": _round(r.valid_loss, 4), "epochs": r.epochs, "best_epoch": r.best_epoch or "",
            "seconds": round(r.seconds, 1), "status": r.status, "package": r.dlpk or "", "message": r.message})
    return out


def write_csv(path: str, table: List[Dict[str, Any]]) -> None:
    """Written to a temporary name and moved into place."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    tmp = f"{path}.partial-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(buffer.getvalue())
    os.replace(tmp, path)


def read_csv(path: str) -> List[Dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


SHOWN = ("rank", "network", "backbone", "learning_rate", "batch_size", "augmentation", "value", "valid_loss",
         "epochs", "seconds", "status")


def html_section(table: List[Dict[str, Any]], monitor: str, mode: str, hours: float) -> str:
    e = html.escape
    head = "".join(f"<th>{e(monitor.lower() if c == 'value' else c.replace('_', ' '))}</th>" for c in SHOWN)
    body = "".join("<tr>" + "".join(f"<td>{e(str(row[c]))}</td>" for c in SHOWN) + "</tr>" for row in table)
    return (f'<div id="autodl"><p><b>AutoDL leaderboard</b></p>'
            f"<p>Mode {e(mode)}, time limit {hours:g} h, {len(table)} trials ranked by {e(monitor.lower())} "
            f"on the validation chips; this package is rank 1.</p>"
            f'<table border="1" cellspacing="0" cellpadding="3"><tr>{head}</tr>{body}</table></div>')


def _round(value, digits: int):
    return "" if value is None else round(float(value), digits)
