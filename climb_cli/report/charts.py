"""Charts as plain inline SVG: count bars (what is on disk against what the recipe expects) and progress
bars (the corpus against the paper's totals).

Plain SVG rather than matplotlib: text stays text (searchable, selectable, sharp at any zoom), the page
needs no fonts embedded, and the output is a pure function of the numbers (fixed precision, no ids,
no dates), so the same counts always give the same bytes.
"""

from __future__ import annotations

import html

from climb_cli.report.gather import Count

BAR_W = 150  # width of the bar area, px
ACTUAL = "#3867b0"
EXPECTED = "#b9c0cc"
OFF = "#c2452d"


def count_bar(c: Count, scale: int) -> str:
    """Two bars for one count: on disk (top, filled) and expected (below, grey); red when they differ."""
    scale = max(1, scale)

    def w(v: int | None) -> float:
        return 0.0 if not v else max(1.5, BAR_W * v / scale)

    fill = OFF if c.differs else ACTUAL
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="bar" width="{BAR_W}" height="22" '
        f'viewBox="0 0 {BAR_W} 22" role="img" aria-label="{html.escape(c.name)}">',
        f'<rect x="0" y="2" width="{BAR_W}" height="18" fill="#f3f5f8"/>',
    ]
    if c.actual is not None:
        parts.append(f'<rect x="0" y="3" width="{w(c.actual):.1f}" height="10" fill="{fill}"/>')
    if c.expected is not None:
        parts.append(f'<rect x="0" y="14" width="{w(c.expected):.1f}" height="5" fill="{EXPECTED}"/>')
    parts.append("</svg>")
    return "".join(parts)


def legend() -> str:
    def key(color: str, h: int, text: str) -> str:
        return (
            f'<span class="key"><svg xmlns="http://www.w3.org/2000/svg" width="18" height="10" '
            f'viewBox="0 0 18 10"><rect x="0" y="{(10 - h) / 2:g}" width="18" height="{h}" '
            f'fill="{color}"/></svg> {text}</span>'
        )

    return key(ACTUAL, 10, "on disk") + key(EXPECTED, 5, "expected (recipe)") + key(OFF, 10, "differs")


def progress(value: float, total: float, label: str) -> str:
    """A horizontal bar filled to value / total (capped at the end), with the percentage in words."""
    frac = 0.0 if total <= 0 else min(1.0, value / total)
    width = 420
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="progress" width="{width}" height="16" '
        f'viewBox="0 0 {width} 16" role="img" aria-label="{html.escape(label)}">'
        f'<rect x="0" y="0" width="{width}" height="16" rx="3" fill="#e6e9ef"/>'
        f'<rect x="0" y="0" width="{width * frac:.1f}" height="16" rx="3" fill="{ACTUAL}"/>'
        "</svg>"
    )
