"""The demo's HTML report (esnotebook.report): static, escaped, capped, and its facts
readable back exactly as written."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from esnotebook.report import (
    MAX_TABLE_ROWS,
    Section,
    html_table,
    new_figure,
    read_facts,
    save_figure,
    write_report,
)


def test_the_report_is_one_static_escaped_page(tmp_path):
    frame = pl.DataFrame({"<col>": ["<script>alert(1)</script>"] * 3})
    path = write_report(
        tmp_path / "r.html",
        [Section("<h1>title</h1>", "a & b", facts={"k": ("<label>", "<v>")}, tables={"<t>": frame})],
        title="<demo>",
        intro="<i>",
    )  # fmt: skip
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text and "&lt;script&gt;" in text
    for raw in ("<h1>title", "<label>", "<v>", "<col>", "<t>", "<demo>", "<i>"):
        assert raw not in text.replace("<h1>&lt;demo&gt;</h1>", "")
    assert "a &amp; b" in text
    assert "http" not in text  # nothing fetched from elsewhere


def test_tables_are_capped_and_say_how_many_rows_were_left_out():
    frame = pl.DataFrame({"n": range(MAX_TABLE_ROWS + 7)})
    text = html_table(frame)
    assert text.count("<tr>") == MAX_TABLE_ROWS + 1
    assert "7 more rows not shown" in text


def test_long_cells_are_shortened():
    text = html_table(pl.DataFrame({"s": ["x" * 500]}), max_chars=50)
    assert "x" * 49 + "…" in text and "x" * 50 not in text


@given(
    facts=st.dictionaries(
        st.text(min_size=1, max_size=20),
        st.one_of(st.integers(), st.text(max_size=30), st.booleans()),
        max_size=8,
    )
)
def test_facts_read_back_exactly_as_written(tmp_path_factory, facts):
    """Rule: read_facts(write_report(...)) gives every fact's value as str(value)."""
    path = tmp_path_factory.mktemp("r") / "r.html"
    write_report(path, [Section("s", facts={k: ("label", v) for k, v in facts.items()})], title="t")
    assert read_facts(path) == {k: str(v) for k, v in facts.items()}


def test_figures_are_png_files_linked_relative_to_the_report(tmp_path):
    fig, ax = new_figure()
    ax.plot([0, 1], [1, 0])
    name = save_figure(fig, tmp_path / "figures", "line")
    assert name == "line.png" and (tmp_path / "figures" / name).read_bytes()[:4] == b"\x89PNG"
    path = write_report(
        tmp_path / "r.html", [Section("s", figures=(f"figures/{name}",))], title="t"
    )
    assert "<img src='figures/line.png' alt='line'>" in path.read_text()


def test_a_rewritten_report_replaces_the_old_one_whole(tmp_path):
    path = tmp_path / "r.html"
    write_report(path, [Section("first", facts={"a": ("a", 1)})], title="t")
    write_report(path, [Section("second", facts={"b": ("b", 2)})], title="t")
    assert read_facts(path) == {"b": "2"}
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]  # no temporary file left


@pytest.mark.parametrize(
    ("value", "shown"), [(1234567, "1,234,567"), (0.000123456, "0.0001235"), (True, "yes")]
)
def test_fact_values_are_formatted_for_reading(tmp_path, value, shown):
    path = write_report(
        tmp_path / "r.html", [Section("s", facts={"k": ("label", value)})], title="t"
    )
    assert f">{shown}</td>" in path.read_text() and read_facts(path)["k"] == str(value)
