"""The accuracy tools' tables as rows (dicts keyed by field name, in field order) and their CSV
form. Standard library only.

Ratios whose denominator is 0 (precision without detections, recall without ground truth, a
class absent on both sides) are written as 0, as scikit-learn's ``zero_division=0`` does; ratios
are rounded to 6 decimals.
"""

from __future__ import annotations

import csv
import os
from typing import Any, Dict, Iterable, Sequence

DECIMALS = 6


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, 0 when the denominator is 0."""
    return float(numerator) / float(denominator) if denominator else 0.0


def rounded(value: float) -> float:
    return round(float(value), DECIMALS) + 0.0  # + 0.0: no "-0.0"


def csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.{DECIMALS}f}".rstrip("0").rstrip(".")
    return str(value)


def write_csv(path: str, fields: Sequence[str], rows: Iterable[Dict[str, Any]]) -> str:
    """Write ``rows`` (dicts keyed by ``fields``) as a comma-separated UTF-8 file with a header."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        for row in rows:
            writer.writerow([csv_value(row.get(name)) for name in fields])
    return path


def rows_text(fields: Sequence[str], rows: Iterable[Dict[str, Any]]) -> str:
    """A plain-text table, columns aligned (the log, the demo)."""
    cells = [list(fields)] + [[csv_value(r.get(f)) for f in fields] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(fields))]
    return "\n".join("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths)))
                     for row in cells)
