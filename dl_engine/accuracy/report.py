"""OUT_ACCURACY_REPORT of Compute Accuracy For Object Detection: the accuracy table, the
precision–recall curve of every class and the rules behind the figures, as one HTML file (the
figure embedded as a PNG) or a PDF.

Figures are drawn with ``matplotlib.figure.Figure`` on an Agg or PDF canvas, never through pyplot:
pyplot's global state belongs to the QGIS process we may run in.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import os
from typing import List

from .config import DETECTION_FIELDS, DetectionAccuracyConfig
from .tables import csv_value

MATCHING_RULE = (
    "Within each class, detections are taken in order of decreasing confidence. Each is matched to the "
    "ground-truth object of the same class, not matched yet, with which it has the highest intersection over "
    "union (IoU = area of intersection / area of union); the match counts when that IoU is at least MIN_IOU. "
    "A matched detection is a true positive, an unmatched detection a false positive (a second detection of an "
    "object already found too), an unmatched ground-truth object a false negative."
)
AP_DEFINITION = (
    "AP is the area under the precision–recall curve with PASCAL VOC's all-point interpolation: detections are "
    "ranked by confidence (equal confidences enter together); at each threshold recall = TP / ground-truth "
    "objects and precision = TP / detections so far; precision is made non-increasing from the right and summed "
    "over the steps in recall. The row All sums TP, FP and FN over the classes (precision, recall and F1 from "
    "these sums) and its AP is the mean AP of the classes that have ground-truth objects. A ratio whose "
    "denominator is 0 is written as 0."
)
MASK_RULE = "Only objects whose centroid lies inside the mask polygons (or on their boundary) count."


def curves_figure(accuracy, size=(6.4, 4.6)):
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    drawn = 0
    for c in accuracy.classes:
        if not c.recall_curve or not c.ground_truth:
            continue
        recall, precision = list(c.recall_curve), list(c.precision_curve)
        line, = ax.plot(recall, precision, marker="." if len(recall) < 60 else None,
                        label=f"{c.class_value} (AP {c.ap:.3f})")
        # VOC's interpolated precision (the best at this recall or beyond): AP is the area under it
        envelope = [max(precision[i:]) for i in range(len(precision))]
        ax.plot([0.0] + recall, envelope[:1] + envelope, drawstyle="steps-pre", linestyle="--", linewidth=1,
                color=line.get_color())
        drawn += 1
    ax.set_xlim(0.0, 1.02)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.set_title(f"Precision–recall curves (MIN_IOU {accuracy.min_iou:g}); dashed: interpolated")
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(loc="lower left", fontsize="small" if drawn > 6 else "medium")
    else:
        ax.text(0.5, 0.5, "no detection of a class with ground truth", ha="center", va="center")
    fig.tight_layout()
    return fig


def figure_png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def summary_lines(accuracy, config: DetectionAccuracyConfig) -> List[str]:
    lines = [
        f"Detections counted: {accuracy.detections_counted}; ground-truth objects counted: {accuracy.truths_counted}",
        f"MIN_IOU: {accuracy.min_iou:g}",
    ]
    if config.crs:
        lines.append(f"Compared in {config.crs}")
    if config.mask_wkb is not None:
        lines.append(f"MASK_FEATURES: {MASK_RULE} Left out: {accuracy.detections_masked_out} detections, "
                     f"{accuracy.truths_masked_out} ground-truth objects.")
    if accuracy.skipped:
        lines.append(f"Skipped: {accuracy.skipped} empty geometries or geometries without area")
    if not config.has_confidence:
        lines.append("The detections have no confidence field: every detection has confidence 1, so each curve is "
                     "one point and AP = precision × recall.")
    return lines


def html_report(accuracy, config: DetectionAccuracyConfig) -> str:
    rows = accuracy.rows()
    head = "".join(f"<th>{html.escape(f)}</th>" for f in DETECTION_FIELDS)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(csv_value(row[f]))}</td>" for f in DETECTION_FIELDS) + "</tr>"
        for row in rows
    )
    png = base64.b64encode(figure_png(curves_figure(accuracy))).decode("ascii")
    summary = "".join(f"<li>{html.escape(line)}</li>" for line in summary_lines(accuracy, config))
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Accuracy of the object detection</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 60em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #999; padding: 0.25em 0.6em; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
tr:last-child td {{ font-weight: bold; }}
</style></head>
<body>
<h1>Compute Accuracy For Object Detection</h1>
<p>{html.escape(stamp)}</p>
<ul>{summary}</ul>
<h2>Accuracy per class</h2>
<table><thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody></table>
<h2>Precision–recall curves</h2>
<img alt="precision-recall curves" src="data:image/png;base64,{png}">
<h2>How the figures are computed</h2>
<p>{html.escape(MATCHING_RULE)}</p>
<p>{html.escape(AP_DEFINITION)}</p>
</body></html>
"""


def table_page(accuracy, config: DetectionAccuracyConfig):
    """The PDF's first page (A4): the summary, the table and the rules."""
    import textwrap

    from matplotlib.figure import Figure

    rows = accuracy.rows()
    page = Figure(figsize=(8.27, 11.69))
    page.text(0.06, 0.96, "Compute Accuracy For Object Detection", fontsize=16, weight="bold", va="top")
    text = "\n".join(textwrap.fill(line, 100) for line in summary_lines(accuracy, config))
    page.text(0.06, 0.92, text, fontsize=8.5, va="top")
    height = min(0.5, 0.03 * (len(rows) + 1))
    ax = page.add_axes([0.06, 0.82 - height, 0.88, height])
    ax.axis("off")
    table = ax.table(cellText=[[csv_value(r[f]) for f in DETECTION_FIELDS] for r in rows],
                     colLabels=[f.replace("_", " ") for f in DETECTION_FIELDS], loc="upper center", bbox=[0, 0, 1, 1])
    table.auto_set_font_size(False)
    table.set_fontsize(7.5)
    rules = "\n\n".join(textwrap.fill(t, 110) for t in (MATCHING_RULE, AP_DEFINITION))
    page.text(0.06, 0.80 - height, rules, fontsize=8, va="top")
    return page


def write_pdf(path: str, accuracy, config: DetectionAccuracyConfig) -> None:
    from matplotlib.backends.backend_pdf import FigureCanvasPdf, PdfPages

    with PdfPages(path) as pdf:
        for figure in (table_page(accuracy, config), curves_figure(accuracy, size=(8.27, 6.0))):
            FigureCanvasPdf(figure)
            pdf.savefig(figure)


def write_detection_report(path: str, accuracy, config: DetectionAccuracyConfig) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if os.path.splitext(path)[1].lower() == ".pdf":
        write_pdf(path, accuracy, config)
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write(html_report(accuracy, config))
    return path

