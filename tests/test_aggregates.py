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
