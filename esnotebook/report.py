"""The demo's HTML report: sections of facts, tables and PNG figures, in one static page.

The page is self-contained apart from its figures (PNG files beside it, in ``figures/``): no
scripts, no external styles, every piece of text HTML-escaped, every table capped. Each fact
is also a ``data-key`` attribute, so a test (or a reader with a parser) can check the numbers
against the store they describe; :func:`read_facts` reads them back.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["MAX_TABLE_ROWS", "Section", "html_table", "read_facts", "save_figure", "write_report"]

#: Rows shown per table; the rest is summarised in one line.
MAX_TABLE_ROWS = 20

_STYLE = (
    "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left;font-size:90%}"
    "th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}"
    "section{margin-bottom:2.5em}p.note{color:#555}"
)


@dataclass(frozen=True, slots=True)
class Section:
    """One part of the report: a title, a short text, facts, tables and figures.

    ``facts`` maps a stable key to ``(label, value)``; ``tables`` maps a caption to a
    polars frame; ``figures`` are paths relative to the report's folder.
    """

    title: str
    text: str = ""
    facts: dict[str, tuple[str, Any]] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    figures: tuple[str, ...] = ()


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return str(value)


def html_table(frame: Any, *, max_rows: int = MAX_TABLE_ROWS, max_chars: int = 80) -> str:
    """A polars frame as an escaped HTML table of at most ``max_rows`` rows.

    Examples
    --------
    >>> import polars as pl
    >>> html_table(pl.DataFrame({"a": ["<b>"]}))
    '<table><tr><th>a</th></tr><tr><td>&lt;b&gt;</td></tr></table>'
    """
    e = html.escape
    head = "".join(f"<th>{e(str(c))}</th>" for c in frame.columns)
    rows = []
    for row in frame.head(max_rows).iter_rows():
        cells = []
        for v in row:
            text = "" if v is None else _fmt(v)
            if len(text) > max_chars:
                text = text[: max_chars - 1] + "…"
            cells.append(f"<td>{e(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = ""
    if frame.height > max_rows:
        more = f"<p class='note'>… {frame.height - max_rows:,} more rows not shown</p>"
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>{more}"


def _facts(facts: Mapping[str, tuple[str, Any]]) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><th>{e(label)}</th><td data-key='{e(key)}' data-value='{e(str(value))}'>"
        f"{e(_fmt(value))}</td></tr>"
        for key, (label, value) in facts.items()
    )
    return f"<table class='facts'>{rows}</table>" if rows else ""


def write_report(
    path: str | Path, sections: Iterable[Section], *, title: str, intro: str = ""
) -> Path:
    """Write the sections as one static HTML page at ``path``; return the path.

    Examples
    --------
    >>> import tempfile
    >>> p = write_report(tempfile.mkdtemp() + "/r.html",
    ...                  [Section("store", facts={"events": ("events", 3)})], title="demo")
    >>> read_facts(p)["events"]
    '3'
    """
    e = html.escape
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    if intro:
        parts.append(f"<p>{e(intro)}</p>")
    sections = list(sections)
    parts.append(
        "<ol>"
        + "".join(f"<li><a href='#s{i}'>{e(s.title)}</a></li>" for i, s in enumerate(sections))
        + "</ol>"
    )
    for i, s in enumerate(sections):
        parts.append(f"<section id='s{i}'><h2>{e(s.title)}</h2>")
        if s.text:
            parts.append(f"<p>{e(s.text)}</p>")
        parts.append(_facts(s.facts))
        for caption, frame in s.tables.items():
            parts.append(f"<h3>{e(caption)}</h3>{html_table(frame)}")
        for fig in s.figures:
            parts.append(f"<p><img src='{e(fig)}' alt='{e(Path(fig).stem)}'></p>")
        parts.append("</section>")
    parts.append("</body></html>")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    tmp.replace(path)  # a reader never sees half a report
    return path


_FACT = re.compile(r"data-key='([^']*)' data-value='([^']*)'")


def read_facts(path: str | Path) -> dict[str, str]:
    """The facts of a report written by :func:`write_report`: key -> value as text."""
    with open(path, encoding="utf-8", newline="") as f:  # keep a fact's "\r" as it was
        text = f.read()
    return {html.unescape(k): html.unescape(v) for k, v in _FACT.findall(text)}


def save_figure(figure: Any, folder: str | Path, name: str) -> str:
    """Save a matplotlib figure as ``folder/name.png`` (Agg); return the file name.

    The figure is a :class:`matplotlib.figure.Figure` made without pyplot, so nothing
    global (backend, open figures) changes.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.png"
    figure.savefig(target, format="png", dpi=100, bbox_inches="tight")
    return target.name


def new_figure(
    *, rows: int = 1, figsize: tuple[float, float] = (8, 3.5), sharex: bool = False
) -> Any:
    """A pyplot-free Agg figure and its axes (one, or an array of ``rows``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=sharex)
    return fig, axes
