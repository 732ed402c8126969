"""Each store, driven by random sequences of appends, bulk imports, bad calls, reopenings and
compactions, stays equal to a simple model: a list of (stream, type, data) in append order."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import hypothesis.strategies as st
import polars as pl
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from esnotebook.errors import ConcurrencyError, EventDataError
from esnotebook.events import NewEvent
from esnotebook.store import InMemoryEventStore, ParquetEventStore

STREAMS = st.sampled_from(["order-1", "order-2", "order-3"])
# Two types with fixed field types; "Note" gains a field mid-way sometimes.
PAYLOADS = st.one_of(
    st.builds(lambda x: ("Counted", {"x": x}), st.integers(-5, 5)),
    st.builds(lambda y: ("Note", {"y": y}), st.text(max_size=3)),
    st.builds(lambda y, z: ("Note", {"y": y, "z": z}), st.text(max_size=3), st.booleans()),
)


class StoreModel(RuleBasedStateMachine):
    backend = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="es-stateful-"))
        self.store = self._open()
        self.model: list[tuple[str, str, dict]] = []

    def _open(self):
        if self.backend == "memory":
            return InMemoryEventStore()
        return ParquetEventStore(self.folder / "store", durable=False)

    def version(self, stream: str) -> int:
        return sum(1 for s, _, _ in self.model if s == stream)

    @rule(stream=STREAMS, payloads=st.lists(PAYLOADS, max_size=3), mode=st.sampled_from(["any", "right", "wrong"]))
    def append(self, stream, payloads, mode):
        current = self.version(stream)
        expected = {"any": None, "right": current, "wrong": current + 1}[mode]
        events = [NewEvent(t, d) for t, d in payloads]
        if mode == "wrong":
            with pytest.raises(ConcurrencyError):
                self.store.append(stream, events, expected_version=expected)
            return
        got = self.store.append(stream, events, expected_version=expected)
        head = len(self.model)
        assert [e.position for e in got] == list(range(head + 1, head + 1 + len(events)))
        assert [e.version for e in got] == list(range(current + 1, current + 1 + len(events)))
        self.model.extend((stream, t, d) for t, d in payloads)

    @rule(rows=st.lists(st.tuples(STREAMS, st.integers(-5, 5)), min_size=1, max_size=4))
    def append_frame(self, rows):
        frame = pl.DataFrame({"stream_id": [s for s, _ in rows], "event_type": ["Counted"] * len(rows),
                              "x": [x for _, x in rows]})  # fmt: skip
        self.store.append_frame(frame)
        self.model.extend((s, "Counted", {"x": x}) for s, x in rows)

    @rule(stream=STREAMS)
    def changing_a_field_type_is_refused(self, stream):
        if not any(t == "Counted" for _, t, _ in self.model):
            return
        with pytest.raises(EventDataError, match="'x'"):
            self.store.append(stream, [NewEvent("Counted", {"x": 1}), NewEvent("Counted", {"x": "one"})])

    @precondition(lambda self: self.backend == "parquet")
    @rule()
    def reopen(self):
        self.store.close()
        self.store = self._open()

    @precondition(lambda self: self.backend == "parquet")
    @rule(max_events=st.integers(1, 8))
    def compact(self, max_events):
        self.store.compact(max_events=max_events)

    @invariant()
    def matches_the_model(self):
        store, model = self.store, self.model
        assert store.head_position == len(store) == len(model)
        events = list(store.read_all())
        assert [e.position for e in events] == list(range(1, len(model) + 1))
        fields = {t: set() for _, t, _ in model}
        for _, t, d in model:
            fields[t] |= set(d)
        assert [(e.stream_id, e.event_type) for e in events] == [(s, t) for s, t, _ in model]
        for e, (_, t, d) in zip(events, model):
            assert e.data == {f: d.get(f) for f in fields[t]}
        order = list(dict.fromkeys(s for s, _, _ in model))
        assert store.streams() == order
        for s in order:
            assert store.stream_version(s) == self.version(s)
            assert [e.version for e in store.read_stream(s)] == list(range(1, self.version(s) + 1))
        df = store.to_polars()
        assert df["position"].to_list() == list(range(1, len(model) + 1))
        # Every event carries its stream's number: the stream's index in streams().
        numbered = store.to_polars(with_stream_number=True)
        assert numbered["stream_number"].to_list() == [order.index(s) for s, _, _ in model]

    def teardown(self):
        close = getattr(self.store, "close", None)
        if close:
            close()
        shutil.rmtree(self.folder, ignore_errors=True)


class ParquetStoreModel(StoreModel):
    backend = "parquet"


_settings = settings(max_examples=25, stateful_step_count=12, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
TestInMemoryStoreAgainstModel = StoreModel.TestCase
TestInMemoryStoreAgainstModel.settings = _settings
TestParquetStoreAgainstModel = ParquetStoreModel.TestCase
TestParquetStoreAgainstModel.settings = _settings
