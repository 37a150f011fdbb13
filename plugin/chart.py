"""A small line chart painted with QPainter: the jobs dock's losses and metric per epoch.

QGIS 3.22's PyQt5 has no QtChart module on every platform (Debian's has none) and matplotlib is
not always installed with QGIS, so the chart draws itself: whole-number epochs on the x axis, the
losses on the left axis, the monitored metric (a 0-1 value) on its own right axis, a legend.
Values that are not finite numbers are left out, never drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from qgis.PyQt.QtCore import QPointF, QRectF, QSize, Qt
from qgis.PyQt.QtGui import QColor, QPainter, QPainterPath, QPalette, QPen
from qgis.PyQt.QtWidgets import QSizePolicy, QWidget

LEFT, RIGHT = "left", "right"
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")  # matplotlib's first colours


@dataclass
class Series:
    name: str
    points: List[Tuple[float, float]] = field(default_factory=list)
    color: str = COLORS[0]
    axis: str = LEFT  # RIGHT: its own scale, drawn on the right


def _clean(points: Sequence[Tuple[float, float]]) -> List[Tuple[float, float]]:
    kept = []
    for x, y in points:
        try:
            x, y = float(x), float(y)
        except (TypeError, ValueError):
            continue
        if math.isfinite(x) and math.isfinite(y):
            kept.append((x, y))
    return sorted(kept)


def nice_ticks(low: float, high: float, count: int = 5) -> List[float]:
    """About ``count`` round values from at most ``low`` to at least ``high`` (1, 2, 2.5 or 5 times a power
    of ten apart)."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low]
    raw = (high - low) / max(1, count - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    ticks = [math.floor(low / step) * step]
    while ticks[-1] < high - step * 1e-9 and len(ticks) < 3 * count:
        ticks.append(ticks[0] + len(ticks) * step)
    return [round(t, 12) for t in ticks]


def epoch_ticks(low: float, high: float, count: int = 8) -> List[int]:
    """Whole numbers from ``low`` to ``high``, at most about ``count`` of them."""
    low, high = int(math.floor(low)), int(math.ceil(high))
    step = max(1, int(math.ceil((high - low + 1) / count)))
    return list(range(low, high + 1, step))


def _label(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


class LineChart(QWidget):
    """Lines over whole-number x values (epochs). ``set_series`` replaces what is drawn;
    ``series()`` says what is drawn (name -> points), so tests can read the chart's data."""

    MARGIN = 8

    def __init__(self, parent: Optional[QWidget] = None, x_label: str = "epoch",
                 empty_text: str = "No epoch has finished yet"):
        super().__init__(parent)
        self.x_label = x_label
        self.empty_text = empty_text
        self.title = ""
        self._series: List[Series] = []
        self.setMinimumSize(220, 150)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt API name)
        return QSize(360, 220)

    def set_series(self, series: Sequence[Series], title: str = "") -> None:
        self._series = [Series(s.name, _clean(s.points), s.color, s.axis) for s in series]
        self.title = title
        self.update()

    def series(self) -> Dict[str, List[Tuple[float, float]]]:
        return {s.name: list(s.points) for s in self._series}

    # ---- painting --------------------------------------------------------------------------------

    def _ranges(self):
        xs = [x for s in self._series for x, _ in s.points]
        if not xs:
            return None
        x_low, x_high = min(xs), max(xs)
        if x_high - x_low < 1:
            x_low, x_high = x_low - 1 if x_low > 1 else x_low, max(x_high, x_low) + 1
        y = {}
        for axis in (LEFT, RIGHT):
            values = [v for s in self._series if s.axis == axis for _, v in s.points]
            if not values:
                continue
            low, high = min(values), max(values)
            pad = (high - low) * 0.08 or max(abs(high) * 0.1, 0.05)
            # losses and metrics are never negative: no axis below 0 for them
            bottom, top = (max(0.0, low - pad) if low >= 0 else low - pad), high + pad
            ticks = nice_ticks(bottom, top)
            y[axis] = (min(ticks[0], bottom), max(ticks[-1], top), ticks)
        return x_low, x_high, y

    def paintEvent(self, _event) -> None:  # noqa: N802 (Qt API name)
        painter = QPainter(self)
        try:
            painter.setRenderHint(QPainter.Antialiasing)
            self._paint(painter)
        finally:
            painter.end()

    def _paint(self, painter: QPainter) -> None:
        palette = self.palette()
        text = palette.color(QPalette.WindowText)
        painter.fillRect(self.rect(), palette.color(QPalette.Base))
        metrics = painter.fontMetrics()
        line_height = metrics.height()
        ranges = self._ranges()
        if ranges is None:
            painter.setPen(text)
            painter.drawText(QRectF(self.rect()), Qt.AlignCenter | Qt.TextWordWrap, self.empty_text)
            return
        x_low, x_high, y = ranges
        left = self.MARGIN + (metrics.horizontalAdvance("0.000") + 6 if LEFT in y else 0)
        right = self.width() - self.MARGIN - (metrics.horizontalAdvance("0.000") + 6 if RIGHT in y else 0)
        top = self.MARGIN + line_height * (2 if self.title else 1) + 6
        bottom = self.height() - self.MARGIN - 2 * line_height - 2
        if right - left < 40 or bottom - top < 30:
            return
        plot = QRectF(left, top, right - left, bottom - top)

        def px(x: float) -> float:
            return plot.left() + (x - x_low) / (x_high - x_low) * plot.width()

        def py(value: float, axis: str) -> float:
            low, high, _ = y[axis]
            return plot.bottom() - (value - low) / (high - low) * plot.height()

        grid = QColor(text)
        grid.setAlpha(40)
        painter.setPen(QPen(grid, 1))
        for axis, ticks in ((a, y[a][2]) for a in (LEFT, RIGHT) if a in y):
            for tick in ticks:
                if y[axis][0] <= tick <= y[axis][1]:
                    row = py(tick, axis)
                    if axis == LEFT or LEFT not in y:
                        painter.setPen(QPen(grid, 1))
                        painter.drawLine(QPointF(plot.left(), row), QPointF(plot.right(), row))
                    painter.setPen(text)
                    label = _label(tick)
                    width = metrics.horizontalAdvance(label)
                    at = plot.left() - width - 4 if axis == LEFT else plot.right() + 4
                    painter.drawText(QPointF(at, row + metrics.ascent() / 2 - 1), label)
        painter.setPen(text)
        for tick in epoch_ticks(x_low, x_high):
            if x_low <= tick <= x_high:
                column = px(tick)
                painter.drawLine(QPointF(column, plot.bottom()), QPointF(column, plot.bottom() + 3))
                label = str(tick)
                painter.drawText(QPointF(column - metrics.horizontalAdvance(label) / 2,
                                         plot.bottom() + 3 + metrics.ascent()), label)
        painter.drawText(QRectF(plot.left(), plot.bottom() + line_height + 2, plot.width(), line_height),
                         Qt.AlignHCenter, self.x_label)
        painter.setPen(QPen(text, 1))
        painter.drawRect(plot)

        for series in self._series:
            if not series.points or series.axis not in y:
                continue
            color = QColor(series.color)
            painter.setPen(QPen(color, 2))
            path = QPainterPath()
            for i, (x, value) in enumerate(series.points):
                point = QPointF(px(x), py(value, series.axis))
                path.moveTo(point) if i == 0 else path.lineTo(point)
            painter.drawPath(path)
            painter.setBrush(color)
            for x, value in series.points:
                painter.drawEllipse(QPointF(px(x), py(value, series.axis)), 2.5, 2.5)
            painter.setBrush(Qt.NoBrush)

        # the title and the legend above the plot
        row = self.MARGIN + metrics.ascent()
        if self.title:
            painter.setPen(text)
            painter.drawText(QPointF(plot.left(), row), metrics.elidedText(self.title, Qt.ElideRight,
                                                                           int(plot.width())))
            row += line_height
        at = plot.left()
        for series in self._series:
            label = series.name + (" (right)" if series.axis == RIGHT and LEFT in y else "")
            painter.setPen(QPen(QColor(series.color), 3))
            painter.drawLine(QPointF(at, row - metrics.ascent() / 3), QPointF(at + 14, row - metrics.ascent() / 3))
            painter.setPen(text)
            painter.drawText(QPointF(at + 18, row), label)
            at += 18 + metrics.horizontalAdvance(label) + 12
