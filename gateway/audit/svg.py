"""Charts as inline SVG (pure layer): stacked daily bars and a bucket histogram.

Drawn by hand rather than with a plotting library: the output must be the same bytes for
the same data (a report is compared across runs), self-contained (no fonts or scripts
fetched), and small. Each chart carries a ``<title>`` and ``<desc>`` for screen readers and
its caption names the period it covers (a figure without a date is not evidence).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

# Distinguishable in colour and, printed in grey, by lightness.
PALETTE = ("#1f4e79", "#e07b39", "#6aa84f", "#b4a7d6", "#c00000", "#7f6000", "#76a5af", "#444")
_W, _H = 720, 240
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 150, 24, 36


def _nice_max(value: int) -> int:
    """The axis top: four gridline steps of 1, 2 or 5 times a power of ten, at or above
    ``value`` (so every gridline has a whole, round label)."""
    power = 1
    while True:
        for m in (1, 2, 5):
            if 4 * m * power >= value:
                return 4 * m * power
        power *= 10


def _axis(top: int) -> list[str]:
    parts = []
    plot_h = _H - _TOP - _BOTTOM
    for i in range(5):
        value = top * i // 4
        y = _H - _BOTTOM - plot_h * i / 4
        parts.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_W - _RIGHT}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value}</text>'
        )
    return parts


def stacked_bars(
    title: str, caption: str, days: Sequence[str], series: Mapping[str, list[int]]
) -> str:
    """One bar per day, stacked by series, with a legend."""
    totals = [sum(counts[i] for counts in series.values()) for i in range(len(days))]
    top = _nice_max(max(totals, default=0))
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    slot = plot_w / max(len(days), 1)
    bar = max(slot * 0.8, 1.0)
    parts = _axis(top)
    for i, day in enumerate(days):
        x = _LEFT + i * slot + (slot - bar) / 2
        y = float(_H - _BOTTOM)
        for n, (name, counts) in enumerate(series.items()):
            if not counts[i]:
                continue
            h = plot_h * counts[i] / top
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}"'
                f' fill="{PALETTE[n % len(PALETTE)]}"><title>{escape(day)} {escape(name)}:'
                f" {counts[i]}</title></rect>"
            )
        if i % 7 == 0 or (i == len(days) - 1 and i % 7 > 3):
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{_H - _BOTTOM + 14}" text-anchor="middle">'
                f"{escape(day[5:])}</text>"
            )
    for n, name in enumerate(series):
        y = _TOP + 16 * n
        parts.append(
            f'<rect x="{_W - _RIGHT + 12}" y="{y}" width="10" height="10"'
            f' fill="{PALETTE[n % len(PALETTE)]}"/>'
            f'<text x="{_W - _RIGHT + 28}" y="{y + 9}">{escape(name[:22])}</text>'
        )
    return _svg(title, caption, parts)


def histogram(title: str, caption: str, buckets: Sequence[tuple[str, int]], over: set[str]) -> str:
    """Bars per bucket; buckets named in ``over`` (past a deadline) drawn in red."""
    top = _nice_max(max((n for _, n in buckets), default=0))
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    slot = plot_w / max(len(buckets), 1)
    parts = _axis(top)
    for i, (label, n) in enumerate(buckets):
        h = plot_h * n / top
        x = _LEFT + i * slot + slot * 0.15
        colour = PALETTE[4] if label in over else PALETTE[0]
        parts.append(
            f'<rect x="{x:.1f}" y="{_H - _BOTTOM - h:.1f}" width="{slot * 0.7:.1f}"'
            f' height="{h:.1f}" fill="{colour}"><title>{escape(label)}: {n}</title></rect>'
            f'<text x="{x + slot * 0.35:.1f}" y="{_H - _BOTTOM + 14}" text-anchor="middle">'
            f"{escape(label)}</text>"
            f'<text x="{x + slot * 0.35:.1f}" y="{_H - _BOTTOM - h - 4:.1f}"'
            f' text-anchor="middle">{n}</text>'
        )
    return _svg(title, caption, parts)


def _svg(title: str, caption: str, parts: list[str]) -> str:
    body = "".join(parts)
    return (
        f'<figure class="chart"><svg xmlns="http://www.w3.org/2000/svg" role="img"'
        f' viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" font-family="sans-serif"'
        f' font-size="11"><title>{escape(title)}</title><desc>{escape(caption)}</desc>'
        f'<line x1="{_LEFT}" y1="{_H - _BOTTOM}" x2="{_W - _RIGHT}" y2="{_H - _BOTTOM}"'
        f' stroke="#333"/>{body}</svg><figcaption>{escape(title)}. {escape(caption)}'
        "</figcaption></figure>"
    )
