"""Aggregate base class: state only from events, versions, pending events, rejected commands."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esnotebook.aggregates import Aggregate, UnknownEventError, applies, command, rule
from esnotebook.errors import DomainException, EventDataError, EventStoreError
from esnotebook.events import RecordedEvent


class Overdrawn(DomainException):
    pass


class Account(Aggregate):
    def __init__(self, id):
        super().__init__(id)
        self.balance = 0
        self.history: list[int] = []

    @command
    def deposit(self, amount):
        rule(amount > 0, f"deposit must be > 0 (got {amount})")
        self.record("Deposited", amount=amount)

    @command
    def withdraw(self, amount):
        rule(amount <= self.balance, f"cannot withdraw {amount}: balance is {self.balance}", Overdrawn)
        self.record("Withdrawn", amount=amount)

    @command
    def deposit_then_fail(self, amount):
        """Records one event and then breaks a rule: must leave no trace."""
        self.record("Deposited", amount=amount)
        raise Overdrawn("second step refused")

    @applies("Deposited")
    def _deposited(self, data):
        self.balance += data["amount"]
        self.history.append(data["amount"])

    @applies("Withdrawn")
    def _withdrawn(self, data):
        self.balance -= data["amount"]
        self.history.append(-data["amount"])


def recorded(stream_id, pending, start=1):
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return [
        RecordedEvent(start + i, stream_id, start + i, p.type, f"e{i}", at, "c", None, dict(p.data), {})
        for i, p in enumerate(pending)
    ]


def test_record_applies_at_once_and_counts_versions():
    a = Account("a-1")
    a.deposit(10)
    a.withdraw(3)
    assert (a.balance, a.version, a.committed_version) == (7, 2, 0)
    assert [p.type for p in a.pending_events] == ["Deposited", "Withdrawn"]
    a.mark_saved()
    assert (a.pending_events, a.committed_version) == ([], 2)


def test_stream_id_uses_the_class_name_unless_a_prefix_is_set():
    assert Account("a-1").stream_id == "account-a-1"

    class Named(Aggregate):
        stream_prefix = "acct"

    assert Named.stream_id_for("x") == "acct-x"


@given(st.lists(st.tuples(st.sampled_from(["deposit", "withdraw"]), st.integers(-5, 50)), max_size=40))
@settings(max_examples=60, deadline=None)
def test_replaying_the_recorded_events_rebuilds_the_same_state(ops):
    """State comes only from events: replay of what was recorded equals the live aggregate."""
    live = Account("a-1")
    for name, amount in ops:
        try:
            getattr(live, name)(amount)
        except DomainException:
            pass
    replayed = Account.from_events("a-1", recorded(live.stream_id, live.pending_events))
    assert replayed == live
    assert replayed.balance >= 0


def test_a_rejected_command_leaves_state_version_and_pending_unchanged():
    a = Account("a-1")
    a.deposit(5)
    before = (a.get_state(), a.version, a.pending_events)
    with pytest.raises(Overdrawn, match="cannot withdraw 9: balance is 5"):
        a.withdraw(9)
    with pytest.raises(Overdrawn, match="second step refused"):
        a.deposit_then_fail(100)
    assert (a.get_state(), a.version, a.pending_events) == before


def test_rule_raises_the_named_exception_only_when_the_condition_fails():
    rule(True, "never raised")
    with pytest.raises(Overdrawn, match="the message"):
        rule(False, "the message", Overdrawn)


def test_an_event_without_apply_method_is_a_clear_error():
    a = Account("a-1")
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    event = RecordedEvent(1, "account-a-1", 1, "Frozen", "e", at, "c", None, {}, {})
    with pytest.raises(UnknownEventError, match=r"Account has no apply method for event type 'Frozen'.*Deposited, Withdrawn"):
        a.replay([event])
    assert a.version == 0
    with pytest.raises(UnknownEventError, match="'Frozen'"):
        a.record("Frozen")
    assert a.pending_events == []


def test_replay_refuses_a_gap_in_versions():
    a = Account("a-1")
    events = recorded("account-a-1", [type("P", (), {"type": "Deposited", "data": {"amount": 1}})()] * 2)
    events[1] = dataclasses.replace(events[1], version=3)
    with pytest.raises(EventStoreError, match="expected event version 2 next, but got version 3"):
        a.replay(events)


def test_subclasses_inherit_and_override_apply_methods():
    class Audited(Account):
        @applies("Withdrawn")
        def _withdrawn(self, data):
            self.balance -= 2 * data["amount"]

    b = Audited("b")
    b.deposit(10)
    b.withdraw(1)
    assert b.balance == 8
    assert Audited.handled_event_types() == ["Deposited", "Withdrawn"]
    assert Account("x").stream_prefix == "account" and Audited.stream_prefix == "audited"


def test_bad_definitions_and_ids_are_refused_with_the_value_shown():
    with pytest.raises(EventDataError, match="got '1bad'"):
        applies("1bad")
    with pytest.raises(TypeError, match=r"schema_version must be an int >= 1 \(got 0\)"):

        class Broken(Aggregate):
            schema_version = 0

    with pytest.raises(ValueError, match=r"aggregate id must be a non-empty str \(got ''\)"):
        Account("")


def test_html_repr_is_escaped():
    a = Account("<b>x</b>")
    a.deposit(1)
    out = a._repr_html_()
    assert "&lt;b&gt;x&lt;/b&gt;" in out and "<b>x</b>" not in out and "pending" in out


class Tally(Aggregate):
    """Nested mutable state (a dict of lists), so a shallow restore would not be enough."""

    def __init__(self, id):
        super().__init__(id)
        self.by_key: dict[str, list[int]] = {}

    @command
    def add(self, key, n):
        rule(n > 0, f"n must be > 0 (got {n})")
        self.record("Added", key=key, n=n)

    @command
    def add_then_fail(self, key, n, *, meddle=False):
        """Records (mutating nested state through apply), maybe meddles directly, then fails."""
        self.record("Added", key=key, n=n)
        if meddle:
            self.by_key.setdefault("meddled", []).append(-1)
        raise DomainException("refused after recording")

    @applies("Added")
    def _added(self, data):
        self.by_key.setdefault(data["key"], []).append(data["n"])


def _snapshot(a):
    import copy

    return copy.deepcopy((a.get_state(), a.version, a.committed_version, a.pending_events))


OPS = st.lists(
    st.tuples(st.sampled_from(["add", "fail", "meddle", "save"]), st.sampled_from("abc"), st.integers(-2, 5)),
    max_size=25,
)


@given(OPS, st.sampled_from(["fresh", "loaded", "replayed by hand"]))
@settings(max_examples=60, deadline=None)
def test_any_rejected_command_leaves_the_aggregate_exactly_as_before(ops, origin):
    """Whatever the aggregate's origin (fresh, loaded by a repository, replayed by hand) and
    whatever a command did before raising (recorded events, changed nested state, meddled
    with state directly), afterwards state, version and pending events are as before the
    call, and the aggregate still equals a full replay of its events."""
    import esnotebook as es
    from esnotebook.repository import Repository

    store = es.InMemoryEventStore()
    repo = Repository(store, Tally)
    seed = Tally("t-1")
    seed.add("a", 1)
    repo.save(seed)
    tally = {
        "fresh": lambda: Tally("t-2"),
        "loaded": lambda: repo.load("t-1"),
        "replayed by hand": lambda: Tally.from_events("t-1", store.read_stream("tally-t-1")),
    }[origin]()
    for name, key, n in ops:
        before = _snapshot(tally)
        if name == "save":
            if origin != "replayed by hand":
                repo.save(tally)
            continue
        try:
            if name == "add":
                tally.add(key, n)
            else:
                tally.add_then_fail(key, n, meddle=name == "meddle")
        except DomainException:
            assert _snapshot(tally) == before
    saved = store.read_stream(tally.stream_id) if tally.committed_version else []
    replayed = Tally.from_events(tally.id, saved + recorded(tally.stream_id, tally.pending_events, len(saved) + 1))
    assert replayed == tally


def test_a_command_that_cannot_be_restored_says_so_next_to_its_error():
    """When the committed state cannot be rebuilt (its store lost the stream), the original
    error still propagates, with a note telling the caller to reload the aggregate."""
    import esnotebook as es
    from esnotebook.repository import Repository

    store = es.InMemoryEventStore()
    repo = Repository(store, Tally)
    t = Tally("t-1")
    t.add("a", 1)
    repo.save(t)
    t._origin = lambda id, version: Tally(id)  # a broken origin: rebuilds version 0, not 1
    with pytest.raises(DomainException, match="refused after recording") as info:
        t.add_then_fail("a", 2)
    assert any("could not be restored" in n and "reload it" in n for n in info.value.__notes__)
    assert (t.version, t.pending_events) == (1, [])


def test_an_aggregate_whose_init_takes_more_than_the_id_is_copied_before_commands():
    """A fresh instance cannot be rebuilt from its id alone when __init__ takes more: the
    command falls back to copying the state first, and still rolls back exactly."""

    class Scaled(Tally):
        def __init__(self, id, factor=2):
            super().__init__(id)
            self.factor = factor

    s = Scaled("s-1", factor=3)
    s.add("a", 1)
    before = _snapshot(s)
    with pytest.raises(DomainException):
        s.add_then_fail("a", 2, meddle=True)
    assert _snapshot(s) == before and s.factor == 3


def test_copies_and_pickles_of_a_loaded_aggregate_leave_its_repository_behind():
    """A loaded aggregate knows the repository that reloads it; a deep copy or a pickle of
    it does not drag the repository (and its store) along, and still rolls back exactly."""
    import copy
    import pickle

    import esnotebook as es
    from esnotebook.repository import Repository

    store = es.InMemoryEventStore()
    repo = Repository(store, Account)
    a = Account("a-1")
    a.deposit(5)
    repo.save(a)
    loaded = repo.load("a-1")
    for twin in (copy.deepcopy(loaded), pickle.loads(pickle.dumps(loaded))):
        assert twin == loaded and "Repository" not in repr(twin.__dict__)
        with pytest.raises(Overdrawn):
            twin.deposit_then_fail(7)
        assert (twin.balance, twin.history, twin.version, twin.pending_events) == (5, [5], 1, [])
