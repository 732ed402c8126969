"""The ``esnotebook`` command: ``esnotebook demo`` (in-process and as a real subprocess)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timezone

import pytest
from polars.testing import assert_frame_equal

import esnotebook as es
from esnotebook.cli import DemoError, main, run_demo
from esnotebook.datasets import generate_orders


def parse_summary(text: str) -> dict:
    """The printed summary as numbers: events, streams, files, size, span, event types."""
    fields: dict = {"types": {}}
    in_types = False
    for line in text.splitlines():
        if line == "event types":
            in_types = True
            continue
        if in_types and line.startswith("  "):
            name, count = line.split()
            fields["types"][name] = int(count.replace(",", ""))
            continue
        in_types = False
        label, _, value = line.partition("  ")
        fields[label] = value.strip()
    out = {
        "events": int(fields["events"].replace(",", "")),
        "streams": int(fields["streams"].replace(",", "")),
        "files": int(fields["files"].replace(",", "")),
        "bytes": int(
            re.search(r"\(([\d,]+) bytes\)", fields["size on disk"]).group(1).replace(",", "")
        ),
        "span": fields["time span"],
        "types": fields["types"],
        "store": fields["store"],
        "import": fields["import"],
    }
    return out


def check_against_store(summary: dict, store: es.ParquetEventStore) -> None:
    frame = store.to_polars()
    assert summary["events"] == len(store) == frame.height
    assert summary["streams"] == len(store.streams()) == frame["stream_id"].n_unique()
    assert summary["files"] == len(store.files())
    assert summary["bytes"] == store.size_on_disk() == sum(f.stat().st_size for f in store.files())
    counts = dict(frame.group_by("event_type").len().iter_rows())
    assert summary["types"] == counts
    first = frame["recorded_at"].min().astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    last = frame["recorded_at"].max().astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    assert summary["span"].startswith(f"{first} UTC .. {last} UTC")


def demo(tmp_path, *args: str, name: str = "demo") -> int:
    return main(["demo", "--out", str(tmp_path / name), *args])


# ---------------------------------------------------------------------- in-process
def test_demo_generates_the_workload_and_the_summary_matches_the_store(tmp_path, capsys):
    assert demo(tmp_path, "--orders", "300", "--seed", "4") == 0
    summary = parse_summary(capsys.readouterr().out)
    store = es.ParquetEventStore(tmp_path / "demo" / "store")
    check_against_store(summary, store)
    assert summary["streams"] == 300
    assert re.fullmatch(r"[\d,]+ events/s \([\d.]+ s\)", summary["import"])
    # What is stored is exactly the workload for that seed.
    workload = generate_orders(300, seed=4)
    assert_frame_equal(store.to_polars().select(workload.columns), workload)


def test_an_existing_demo_store_is_reused_untouched(tmp_path, capsys):
    assert demo(tmp_path, "--orders", "200") == 0
    store_dir = tmp_path / "demo" / "store"
    before = {p: p.stat().st_mtime_ns for p in store_dir.rglob("*")}
    capsys.readouterr()
    assert demo(tmp_path) == 0
    out = capsys.readouterr().out
    assert "found an existing demo store" in out and "reusing it" in out
    assert "pass --fresh to regenerate" in out
    assert {p: p.stat().st_mtime_ns for p in store_dir.rglob("*")} == before
    check_against_store(parse_summary(out), es.ParquetEventStore(store_dir))


def test_asking_for_another_size_without_fresh_says_how_to_regenerate(tmp_path, capsys):
    assert demo(tmp_path, "--orders", "200") == 0
    capsys.readouterr()
    assert demo(tmp_path, "--orders", "250") == 0
    out = capsys.readouterr().out
    assert "made with 200 orders and seed 0, not 250 orders and seed 0: pass --fresh" in out
    assert parse_summary(out)["streams"] == 200


def test_fresh_regenerates_the_demo_store(tmp_path, capsys):
    assert demo(tmp_path, "--orders", "200") == 0
    capsys.readouterr()
    assert demo(tmp_path, "--orders", "120", "--seed", "2", "--fresh") == 0
    out = capsys.readouterr().out
    assert "starting fresh (--fresh was given)" in out
    summary = parse_summary(out)
    assert summary["streams"] == 120
    store = es.ParquetEventStore(tmp_path / "demo" / "store")
    check_against_store(summary, store)
    assert len(store) == generate_orders(120, seed=2).height


def test_an_interrupted_demo_is_redone(tmp_path, capsys):
    """A run that died after writing its manifest but before finishing is started afresh."""
    folder = tmp_path / "demo"
    (folder / "store").mkdir(parents=True)
    (folder / "store" / "half-written").write_text("x")
    (folder / "demo.json").write_text(
        json.dumps({"kind": "esnotebook-demo", "complete": False, "orders": 9, "seed": 0})
    )
    assert demo(tmp_path, "--orders", "80") == 0
    out = capsys.readouterr().out
    assert "the previous run did not finish" in out
    assert parse_summary(out)["streams"] == 80
    assert json.loads((folder / "demo.json").read_text())["complete"] is True


def test_events_sizes_the_workload_by_events(tmp_path, capsys):
    assert demo(tmp_path, "--events", "20000") == 0
    assert parse_summary(capsys.readouterr().out)["events"] == pytest.approx(20000, rel=0.05)


@pytest.mark.parametrize("setup", ["foreign", "file", "bare store"])
def test_a_folder_that_is_not_a_demo_folder_is_refused_and_left_alone(tmp_path, capsys, setup):
    target = tmp_path / "demo"
    if setup == "foreign":
        target.mkdir()
        (target / "thesis.tex").write_text("precious")
        expected = "is not an esnotebook demo folder: it holds 1 entries (thesis.tex)"
    elif setup == "file":
        target.write_text("precious")
        expected = "is a file; the demo needs a folder"
    else:
        es.ParquetEventStore(target).close()
        expected = "is an esnotebook event store, not a demo folder"
    before = sorted((p.name, p.stat().st_size) for p in tmp_path.rglob("*"))
    assert demo(tmp_path, "--orders", "10") == 2
    err = capsys.readouterr().err
    assert f"esnotebook demo: error: {target}" in err and expected in err
    assert sorted((p.name, p.stat().st_size) for p in tmp_path.rglob("*")) == before


def test_orders_and_events_together_are_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        demo(tmp_path, "--orders", "10", "--events", "100")
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(orders=0), r"'orders' must be an int >= 1 \(got 0\)"),
    (dict(events=-5), r"'events' must be an int >= 1 \(got -5\)"),
    (dict(orders=5, events=5), "give --orders or --events, not both"),
    (dict(seed=-1), r"'seed' must be an int >= 0 \(got -1\)"),
])  # fmt: skip
def test_bad_sizes_are_refused_before_anything_is_written(tmp_path, kwargs, message):
    with pytest.raises(DemoError, match=message):
        run_demo(tmp_path / "demo", **kwargs)
    assert not (tmp_path / "demo").exists()


def test_no_command_prints_the_help_and_fails(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().err


def test_the_summary_object_has_a_frame_and_an_escaped_html_view(tmp_path):
    summary = run_demo(tmp_path / "<demo>", orders=50)
    frame = summary.to_polars()
    assert frame.columns == ["event_type", "events"]
    assert frame["events"].sum() == summary.events
    html = summary._repr_html_()
    assert "&lt;demo&gt;" in html and "<demo>" not in html
    assert summary.to_pandas()["events"].sum() == summary.events


# ---------------------------------------------------------------------- as a real process
def test_python_dash_m_esnotebook_demo_runs_as_a_subprocess(tmp_path):
    env = {**os.environ, "TQDM_DISABLE": "1"}
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "esnotebook", "demo", "--out", str(out), "--orders", "150",
         "--seed", "1"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = parse_summary(proc.stdout)
    check_against_store(summary, es.ParquetEventStore(out / "store"))
    assert summary["streams"] == 150
    # The store's lock was released when the process ended: this process can write.
    with es.ParquetEventStore(out / "store") as store:
        store.append("order-x", [es.NewEvent("OrderPlaced", {"order_id": "x", "customer": "c"})])
