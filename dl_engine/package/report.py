"""What a person reads about a trained model (esri-formats.md §3): the loss graph, sample
results, model_metrics.html and training_validation_loss.json.

Figures are drawn with ``matplotlib.figure.Figure`` on an Agg canvas, never through pyplot:
pyplot's global state (backend, open figures) belongs to the QGIS process we may run in.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .record import SampleResult, TrainedModel

MAX_SAMPLE_ROWS = 8
OVERLAY_ALPHA = 0.5  # class colour over the image in show_results


# ---- figures ------------------------------------------------------------------------------------

def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def best_index(history: Sequence[Dict[str, Any]], best_epoch: Optional[int]) -> Optional[int]:
    """Position in ``history`` of the kept epoch: the entry whose "epoch" is ``best_epoch``,
    else ``best_epoch`` taken as a position."""
    if best_epoch is None:
        return None
    for i, h in enumerate(history):
        if h.get("epoch") == best_epoch:
            return i
    return best_epoch if 0 <= best_epoch < len(history) else None


def loss_graph_png(history: Sequence[Dict[str, Any]], best: Optional[int] = None) -> bytes:
    """Training and validation loss per epoch (numbered from 1, as the log shows them);
    ``best``: position of the kept epoch, marked with a dashed line."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    epochs = list(range(1, len(history) + 1))
    for key, label in (("train_loss", "Training loss"), ("valid_loss", "Validation loss")):
        ys = [_num(h.get(key)) for h in history]
        if any(y is not None for y in ys):
            ax.plot(epochs, [np.nan if y is None else y for y in ys], marker="o", markersize=3, label=label)
    if best is not None:
        ax.axvline(best + 1, color="grey", linestyle="--", linewidth=1, label="Kept model")
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Loss")
    ax.set_title("Training and validation loss")
    if epochs:
        ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def palette(class_map, emd_classes: List[dict]) -> np.ndarray:
    """(num_classes, 3) uint8 colour of each training index; background black."""
    colors = np.zeros((max(class_map.num_classes, 1), 3), np.uint8)
    for i, c in enumerate(emd_classes):
        index = i + class_map.offset
        if index < len(colors) and all(0 <= v <= 255 for v in c["Color"]):
            colors[index] = c["Color"]
    return colors


def _overlay(image: np.ndarray, indices: np.ndarray, colors: np.ndarray, background: bool) -> np.ndarray:
    idx = np.asarray(indices, np.int64)
    painted = (idx >= (1 if background else 0)) & (idx < len(colors))  # ignored pixels (e.g. 255) unpainted
    out = image.astype(np.float32)
    out[painted] = (1 - OVERLAY_ALPHA) * out[painted] + OVERLAY_ALPHA * colors[idx[painted]]
    return out.astype(np.uint8)


def show_results_png(samples: Sequence[SampleResult], class_map, emd_classes: List[dict]) -> Optional[bytes]:
    """Rows of image | ground truth | prediction, the classes in their colours; None without samples."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    samples = list(samples)[:MAX_SAMPLE_ROWS]
    if not samples:
        return None
    colors = palette(class_map, emd_classes)
    rows = len(samples)
    top, bottom = 0.4, 0.5  # inches kept for the titles and the legend
    height = 3 * rows + top + bottom
    fig = Figure(figsize=(9, height), dpi=100)
    fig.subplots_adjust(left=0.02, right=0.98, top=1 - top / height, bottom=bottom / height, wspace=0.05,
                        hspace=0.08)
    axes = fig.subplots(rows, 3, squeeze=False)
    for row, s in enumerate(samples):
        image = _rgb(s.image)
        panels = (image, _overlay(image, s.truth, colors, class_map.background),
                  _overlay(image, s.prediction, colors, class_map.background))
        for col, (ax, panel) in enumerate(zip(axes[row], panels)):
            ax.imshow(panel, interpolation="nearest")
            ax.set_axis_off()
            if row == 0:
                ax.set_title(("Image", "Ground truth", "Prediction")[col])
    handles = [Patch(color=np.asarray(c["Color"]) / 255.0, label=c["Name"]) for c in emd_classes
               if all(0 <= v <= 255 for v in c["Color"])]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False)
    return _png(fig)


def _rgb(image: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8 for display; a single band becomes grey."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return np.clip(a[:, :, :3], 0, 255).astype(np.uint8)


# ---- training_validation_loss.json ---------------------------------------------------------------

def hms(seconds: Optional[float]) -> str:
    s = int(round(float(seconds or 0)))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def training_validation_loss(history: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """The newer Pro file: losses as strings, metrics as numbers, epoch time as HH:MM:SS;
    epochs numbered from 0 as Pro does."""
    rows = []
    for i, h in enumerate(history):
        row: Dict[str, Any] = {"epoch": i}
        for key, out in (("train_loss", "training_loss"), ("valid_loss", "validation_loss")):
            if _num(h.get(key)) is not None:
                row[out] = str(float(h[key]))
        for key, out in (("accuracy", "accuracy"), ("dice", "Dice")):
            if _num(h.get(key)) is not None:
                row[out] = float(h[key])
        row["time"] = hms(h.get("seconds"))
        rows.append(row)
    return {"training_validation_loss_per_epoch": rows}


# ---- model_metrics.html -------------------------------------------------------------------------

_STYLE = ("body{font-family:sans-serif;margin:1.5em;max-width:60em}"
          "table{border-collapse:collapse;margin-bottom:1em}"
          "td,th{border:1px solid #bbb;padding:3px 8px;text-align:left}th{background:#eee}"
          "img{max-width:100%}")


def model_metrics_html(record: TrainedModel, emd: Dict[str, Any], loss_png: Optional[bytes],
                       results_png: Optional[bytes]) -> str:
    """model_metrics.html as arcgis.learn lays it out; every text escaped, images inline."""
    e = html.escape
    m = record.metrics or {}
    parts = [
        "<!DOCTYPE html>", "<html>", "<head>", '<meta charset="utf-8">',
        f"<title>{e(record.name)} - model metrics</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
        f"<p><b> {e(str(emd.get('ModelName', record.model_type)))} </b></p>",
        f"<p><b>Backbone:</b> {e(str(record.backbone))}</p>",
        f"<p><b>Learning Rate:</b> {e(str(emd.get('LearningRate')))}</p>",
        "<p><b>Settings</b></p>", _table(("Setting", "Value"), _settings_rows(record, emd)),
    ]
    if loss_png:
        parts += ["<p><b>Training and Validation loss</b></p>", _img(loss_png, "Training and validation loss")]
    parts += ["<p><b>Analysis of the model</b></p>", _table(("Metric", "Value"), _summary_rows(record))]
    per_class = m.get("per_class") or {}
    if per_class:
        rows = []
        for name in record.class_map.names:
            v = per_class.get(name)
            if v is not None:
                rows.append([name] + [_fmt(v.get(k)) for k in ("precision", "recall", "f1", "iou")])
        parts += ["<p><b>Per class metrics</b></p>", _table(("Class", "Precision", "Recall", "F1", "IoU"), rows)]
    if results_png:
        parts += ["<p><b>Sample Results</b></p>", _img(results_png, "Sample results")]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _settings_rows(record: TrainedModel, emd: Dict[str, Any]) -> List[List[str]]:
    rows = [["Model type", record.model_type], ["Backbone", f"{record.backbone_keyword} ({record.backbone})"],
            ["Pretrained backbone weights", "yes" if record.pretrained_loaded else "no"],
            ["Metadata format", record.data.metadata_format],
            ["Training data", "; ".join(record.data.paths)],
            ["Classes", ", ".join(c["Name"] for c in emd.get("Classes", []))],
            ["Bands used", str(emd.get("ExtractBands"))],
            ["Chip size", str(record.chip_size)], ["Resize to", str(record.resize_to)],
            ["Model arguments", _text(record.arguments)],
            ["Monitored metric", record.monitor], ["Kept epoch", _kept(record)]]
    skip = {"in_folder", "out_folder", "arguments"}
    rows += [[k, _text(v)] for k, v in (record.settings or {}).items() if k not in skip]
    return rows


def _kept(record: TrainedModel) -> str:
    i = best_index(record.history, record.best_epoch)
    return "" if i is None else f"{i + 1} of {len(record.history)}"


def _summary_rows(record: TrainedModel) -> List[List[str]]:
    m = record.metrics or {}
    rows = []
    for key, label in (("accuracy", "Accuracy"), ("miou", "mIoU"), ("dice", "Dice"),
                       ("valid_loss", "Validation loss")):
        if _num(m.get(key)) is not None:
            rows.append([label, _fmt(m[key])])
    if record.best_value is not None:
        rows.append([f"Best {record.monitor.lower()}", _fmt(record.best_value)])
    return rows


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    e = html.escape
    out = ["<table>", "<tr>" + "".join(f"<th>{e(str(h))}</th>" for h in header) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows]
    out.append("</table>")
    return "\n".join(out)


def _img(png: bytes, alt: str) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}" alt="{html.escape(alt)}">'


def _num(v) -> Optional[float]:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def _fmt(v) -> str:
    f = _num(v)
    return "" if f is None else f"{f:.4f}"


def _text(v) -> str:
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, default=str)
    return str(v)
