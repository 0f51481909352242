"""Small SVG charts drawn on the server: readable without JavaScript, styled by admin.css.

Every piece of text is escaped; every chart has a <title> and a text
<desc> for screen readers, and the pages show the same figures in a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

WIDTH = 640
HEIGHT = 220
PAD_LEFT = 44
PAD_BOTTOM = 28
PAD_TOP = 12


def _nice_max(value: int) -> int:
    """A round axis maximum at or above ``value`` (1, 2, 5 x 10^n)."""
    if value <= 0:
        return 1
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def timeline_chart(rows: Sequence[dict[str, Any]], *, title: str) -> Markup:
    """Sends (bars) and clicks (line) per time bucket, from report.timeline's rows."""
    if not rows:
        return Markup('<p class="muted">Nothing sent yet.</p>')
    top = _nice_max(max(max(r["sent"], r["clicks"]) for r in rows))
    plot_w = WIDTH - PAD_LEFT - 8
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    slot = plot_w / len(rows)

    def y(value: int) -> float:
        return PAD_TOP + plot_h - plot_h * value / top

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="tl-title tl-desc" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="tl-title">{escape(title)}</title>',
        f'<desc id="tl-desc">{escape(_describe(rows))}</desc>',
    ]
    for tick in (0, top // 2, top):
        parts.append(
            f'<line class="grid" x1="{PAD_LEFT}" x2="{WIDTH - 8}" y1="{y(tick):.1f}" '
            f'y2="{y(tick):.1f}"/><text class="axis" x="{PAD_LEFT - 6}" y="{y(tick) + 4:.1f}" '
            f'text-anchor="end">{tick}</text>'
        )
    for i, row in enumerate(rows):
        x = PAD_LEFT + i * slot
        height = plot_h * row["sent"] / top
        parts.append(
            f'<rect class="bar sent" x="{x + slot * 0.1:.1f}" y="{y(row["sent"]):.1f}" '
            f'width="{max(slot * 0.8, 1):.1f}" height="{height:.1f}">'
            f"<title>{escape(row['start'])}: {row['sent']} sent, {row['clicks']} clicks</title>"
            "</rect>"
        )
    points = " ".join(
        f"{PAD_LEFT + (i + 0.5) * slot:.1f},{y(row['clicks']):.1f}" for i, row in enumerate(rows)
    )
    parts.append(f'<polyline class="line clicks" points="{points}"/>')
    for label_at in sorted({0, len(rows) - 1}):
        x = PAD_LEFT + (label_at + 0.5) * slot
        anchor = "start" if label_at == 0 else "end"
        parts.append(
            f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}">'
            f"{escape(_short_time(rows[label_at]['start']))}</text>"
        )
    parts.append(
        f'<g class="legend"><rect class="bar sent" x="{WIDTH - 170}" y="2" width="10" '
        f'height="10"/><text x="{WIDTH - 156}" y="11">sent</text>'
        f'<line class="line clicks" x1="{WIDTH - 110}" x2="{WIDTH - 96}" y1="7" y2="7"/>'
        f'<text x="{WIDTH - 92}" y="11">clicks</text></g>'
    )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text part is escaped above)


def _short_time(iso: str) -> str:
    return iso.replace("T", " ")[:16] + " UTC"


def _describe(rows: Sequence[dict[str, Any]]) -> str:
    sent = sum(r["sent"] for r in rows)
    clicks = sum(r["clicks"] for r in rows)
    return (
        f"{sent} sent and {clicks} clicks from {_short_time(rows[0]['start'])} "
        f"in steps of {rows[0]['seconds']} seconds"
    )


def bar_chart(items: Sequence[tuple[str, int]], *, title: str) -> Markup:
    """Horizontal bars, one per (label, count); for failures by reply code or domain."""
    if not items:
        return Markup('<p class="muted">None.</p>')
    width_all = 360  # shown half-width on wide screens: text stays readable
    row_h = 22
    label_w = 130
    height = row_h * len(items) + 8
    top = max(count for _, count in items) or 1
    bar_w = width_all - label_w - 40
    desc = ", ".join(f"{label}: {count}" for label, count in items)
    parts = [
        f'<svg class="chart" viewBox="0 0 {width_all} {height}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        f"<desc>{escape(desc)}</desc>"
    ]
    for i, (label, count) in enumerate(items):
        y = 4 + i * row_h
        width = bar_w * count / top
        parts.append(
            f'<text class="axis" x="{label_w - 8}" y="{y + 15}" text-anchor="end">'
            f"{escape(label[:22])}</text>"
            f'<rect class="bar failed" x="{label_w}" y="{y + 3}" width="{max(width, 1):.1f}" '
            f'height="{row_h - 6}"/>'
            f'<text class="value" x="{label_w + width + 6:.1f}" y="{y + 15}">{count}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text part is escaped above)
