"""The report's PNG figures, drawn with OpenCV (no plotting library on the vehicle).

All functions return RGB uint8 arrays; `png_bytes` encodes one for `atomic_write_bytes`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE = (255, 255, 255)
INK = (30, 30, 30)
GRID = (225, 225, 225)
MUTED = (120, 120, 120)
ACCENT = (31, 119, 180)
MARKERS = ((214, 39, 40), (255, 127, 14), (148, 103, 189))


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45,
          color=INK, thickness: int = 1, align: str = "left") -> None:
    (w, h), _ = cv2.getTextSize(text, FONT, scale, thickness)
    x, y = org
    if align == "right":
        x -= w
    elif align == "center":
        x -= w // 2
    cv2.putText(img, text, (int(x), int(y)), FONT, scale, color, thickness, cv2.LINE_AA)


def _text_width(text: str, scale: float = 0.45) -> int:
    return cv2.getTextSize(text, FONT, scale, 1)[0][0]


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("cannot encode the figure as PNG")
    return data.tobytes()


def iou_bar_chart(names: list[str], values: list[float | None], colors, title: str,
                  reference: list[float | None] | None = None,
                  reference_label: str = "") -> np.ndarray:
    """Horizontal bars, one per class (IoU 0..1, None = not present, drawn as 'n/a'); an
    optional second series is drawn as a thin black tick per class."""
    row, top, bar_w = 24, 56, 420
    label_w = max(_text_width(n) for n in names) + 24
    width = label_w + bar_w + 90
    height = top + row * len(names) + 40
    img = np.full((height, width, 3), 255, np.uint8)
    _text(img, title, (12, 24), 0.55, thickness=1)
    legend = "bar: IoU (%)"
    if reference is not None:
        legend += f"   tick: {reference_label}"
    _text(img, legend, (12, 44), 0.4, MUTED)
    x0 = label_w
    for pct in range(0, 101, 20):
        x = x0 + int(bar_w * pct / 100)
        cv2.line(img, (x, top - 4), (x, top + row * len(names)), GRID, 1)
        _text(img, f"{pct}", (x, top + row * len(names) + 16), 0.38, MUTED, align="center")
    for i, (name, value) in enumerate(zip(names, values, strict=True)):
        y = top + i * row
        _text(img, name, (x0 - 10, y + 16), 0.45, align="right")
        if value is None or not math.isfinite(value):
            _text(img, "n/a (absent)", (x0 + 6, y + 16), 0.4, MUTED)
            continue
        color = tuple(int(c) for c in colors[i]) if colors is not None else ACCENT
        x1 = x0 + max(1, int(round(bar_w * value)))
        cv2.rectangle(img, (x0, y + 4), (x1, y + row - 4), color, -1)
        cv2.rectangle(img, (x0, y + 4), (x1, y + row - 4), INK, 1)
        _text(img, f"{value * 100:.1f}", (x1 + 6, y + 16), 0.42)
        if reference is not None and reference[i] is not None and math.isfinite(reference[i]):
            xr = x0 + int(round(bar_w * reference[i]))
            cv2.line(img, (xr, y + 1), (xr, y + row - 1), INK, 2)
    return img


def _nice_step(span: float, ticks: int = 6) -> float:
    raw = span / max(1, ticks)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def latency_histogram(values_ms: np.ndarray, title: str,
                      markers: dict[str, float] | None = None, bins: int = 40,
                      unit: str = "ms") -> np.ndarray:
    """Histogram of a latency series with vertical lines at the given markers (p50, ...)."""
    width, height = 720, 340
    left, right, top, bottom = 60, 20, 56, 48
    img = np.full((height, width, 3), 255, np.uint8)
    _text(img, title, (12, 24), 0.55)
    values = np.asarray(values_ms, np.float64)
    values = values[np.isfinite(values)]
    plot_w, plot_h = width - left - right, height - top - bottom
    if values.size == 0:
        _text(img, "no samples", (width // 2, height // 2), 0.6, MUTED, align="center")
        return img
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    pad = 0.03 * (high - low)
    low, high = max(0.0, low - pad), high + pad
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    peak = max(1, int(counts.max()))
    cv2.rectangle(img, (left, top), (left + plot_w, top + plot_h), GRID, 1)

    def x_of(v: float) -> int:
        return left + int(round((v - low) / (high - low) * plot_w))

    step = _nice_step(high - low)
    tick = math.ceil(low / step) * step
    while tick <= high:
        x = x_of(tick)
        cv2.line(img, (x, top + plot_h), (x, top + plot_h + 4), INK, 1)
        _text(img, f"{tick:g}", (x, top + plot_h + 18), 0.38, MUTED, align="center")
        tick += step
    _text(img, unit, (left + plot_w, top + plot_h + 36), 0.4, MUTED, align="right")
    y_step = max(1, int(_nice_step(peak, 4)))
    for c in range(0, peak + 1, y_step):
        y = top + plot_h - int(round(c / peak * plot_h))
        cv2.line(img, (left - 4, y), (left, y), INK, 1)
        _text(img, str(c), (left - 8, y + 4), 0.38, MUTED, align="right")
    _text(img, "frames", (8, top - 8), 0.4, MUTED)
    for i, count in enumerate(counts):
        if not count:
            continue
        x0, x1 = x_of(edges[i]), max(x_of(edges[i]) + 1, x_of(edges[i + 1]) - 1)
        y = top + plot_h - int(round(count / peak * plot_h))
        cv2.rectangle(img, (x0, y), (x1, top + plot_h), ACCENT, -1)
    legend_x = left + 8
    for (name, value), color in zip((markers or {}).items(), MARKERS * 3, strict=False):
        if value is None or not math.isfinite(value):
            continue
        x = x_of(value)
        cv2.line(img, (x, top), (x, top + plot_h), color, 2)
        label = f"{name} {value:.1f} {unit}"
        _text(img, label, (legend_x, 46), 0.42, color)
        legend_x += _text_width(label, 0.42) + 18
    return img


SERIES = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
          (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


def line_chart(x_values: list[float], series: dict[str, list[float]], title: str,
               x_label: str, y_label: str, y_range: tuple[float, float] = (0.0, 100.0)
               ) -> np.ndarray:
    """One line with dots per named series over shared x values, a legend on the right."""
    width, height = 760, 380
    legend_w = max([_text_width(name, 0.42) for name in series] + [60]) + 40
    left, right, top, bottom = 56, legend_w, 56, 48
    img = np.full((height, width, 3), 255, np.uint8)
    _text(img, title, (12, 24), 0.55)
    plot_w, plot_h = width - left - right, height - top - bottom
    low, high = y_range
    x_low, x_high = min(x_values), max(x_values)
    x_span = (x_high - x_low) or 1.0

    def point(x: float, y: float) -> tuple[int, int]:
        return (left + int(round((x - x_low) / x_span * plot_w)),
                top + plot_h - int(round((min(max(y, low), high) - low) / (high - low) * plot_h)))

    step = _nice_step(high - low, 5)
    tick = math.ceil(low / step) * step
    while tick <= high + 1e-9:
        y = point(x_low, tick)[1]
        cv2.line(img, (left, y), (left + plot_w, y), GRID, 1)
        _text(img, f"{tick:g}", (left - 8, y + 4), 0.38, MUTED, align="right")
        tick += step
    for x in x_values:
        px = point(x, low)[0]
        _text(img, f"{x:g}", (px, top + plot_h + 18), 0.38, MUTED, align="center")
    _text(img, x_label, (left + plot_w, top + plot_h + 36), 0.4, MUTED, align="right")
    _text(img, y_label, (8, top - 10), 0.4, MUTED)
    for index, (name, ys) in enumerate(series.items()):
        color = SERIES[index % len(SERIES)]
        points = [point(x, y) for x, y in zip(x_values, ys, strict=True)
                  if y is not None and math.isfinite(y)]
        for a, b in zip(points, points[1:], strict=False):
            cv2.line(img, a, b, color, 2, cv2.LINE_AA)
        for p in points:
            cv2.circle(img, p, 3, color, -1, cv2.LINE_AA)
        y = top + 8 + 20 * index
        cv2.line(img, (width - legend_w + 12, y - 4), (width - legend_w + 30, y - 4), color, 3)
        _text(img, name, (width - legend_w + 36, y), 0.42)
    return img


def frame_strip(rows: list[tuple[str, list[np.ndarray]]], headers: list[str]) -> np.ndarray:
    """Rows of equally sized panels (e.g. image | ground truth | prediction | overlay), each
    row captioned, with a header line naming the columns."""
    if not rows:
        img = np.full((60, 480, 3), 255, np.uint8)
        _text(img, "no frame to show", (240, 36), 0.55, MUTED, align="center")
        return img
    panel_h = max(p.shape[0] for _, panels in rows for p in panels)
    panel_w = max(p.shape[1] for _, panels in rows for p in panels)
    columns = max(len(panels) for _, panels in rows)
    gap, caption, header = 6, 20, 28
    width = columns * panel_w + (columns + 1) * gap
    height = header + len(rows) * (panel_h + caption + gap) + gap
    img = np.full((height, width, 3), 255, np.uint8)
    for c, name in enumerate(headers[:columns]):
        _text(img, name, (gap + c * (panel_w + gap) + panel_w // 2, 20), 0.5, align="center")
    y = header
    for caption_text, panels in rows:
        _text(img, caption_text, (gap, y + 14), 0.42, MUTED)
        y += caption
        for c, panel in enumerate(panels):
            x = gap + c * (panel_w + gap)
            h, w = panel.shape[:2]
            img[y:y + h, x:x + w] = panel if panel.ndim == 3 else panel[..., None]
        y += panel_h + gap
    return img
