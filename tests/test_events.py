"""The event model: NewEvent checks its input and fills ids; RecordedEvent is immutable."""

from __future__ import annotations

import dataclasses
import uuid

import numpy as np
import pytest
from hypothesis import given, strategies as st

from esnotebook.errors import EventDataError
from esnotebook.events import NewEvent, RecordedEvent, new_ids


def test_a_new_event_without_correlation_starts_its_own_chain():
    e = NewEvent("OrderPlaced", {"order_id": "o-1"})
    assert uuid.UUID(e.event_id).version == 4
    assert e.correlation_id == e.event_id and e.causation_id is None


def test_given_ids_are_kept_and_uuid_objects_accepted():
    eid = uuid.uuid4()
    e = NewEvent("A", {}, event_id=eid, correlation_id="corr", causation_id="cause")
    assert (e.event_id, e.correlation_id, e.causation_id) == (str(eid), "corr", "cause")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": "", "data": {}}, "event type must be a name.*got ''"),
        ({"type": "1abc", "data": {}}, "event type must be a name"),
        ({"type": "has space", "data": {}}, "event type must be a name"),
        ({"type": "A", "data": [1]}, "data must be a dict \\(got list\\)"),
        ({"type": "A", "data": {}, "metadata": "x"}, "metadata must be a dict or None \\(got str\\)"),
        ({"type": "A", "data": {}, "event_id": "not-a-uuid"}, "event_id must be a UUID string \\(got 'not-a-uuid'\\)"),
        ({"type": "A", "data": {}, "correlation_id": ""}, "correlation_id must be a non-empty string"),
        ({"type": "A", "data": {}, "causation_id": 5}, "causation_id must be a non-empty string or None \\(got 5\\)"),
    ],
)
def test_bad_new_events_name_what_was_wrong(kwargs, message):
    with pytest.raises(EventDataError, match=message):
        NewEvent(kwargs.pop("type"), kwargs.pop("data"), **kwargs)


def test_events_are_frozen():
    e = NewEvent("A", {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.type = "B"  # type: ignore[misc]
    assert not hasattr(e, "__dict__") and "__slots__" in dir(RecordedEvent)


@given(st.integers(0, 300))
def test_new_ids_are_distinct_version_4_uuids(n):
    ids = new_ids(n)
    assert ids.shape == (n,) and ids.dtype == np.dtype("S36")
    parsed = [uuid.UUID(i.decode()) for i in ids]
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in parsed)
    assert len(set(parsed)) == n
    assert all(str(u) == i.decode() for u, i in zip(parsed, ids))


def test_a_forked_child_never_hands_out_its_parents_pooled_ids():
    import os

    from esnotebook.events import new_id

    new_id()  # the pool now holds ids the parent will hand out next
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, ",".join(new_id() for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = set(os.read(read, 1 << 16).decode().split(","))
    os.close(read)
    parent = {new_id() for _ in range(2000)}
    assert len(child) == 50 and not child & parent
