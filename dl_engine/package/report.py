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


def loss_graph_figure(history: Sequence[Dict[str, Any]], best: Optional[int] = None):
    """Training and validation loss per epoch (numbered from 1, as the log shows them, on
    whole-number ticks); ``best``: position of the kept epoch, marked with a dashed line."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6.4, 4.2), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    epochs = list(range(1, len(history) + 1))
    for key, label in (("train_loss", "Training loss"), ("valid_loss", "Validation loss")):
        ys = [_num(h.get(key)) for h in history]
        if any(y is not None for y in ys):
            ax.plot(epochs, [np.nan if y is None else y for y in ys], marker="o", markersize=3, label=label)
    if best is not None:
        ax.axvline(best + 1, color="grey", linestyle="--", linewidth=1, label="Kept model")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # epochs are whole numbers
    if len(epochs) == 1:
        ax.set_xlim(0.5, 1.5)
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Loss")
    ax.set_title("Training and validation loss")
    if epochs:
        ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def loss_graph_png(history: Sequence[Dict[str, Any]], best: Optional[int] = None) -> bytes:
    return _png(loss_graph_figure(history, best))


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
    if samples[0].truth_label is not None:  # object classifiers: chips with class names
        return label_results_png(samples)
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
        panels = (image, image if s.truth is None else _overlay(image, s.truth, colors, class_map.background),
                  image if s.prediction is None else _overlay(image, s.prediction, colors, class_map.background))
        for col, (ax, panel) in enumerate(zip(axes[row], panels)):
            ax.imshow(panel, interpolation="nearest")
            ax.set_axis_off()
            if col == 1:  # detectors: the boxes over the image
                _draw_boxes(ax, s.truth_boxes, s.truth_box_classes, None, colors)
            elif col == 2:
                _draw_boxes(ax, s.predicted_boxes, s.predicted_box_classes, s.predicted_box_scores, colors)
            if row == 0:
                ax.set_title(("Image", "Ground truth", "Prediction")[col])
    handles = [Patch(color=np.asarray(c["Color"]) / 255.0, label=c["Name"]) for c in emd_classes
               if all(0 <= v <= 255 for v in c["Color"])]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False)
    return _png(fig)


def _draw_boxes(ax, boxes, classes, scores, colors: np.ndarray) -> None:
    """Rectangles (xmin, ymin, xmax, ymax in pixels) in their class colours, with the score."""
    from matplotlib.patches import Rectangle

    if boxes is None:
        return
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    classes = np.zeros(len(boxes), np.int64) if classes is None else np.asarray(classes, np.int64).reshape(-1)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        c = int(classes[i]) if i < len(classes) else 0
        rgb = colors[c] if 0 <= c < len(colors) and colors[c].any() else np.array([255, 255, 0])
        color = tuple(float(v) / 255.0 for v in rgb)
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=1.5))
        if scores is not None and i < len(scores):
            ax.text(x0, y0 - 1, f"{float(scores[i]):.2f}", color=color, fontsize=7, va="bottom")


LABEL_COLUMNS = 4


def label_results_png(samples: Sequence[SampleResult]) -> Optional[bytes]:
    """Object classifiers' show_results: a grid of chips, each titled with its true and its
    predicted class (green when right, red when wrong)."""
    from matplotlib.figure import Figure

    samples = list(samples)[:MAX_SAMPLE_ROWS]
    if not samples:
        return None
    cols = min(LABEL_COLUMNS, len(samples))
    rows = -(-len(samples) // cols)
    title, panel = 0.6, 2.6  # inches: two lines of title above each chip
    height = rows * (title + panel) + 0.1
    fig = Figure(figsize=(2.8 * cols, height), dpi=100)
    fig.subplots_adjust(left=0.02, right=0.98, top=1 - title / height, bottom=0.1 / height, wspace=0.08,
                        hspace=title / panel)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, s in zip(axes.ravel(), samples):
        ax.imshow(_rgb(s.image), interpolation="nearest")
        score = "" if s.score is None else f" ({float(s.score):.2f})"
        color = "black" if s.correct is None else ("tab:green" if s.correct else "tab:red")
        ax.set_title(f"truth: {s.truth_label}\npredicted: {s.predicted_label}{score}", fontsize=9, color=color)
    return _png(fig)


def confusion_matrix_png(record: TrainedModel) -> Optional[bytes]:
    """ModelCharacteristics/confusion_matrix.png of an object classifier (None for other
    models): rows truth, columns prediction, counts of validation chips; multi-label: one
    2 x 2 matrix (absent/present) per class."""
    from matplotlib.figure import Figure

    m = (record.metrics or {}).get("confusion_matrix")
    if m is None:
        return None
    matrix = np.asarray(m, np.int64)
    names = list(record.class_map.names)
    if matrix.ndim == 3:  # multi-label: per class [[TN, FP], [FN, TP]]
        k = len(matrix)
        cols = min(4, k)
        rows = -(-k // cols)
        fig = Figure(figsize=(2.6 * cols, 2.6 * rows + 0.4), dpi=100)
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax in axes.ravel():
            ax.set_axis_off()
        for ax, name, cm in zip(axes.ravel(), names, matrix):
            ax.set_axis_on()
            _matrix_axes(ax, cm, ["absent", "present"], ["absent", "present"], fontsize=8)
            ax.set_title(name, fontsize=9)
        fig.suptitle("Confusion matrix per class (rows: truth, columns: prediction)", fontsize=10)
        fig.tight_layout()
        return _png(fig)
    k = len(matrix)
    side = max(4.0, min(16.0, 1.0 + 0.6 * k))
    fig = Figure(figsize=(side + 1.0, side), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    _matrix_axes(ax, matrix, names[:k], names[:k], fontsize=max(5, 10 - k // 6))
    ax.set_xlabel("Predicted")
    ax.set_ylabel("Actual")
    ax.set_title("Confusion matrix")
    fig.tight_layout()
    return _png(fig)


def _matrix_axes(ax, matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], fontsize: int = 9) -> None:
    """A count matrix drawn as a heat map (colour by row share), the counts written in."""
    matrix = np.asarray(matrix, np.int64)
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols, rotation=45 if len(cols) > 3 else 0, ha="right" if len(cols) > 3 else "center",
                       fontsize=fontsize)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(rows, fontsize=fontsize)
    if matrix.size <= 900:
        for (r, c), v in np.ndenumerate(matrix):
            ax.text(c, r, str(int(v)), ha="center", va="center", fontsize=fontsize,
                    color="white" if share[r, c] > 0.5 else "black")


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
        for key, out in (("accuracy", "accuracy"), ("dice", "Dice"), ("average_precision", "average_precision")):
            if _num(h.get(key)) is not None:
                row[out] = float(h[key])
        row["time"] = hms(h.get("seconds"))
        rows.append(row)
    return {"training_validation_loss_per_epoch": rows}


# ---- model_metrics.html -------------------------------------------------------------------------

_STYLE = ("body{font-family:sans-serif;margin:1.5em;max-width:60em}"
          "table{border-collapse:collapse;margin-bottom:1em}"
          "td,th{border:1px solid #bbb;padding:3px 8px;text-align:left}th{background:#eee}"
          ".settings td{max-width:24em;overflow-wrap:anywhere}.settings td:nth-child(2){overflow-wrap:normal}"
          "img{max-width:100%}"
          ".warning{background:#fff3cd;border:1px solid #e0b000;padding:6px 10px;margin:0.5em 0}")


def model_metrics_html(record: TrainedModel, emd: Dict[str, Any], loss_png: Optional[bytes],
                       results_png: Optional[bytes], confusion_png: Optional[bytes] = None) -> str:
    """model_metrics.html as arcgis.learn lays it out; every text escaped, images inline."""
    e = html.escape
    m = record.metrics or {}
    parts = [
        "<!DOCTYPE html>", "<html>", "<head>", '<meta charset="utf-8">',
        f"<title>{e(record.name)} - model metrics</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
        f"<p><b> {e(str(emd.get('ModelName', record.model_type)))} </b></p>",
        f"<p><b>Backbone:</b> {e(str(record.backbone))}</p>",
        f"<p><b>Learning Rate:</b> {e(str(emd.get('LearningRate')))}</p>",
    ]
    parts += [f'<div class="warning" id="{e(key)}"><b>Warning:</b> {e(text)}</div>'
              for key, text in warnings(record)]
    parts += ["<p><b>Settings</b></p>",
              _table(("Setting", "Parameter", "Value", "In this run"), settings_rows(record, emd), "settings")]
    if loss_png:
        parts += ["<p><b>Training and Validation loss</b></p>", _img(loss_png, "Training and validation loss")]
    parts += ["<p><b>Analysis of the model</b></p>", _table(("Metric", "Value"), _summary_rows(record))]
    per_class = m.get("per_class") or {}
    if per_class and any(isinstance(v, dict) and "average_precision" in v for v in per_class.values()):  # detectors
        rows = [[name, _fmt(v.get("average_precision")), _fmt(v.get("coco_ap")), str(v.get("objects", ""))]
                for name, v in per_class.items() if isinstance(v, dict)]
        parts += ["<p><b>Average precision per class</b></p>",
                  _table(("Class", "Average precision (IoU 0.5)", "AP (IoU 0.5:0.95)", "Validation objects"), rows)]
    elif per_class:
        rows = []
        for name in record.class_map.names:
            v = per_class.get(name)
            if v is not None:
                rows.append([name] + [_fmt(v.get(k)) for k in ("precision", "recall", "f1", "iou")])
        parts += ["<p><b>Per class metrics</b></p>", _table(("Class", "Precision", "Recall", "F1", "IoU"), rows)]
    if confusion_png:  # object classifiers
        parts += ["<p><b>Confusion matrix</b></p>", _img(confusion_png, "Confusion matrix")]
    if results_png:
        parts += ["<p><b>Sample Results</b></p>", _img(results_png, "Sample results")]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


# The training parameters in the tool's order: (key of TrainConfig / the settings, arcpy name, label).
PARAMETERS = (
    ("in_folder", "IN_FOLDER", "Training data"), ("model_type", "MODEL_TYPE", "Model type"),
    ("backbone", "BACKBONE_MODEL", "Backbone"), ("pretrained_model", "PRETRAINED_MODEL", "Pretrained model"),
    ("max_epochs", "MAX_EPOCHS", "Maximum epochs"), ("batch_size", "BATCH_SIZE", "Batch size"),
    ("learning_rate", "LEARNING_RATE", "Learning rate"),
    ("validation_percentage", "VALIDATION_PERCENTAGE", "Validation percentage"),
    ("stop_training", "STOP_TRAINING", "Stop when the model stops improving"),
    ("freeze", "FREEZE", "Freeze backbone"), ("augmentation", "AUGMENTATION", "Data augmentation"),
    ("augmentation_parameters", "AUGMENTATION_PARAMETERS", "Augmentation parameters"),
    ("chip_size", "CHIP_SIZE", "Chip size"), ("resize_to", "RESIZE_TO", "Resize to"),
    ("weight_init_scheme", "WEIGHT_INIT_SCHEME", "Weight initialization scheme"),
    ("monitor", "MONITOR", "Monitor metric"), ("arguments", "ARGUMENTS", "Model arguments"),
    ("tensorboard", "TENSORBOARD", "TensorBoard logs"), ("device", "DEVICE", "Device"),
)
# Engine settings without an arcpy parameter, shown together in one row when they were set.
ENGINE_SETTINGS = ("precision", "seed", "patience", "num_workers", "max_steps", "auto_batch_size")
NOT_SHOWN = {"out_folder", "write_dlpk", "extra", "run"}  # where the report is; internal
STOP_REASONS = {"early_stopping": "stopped early: {monitor} stopped improving",
                "time_limit": "stopped at the time limit", "stopped": "stopped on request",
                "pruned": "stopped: it trailed other trials (AutoDL)"}
MIN_VALID_CHIPS = 20  # fewer validation chips: the metrics are too noisy to trust
MIN_FOREGROUND = 0.01  # less of the validation pixels in foreground classes: accuracy says little


def settings_rows(record: TrainedModel, emd: Dict[str, Any]) -> List[List[str]]:
    """One row per setting: its label, its arcpy parameter name, the value given and what it
    did in this run (the outcome the run recorded in ``settings["run"]``)."""
    given = dict(record.settings or {})
    given.setdefault("in_folder", "; ".join(getattr(record.data, "paths", []) or []))
    given.setdefault("model_type", record.model_type)
    given.setdefault("backbone", record.backbone_keyword)
    run = dict(given.get("run") or {})
    happened = _outcomes(record, emd, given, run)
    rows = []
    for key, parameter, label in PARAMETERS:
        if key not in given and key not in happened:
            continue
        rows.append([label, parameter, _given(given.get(key)), happened.get(key, "")])
    engine = [f"{k} {_given(given[k])}" for k in ENGINE_SETTINGS if given.get(k) not in (None, False, "")]
    if engine:
        rows.append(["Engine settings", "", ", ".join(engine), ""])
    known = {k for k, _, _ in PARAMETERS} | set(ENGINE_SETTINGS) | NOT_SHOWN
    rows += [[k, "", _text(v), ""] for k, v in given.items() if k not in known]
    return rows


def _outcomes(record: TrainedModel, emd: Dict[str, Any], given: Dict[str, Any], run: Dict[str, Any]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    valid, train = run.get("valid_chips"), run.get("train_chips")
    fmt = getattr(record.data, "metadata_format", "")
    chips = f"{train} training and {valid} validation chips" if valid is not None and train is not None else ""
    out["in_folder"] = ", ".join(x for x in (fmt and f"{fmt} export", chips) if x)
    out["model_type"] = str(emd.get("ModelName") or record.model_type)
    out["backbone"] = f"{record.backbone}; started from {emd.get('PretrainedWeights') or record.pretrained_weights or ('pretrained weights' if record.pretrained_loaded else 'random weights')}"
    if given.get("pretrained_model"):
        out["pretrained_model"] = "fine-tuned from it"
    epochs_run = run.get("epochs_run", len(record.history))
    stop = STOP_REASONS.get(str(run.get("stop_reason") or ""), "")
    out["max_epochs"] = f"{epochs_run} ran" + (f"; {stop.format(monitor=record.monitor.lower())}" if stop else "")
    used_batch = run.get("batch_size")
    if used_batch is not None and used_batch != given.get("batch_size"):
        out["batch_size"] = f"{used_batch} (what fits the device)" if given.get("auto_batch_size") else str(used_batch)
    if given.get("learning_rate") in (None, ""):
        out["learning_rate"] = f"{record.learning_rate:.2e}, chosen by the learning-rate finder"
    if valid is not None and train is not None:
        out["validation_percentage"] = f"{valid} of {valid + train} chips held out for validation"
    if given.get("stop_training"):
        out["stop_training"] = ("stopped early" if run.get("stop_reason") == "early_stopping"
                                else "not triggered")
    if given.get("freeze"):
        frozen = int(run.get("freeze_epochs") or 0)
        out["freeze"] = (f"backbone frozen for the first {frozen} epoch(s), then trained at a tenth of the rate"
                         if frozen else "ignored: the backbone started from random weights, so nothing was frozen")
    if given.get("chip_size") in (None, ""):
        out["chip_size"] = f"{record.chip_size} px (the export's tile size)"
    kept = _kept(record)
    if kept:
        best = f"; {record.monitor.lower()} {_fmt(record.best_value)}" if _num(record.best_value) is not None else ""
        out["monitor"] = f"kept epoch {kept}{best}"
    effective = {k: v for k, v in (record.arguments or {}).items() if v not in (None, False, [], "")}
    if effective:  # as ARGUMENTS would give them
        out["arguments"] = "in effect: " + ";".join(f"{k} {_text(v)}" for k, v in effective.items())
    if run.get("device"):
        out["device"] = str(run["device"])
    return out


def warnings(record: TrainedModel) -> List[Any]:
    """(id, text) of what makes the metrics below hard to trust or the model useless."""
    out = []
    m = record.metrics or {}
    run = dict((record.settings or {}).get("run") or {})
    if m.get("learned_nothing"):
        out.append(("learned_nothing", f"the model learned nothing: {m.get('learned_nothing_reason') or 'see the log'}"))
    valid = run.get("valid_chips")
    if isinstance(valid, int) and valid < MIN_VALID_CHIPS:
        out.append(("few_validation_chips",
                    f"only {valid} validation chip(s): too few to trust the metrics below (they can swing widely "
                    f"from one chip to the next). Export more chips or raise VALIDATION_PERCENTAGE to have at "
                    f"least {MIN_VALID_CHIPS}."))
    share = _num(m.get("foreground_share"))
    if share is not None and share < MIN_FOREGROUND:
        out.append(("little_foreground",
                    f"the classes to find cover only {share:.2%} of the validation pixels (less than "
                    f"{MIN_FOREGROUND:.0%}): accuracy mostly measures the background. Judge the model by the per "
                    f"class IoU, or export chips where the objects are (OUTPUT_NOFEATURE_TILES off)."))
    return out


def _given(value) -> str:
    if value is None or value == "":
        return "(empty)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return _text(value)


def _kept(record: TrainedModel) -> str:
    i = best_index(record.history, record.best_epoch)
    return "" if i is None else f"{i + 1} of {len(record.history)}"


def _summary_rows(record: TrainedModel) -> List[List[str]]:
    m = record.metrics or {}
    rows = []
    for key, label in (("accuracy", "Accuracy"), ("miou", "mIoU"), ("dice", "Dice"),
                       ("average_precision", "Average precision (IoU 0.5)"), ("coco_map", "mAP (IoU 0.5:0.95)"),
                       ("valid_loss", "Validation loss")):
        if _num(m.get(key)) is not None:
            rows.append([label, _fmt(m[key])])
    if m.get("confusion_matrix") is not None:  # object classifiers
        for key, label in (("label_accuracy", "Label accuracy (per class decision)"), ("f1", "F1 (macro)")):
            if _num(m.get(key)) is not None:
                rows.append([label, _fmt(m[key])])
    if record.best_value is not None:
        rows.append([f"Best {record.monitor.lower()}", _fmt(record.best_value)])
    return rows


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], css_class: str = "") -> str:
    e = html.escape
    out = [f'<table class="{e(css_class)}">' if css_class else "<table>", "<tr>" + "".join(f"<th>{e(str(h))}</th>" for h in header) + "</tr>"]
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
