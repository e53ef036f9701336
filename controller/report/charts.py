"""Charts as SVG data: URIs (self-contained, no ids leaking into the page), drawn by matplotlib."""

from __future__ import annotations

import base64
import functools
import io
from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT = 7.0, 2.8  # inches; 96 dpi in the page -> 672 x 269 px
FLEET, OUTLIER, NORMAL = "#2f6db5", "#d9534f", "#8aa9cf"


@dataclass(frozen=True)
class Chart:
    title: str
    src: str  # data:image/svg+xml;base64,...
    width: int
    height: int


@functools.cache
def _pyplot() -> Any:
    """matplotlib, imported at the first chart: ~45 MB a server that never draws need not carry."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    return plt


def _render(fig: Any, title: str) -> Chart:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="svg", bbox_inches=None, metadata={"Date": None})
    _pyplot().close(fig)
    src = "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()
    return Chart(title, src, int(WIDTH * 96), int(HEIGHT * 96))


def _bucket_label(bucket: dict[str, Any]) -> str:
    low, high = bucket.get("min"), bucket.get("max")
    return f"{_short(low)}+" if high is None else f"{_short(low)}-{_short(high)}"


def _short(value: Any) -> str:
    if value is None:
        return "?"
    number = float(value)
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if abs(number) >= size:
            return f"{number / size:g}{unit}"
    return f"{number:g}"


def histogram(name: str, buckets: list[dict[str, Any]]) -> Chart:
    """The fleet-wide histogram of a bpftrace map: one bar per power-of-two (or linear) bucket."""
    fig, ax = _pyplot().subplots(figsize=(WIDTH, HEIGHT))
    labels = [_bucket_label(b) for b in buckets]
    ax.bar(range(len(buckets)), [b["count"] for b in buckets], color=FLEET)
    ax.set_xticks(range(len(buckets)), labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("count")
    ax.set_title(f"{name}: fleet-wide", fontsize=10)
    fig.tight_layout()
    return _render(fig, f"{name}: fleet-wide histogram")


def per_host(name: str, figures: list[dict[str, Any]], outliers: set[str]) -> Chart:
    """Each host's figure of a map (p99 for histograms, else the value); outliers in red."""
    key = "p99" if any(f.get("p99") is not None for f in figures) else "value"
    shown = [f for f in figures if f.get(key) is not None]
    fig, ax = _pyplot().subplots(figsize=(WIDTH, HEIGHT))
    ax.bar(
        range(len(shown)),
        [float(f[key]) for f in shown],
        color=[OUTLIER if f["host"] in outliers else NORMAL for f in shown],
    )
    ax.set_xticks(range(len(shown)), [f["host"] for f in shown], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel(key)
    ax.set_title(f"{name}: {key} per host (outliers in red)", fontsize=10)
    fig.tight_layout()
    return _render(fig, f"{name}: {key} per host")
