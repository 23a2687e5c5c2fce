"""Line charts as PNG files, drawn with Pillow (no plotting library): panels stacked one above the
other, sharing the x axis, one coloured line per series and a legend. `ledger bench --plot` uses it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
WIDTH, PANEL_HEIGHT = 1000, 330
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 80, 150, 36, 44


@dataclass
class Panel:
    title: str  # says what the y axis counts, with its unit
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # label -> (x, y) points


class PlotUnavailable(RuntimeError):
    pass


def nice_ticks(high: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `high` (steps of 1, 2 or 5 times a power of ten)."""
    high = max(high, 1e-9)
    raw = high / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    steps = math.ceil(high / step - 1e-9)
    return [round(k * step, 12) for k in range(steps + 1)]


def draw(path: Path, panels: Sequence[Panel], x_label: str, title: str) -> None:
    """Write the panels to `path` (PNG). Raises PlotUnavailable without Pillow."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError as exc:  # an optional dependency: say how to get it
        raise PlotUnavailable("drawing a chart needs Pillow: pip install 'ledger[plot]' (or pillow)") from exc
    height = PANEL_HEIGHT * len(panels) + 40
    image = Image.new("RGB", (WIDTH, height), "white")
    pen = ImageDraw.Draw(image)
    font: Any = _font(ImageFont, 13)
    pen.text((MARGIN_LEFT, 10), title, fill="black", font=_font(ImageFont, 16))
    xs = [x for p in panels for pts in p.series.values() for x, _ in pts]
    x_ticks = nice_ticks(max(xs, default=1.0))
    for k, panel in enumerate(panels):
        top = 40 + k * PANEL_HEIGHT
        _panel(pen, font, panel, top, x_ticks, x_label)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "PNG")


def _font(image_font: Any, size: int) -> Any:
    try:
        return image_font.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one size only
        return image_font.load_default()


def _panel(pen: Any, font: Any, panel: Panel, top: int, x_ticks: list[float], x_label: str) -> None:
    left, right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    plot_top, bottom = top + MARGIN_TOP, top + PANEL_HEIGHT - MARGIN_BOTTOM
    ys = [y for pts in panel.series.values() for _, y in pts]
    y_ticks = nice_ticks(max(ys, default=1.0))
    x_max, y_max = x_ticks[-1] or 1.0, y_ticks[-1] or 1.0

    def at(x: float, y: float) -> tuple[float, float]:
        return left + (right - left) * x / x_max, bottom - (bottom - plot_top) * y / y_max

    pen.text((left, top + 10), panel.title, fill="black", font=font)
    for y in y_ticks:
        _, py = at(0, y)
        pen.line([(left, py), (right, py)], fill="#e5e5e5")
        pen.text((left - 8, py), _label(y), fill="#333333", font=font, anchor="rm")
    for x in x_ticks:
        px, _ = at(x, 0)
        pen.line([(px, bottom), (px, bottom + 4)], fill="black")
        pen.text((px, bottom + 6), _label(x), fill="#333333", font=font, anchor="mt")
    pen.rectangle([left, plot_top, right, bottom], outline="black")
    pen.text(((left + right) / 2, bottom + 22), x_label, fill="black", font=font, anchor="mt")
    for n, (name, points) in enumerate(sorted(panel.series.items())):
        colour = PALETTE[n % len(PALETTE)]
        line = [at(x, y) for x, y in sorted(points)]
        if len(line) > 1:
            pen.line(line, fill=colour, width=2)
        elif line:
            x0, y0 = line[0]
            pen.ellipse([x0 - 2, y0 - 2, x0 + 2, y0 + 2], fill=colour)
        ly = plot_top + 8 + 18 * n
        pen.line([(right + 12, ly), (right + 36, ly)], fill=colour, width=3)
        pen.text((right + 42, ly), name, fill="black", font=font, anchor="lm")


def _label(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:g}"
