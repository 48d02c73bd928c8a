"""Inline SVG charts, drawn on the server: no JavaScript library, no build step.

Each function returns markup that is safe to embed (``markupsafe.Markup``): every label is
escaped here, numbers are formatted by us.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from markupsafe import Markup, escape

from cio_relay.observability.throughput import Minute

__all__ = ["funnel_chart", "throughput_chart"]

_WIDTH = 720
_HEIGHT = 160
_PAD_LEFT = 44
_PAD_BOTTOM = 20


def _nice_max(value: int) -> int:
    """A round axis maximum at or above ``value`` (1, 2, 5 x 10^n)."""
    if value <= 0:
        return 1
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= value:
                return step * scale
        scale *= 10


def throughput_chart(minutes: Sequence[Minute]) -> Markup:
    """Delivered (stacked under dead-lettered) per minute, oldest on the left."""
    top = _nice_max(max((m.delivered + m.dead for m in minutes), default=0))
    plot_w = _WIDTH - _PAD_LEFT
    plot_h = _HEIGHT - _PAD_BOTTOM
    bar_w = plot_w / max(len(minutes), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" role="img" '
        f'aria-label="Operations delivered and dead-lettered per minute, last hour">',
        f'<text x="0" y="10" class="axis">{top:,}</text>',
        f'<text x="0" y="{plot_h}" class="axis">0</text>',
        f'<line x1="{_PAD_LEFT}" y1="{plot_h}" x2="{_WIDTH}" y2="{plot_h}" class="baseline"/>',
    ]
    for index, minute in enumerate(minutes):
        x = _PAD_LEFT + index * bar_w
        delivered_h = plot_h * minute.delivered / top
        dead_h = plot_h * minute.dead / top
        label = time.strftime("%H:%M", time.gmtime(minute.start))
        title = f"{label} UTC: {minute.delivered:,} delivered, {minute.dead:,} dead-lettered"
        parts.append(f"<g><title>{escape(title)}</title>")
        if delivered_h:
            parts.append(
                f'<rect x="{x:.1f}" y="{plot_h - delivered_h:.1f}" width="{bar_w * 0.8:.1f}" '
                f'height="{delivered_h:.1f}" class="delivered"/>'
            )
        if dead_h:
            parts.append(
                f'<rect x="{x:.1f}" y="{plot_h - delivered_h - dead_h:.1f}" '
                f'width="{bar_w * 0.8:.1f}" height="{dead_h:.1f}" class="dead"/>'
            )
        parts.append("</g>")
        if index % 15 == 0:
            parts.append(f'<text x="{x:.1f}" y="{_HEIGHT - 4}" class="axis">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every label above went through escape()


def funnel_chart(steps: Sequence[tuple[str, int]]) -> Markup:
    """Horizontal bars, one per funnel step (sent, delivered, opened ...), widest first."""
    top = max((count for _, count in steps), default=0) or 1
    row_h = 22
    height = row_h * len(steps) + 4
    label_w = 90
    bar_space = _WIDTH - label_w - 70
    parts = [
        f'<svg class="chart funnel" viewBox="0 0 {_WIDTH} {height}" role="img" '
        f'aria-label="Delivery funnel">'
    ]
    for index, (name, count) in enumerate(steps):
        y = index * row_h + 2
        width = bar_space * count / top
        share = f"{100 * count / top:.0f}%"
        parts.append(
            f'<text x="0" y="{y + 15}" class="label">{escape(name)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{width:.1f}" height="{row_h - 6}" '
            f'class="step step-{index}"/>'
            f'<text x="{label_w + width + 6:.1f}" y="{y + 15}" class="label">'
            f"{count:,} ({share})</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every label above went through escape()
