"""The ``esnotebook`` command: ``esnotebook demo`` (in-process and as a real subprocess)."""

from __future__ import annotations

import json
import math
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


def demo(tmp_path, *args: str, name: str = "demo", tour: bool = False) -> int:
    """Run ``esnotebook demo`` in-process; the store-handling tests skip the (slower) tour."""
    return main(["demo", "--out", str(tmp_path / name), *args, *([] if tour else ["--store-only"])])


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
    summary = run_demo(tmp_path / "<demo>", orders=50, tour=False)
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
         "--seed", "1", "--saga-orders", "15", "--replications", "2"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no progress bars or warnings under TQDM_DISABLE
    assert (out / "report.html").is_file() and len(list((out / "figures").glob("*.png"))) == 6
    summary = parse_summary(proc.stdout)
    check_against_store(summary, es.ParquetEventStore(out / "store"))
    assert summary["streams"] == 150
    # The store's lock was released when the process ended: this process can write.
    with es.ParquetEventStore(out / "store") as store:
        store.append("order-x", [es.NewEvent("OrderPlaced", {"order_id": "x", "customer": "c"})])


# ---------------------------------------------------------------------- the full tour
@pytest.fixture(scope="module")
def toured(tmp_path_factory):
    """One small full demo run (store, tour, report), shared by the checks below."""
    import io

    out = tmp_path_factory.mktemp("tour") / "demo"
    said = io.StringIO()
    summary = run_demo(out, orders=400, seed=3, saga_orders=40, replications=4, say=said)
    return out, summary, said.getvalue()


def test_the_tour_writes_a_report_whose_figures_all_exist(toured):
    out, summary, _ = toured
    report = out / "report.html"
    assert report.is_file() and summary.tour.report == report
    text = report.read_text()
    sources = re.findall(r"<img src='([^']+)'", text)
    assert len(sources) == 6 and len(summary.tour.figures) == 6
    for src in sources:
        png = out / src
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", src
    assert "<script" not in text.lower()


def test_the_reports_numbers_agree_with_the_store(toured):
    from esnotebook.report import read_facts

    out, summary, _ = toured
    facts = read_facts(out / "report.html")
    store = es.ParquetEventStore(out / "store")
    frame = store.to_polars()
    placed = frame.filter(frame["event_type"] == "OrderPlaced").height
    assert int(facts["store.events"]) == len(store) == summary.events
    assert int(facts["store.streams"]) == len(store.streams()) == 400
    assert int(facts["store.event_types"]) == frame["event_type"].n_unique()
    assert int(facts["store.orders_placed"]) == placed
    assert int(facts["store.files"]) == len(store.files())
    assert int(facts["store.bytes"]) == store.size_on_disk()
    assert facts["store.first_event"] == str(frame["recorded_at"].min())
    assert facts["store.last_event"] == str(frame["recorded_at"].max())
    # The projection holds one row per order and has read the whole store, three ways alike.
    assert int(facts["projection.rows"]) == placed
    assert int(facts["projection.checkpoint"]) == len(store)
    assert facts["projection.agree"] == "True"
    assert int(facts["projection.steps"]) >= 20


def test_the_saga_snapshot_and_dead_letter_parts_add_up(toured):
    from esnotebook.report import read_facts

    facts = read_facts(toured[0] / "report.html")
    n = int(facts["saga.orders"])
    assert n == 40
    ended = sum(int(facts[f"saga.{k}"]) for k in ("completed", "compensated", "dead_lettered"))
    assert ended == n, "every saga instance finished one way or the other"
    # A declined payment is never retried: each one compensates exactly one order.
    assert int(facts["saga.compensated"]) >= int(facts["saga.injected_permanent"]) > 0
    assert facts["saga.trace_ok"] == "True" and int(facts["saga.trace_events"]) > 3
    assert facts["snapshots.same_state"] == "True"
    assert (
        float(facts["snapshots.mean_tail"])
        < int(facts["snapshots.every"])
        < float(facts["snapshots.mean_stream"])
    )
    assert facts["dlq.caught_poison"] == "True" and int(facts["dlq.dead_letters"]) == 1
    assert facts["dlq.checkpoint"] == facts["dlq.head"]
    assert int(facts["dlq.rows"]) == n


def test_the_capacity_answer_beats_the_consumer_that_lagged(toured):
    from esnotebook.report import read_facts

    facts = read_facts(toured[0] / "report.html")
    rate, consumer = float(facts["capacity.rate"]), float(facts["lag.consumer_rate"])
    # The burst (1000/s for 60 s) swamps a 300/s consumer; the answer must be faster, and
    # below the burst's own rate (a backlog may build as long as it drains within 10 s p99).
    assert consumer < rate < 1000
    assert float(facts["capacity.fraction"]) >= 0.9
    assert float(facts["lag.p99_time_lag"]) > 10


def test_the_demo_summary_html_stays_compact_with_the_tour(toured):
    html = toured[1]._repr_html_()
    assert html.count("<tr") <= 60 and "more rows not shown" in html and "<script" not in html
    assert "esnotebook demo tour" in html


def test_the_printed_tour_summary_names_the_report(toured):
    out, summary, said = toured
    text = "\n".join(summary.lines())
    assert f"report                                {out / 'report.html'}" in text
    assert "tour: consumer lag and the capacity question" in said
    assert summary.tour.to_polars().height == len(summary.tour.facts)


def test_bad_saga_orders_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(DemoError, match=r"'saga_orders' must be an int >= 1 \(got 0\)"):
        run_demo(tmp_path / "demo", orders=10, saga_orders=0)
    with pytest.raises(DemoError, match=r"'replications' must be an int >= 2 \(got 1\)"):
        run_demo(tmp_path / "demo", orders=10, replications=1)
    assert not (tmp_path / "demo").exists()


def test_the_snapshot_model_replays_the_same_tail_as_was_measured(toured):
    """The calibrated model's mean replayed tail is exact (it knows the stream lengths), so
    it must equal the tail measured after the snapshots the tour took."""
    from esnotebook.report import read_facts

    facts = read_facts(toured[0] / "report.html")
    assert float(facts["snapshots.model_tail"]) == pytest.approx(
        float(facts["snapshots.mean_tail"]), abs=0.11
    )
    assert float(facts["snapshots.model_full_ms"]) > 0


def test_the_forecast_section_sets_a_live_run_beside_the_forecast_of_its_arrivals(toured):
    """The report's live run produced the burst it was given (the event count is the
    schedule's Poisson count), and shows its compare table, the errors as predicted /
    measured - 1, and the overlay figure."""
    from esnotebook.live import COMPARED
    from esnotebook.report import read_facts
    from esnotebook.tour import LIVE_BURST, LIVE_DURATION

    out, _, said = toured
    facts = read_facts(out / "report.html")
    starts = [start for start, _ in LIVE_BURST] + [LIVE_DURATION]
    shares = sum(share * (b - a) for (a, share), b in zip(LIVE_BURST, starts[1:]))
    expected = float(facts["forecast.capacity"]) * shares
    # A Poisson count: within 5 standard deviations of its mean.
    assert abs(int(facts["forecast.events"]) - expected) < 5 * expected**0.5
    for metric in ("mean_offset_lag", "max_offset_lag", "p95_time_lag"):
        predicted, measured, error = (
            float(facts[f"forecast.{metric}.{k}"]) for k in ("predicted", "measured", "error")
        )
        assert predicted >= 0 and measured >= 0
        if measured > 0:  # a p95 time lag is 0 when the consumer idled 95% of the time
            assert error == pytest.approx(predicted / measured - 1, abs=0.01)
        else:
            assert math.isnan(error)
    text = (out / "report.html").read_text()
    table = text.split("<h3>forecast vs measured</h3>")[1].split("</table>")[0]
    for metric in COMPARED:
        assert f"<td>{metric}</td>" in table
    assert "<img src='figures/forecast_vs_measured.png'" in text
    assert (out / "figures" / "forecast_vs_measured.png").read_bytes()[:4] == b"\x89PNG"
    assert "tour: forecast vs measured on a live pipeline" in said
