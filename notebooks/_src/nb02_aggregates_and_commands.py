"""02: aggregates, rules, the command bus, idempotency, time travel."""

CELLS = [
    ("md", r'''
# 02 · Aggregates and commands

An **aggregate** is the unit of consistency on the write side: one order, one stock item,
one payment. It is never saved as a row. To use it you **load** it by replaying its
stream's events, call a **command method** that checks the business rules against that
state and **records** new events, then **save** those events with the version you loaded as
the expected version. If someone else saved in between, the save fails with a
`ConcurrencyError` instead of silently overwriting their change.

Event handlers (`@es.applies`) only change state; they never check rules, because replaying
history must always succeed. Rules live in commands (`@es.command`).
'''),
    ("params", r'''
INITIAL_POINTS = 100   # points a loyalty card starts with in the exercise
'''),
    ("code", r'''
import polars as pl

import esnotebook as es

ex = es.examples
'''),
    ("md", r'''
## The order aggregate, by hand

`es.examples.Order` is the shipped order aggregate. Command methods record pending events;
nothing is stored until a repository saves them.
'''),
    ("code", r'''
order = ex.Order("o-1")
order.place("ada")
order.add_item("tea", 2, 350)
order.add_item("cake", 1, 400)
order.status, order.total, [p.type for p in order.pending_events]
'''),
    ("code", r'''
order.pay(order.total)
try:
    order.add_item("jam", 1, 250)          # a rule: items change only before payment
except es.DomainException as e:
    print(type(e).__name__, "-", e)
'''),
    ("md", r'''
## Saving and loading with a repository

`es.Repository(store, Order)` saves pending events on the aggregate's stream (`order-o-1`)
and loads an aggregate by replaying them. `history` shows the state after every event, and
`load(..., version=n)` travels back in time.
'''),
    ("code", r'''
store = es.InMemoryEventStore()
orders = es.Repository(store, ex.Order)
orders.save(order)
orders.history("o-1")
'''),
    ("code", r'''
then = orders.load("o-1", version=2)        # after the first ItemAdded
now = orders.load("o-1")
(then.status, then.total), (now.status, now.total)
'''),
    ("md", r'''
Two writers load the same order, both change it, both save: the second save is refused
because the stream moved on since it loaded. Nothing of it is written.
'''),
    ("code", r'''
first = ex.Order("o-2"); first.place("bob"); orders.save(first)
a, b = orders.load("o-2"), orders.load("o-2")
a.add_item("tea", 1, 350); orders.save(a)
b.add_item("cake", 1, 400)
try:
    orders.save(b)
except es.ConcurrencyError as e:
    print(e)
[e.event_type for e in store.read_stream("order-o-2")]
'''),
    ("md", r'''
## Commands and the command bus

In an application the aggregate is driven by **commands**: small frozen values naming an
intent (`PlaceOrder`, `AddItem`, ...). The bus finds the handler, loads the aggregate,
saves its events, **retries on a concurrency conflict** (reloading the fresh state), and
reports a `CommandResult`. A broken rule gives `status="rejected"` and stores nothing.

Every stored event carries the command's `correlation_id` and has the command as its
`causation_id`, so you can later trace what caused what (notebook 05).
'''),
    ("code", r'''
bus = ex.order_domain_bus(store)
placed = bus.dispatch(ex.PlaceOrder("o-3", "cy"))
added = bus.dispatch(ex.AddItem("o-3", "tea", 3, 350))
removed_too_much = bus.dispatch(ex.RemoveItem("o-3", "tea", 5), on_reject="return")
placed.status, added.status, removed_too_much.status, str(removed_too_much.error)
'''),
    ("code", r'''
added
'''),
    ("md", r'''
### Idempotency: the same command twice changes nothing

Networks deliver twice. A command with an `idempotency_key` is handled once; a repeat
returns the first result with `status="duplicate"` and stores nothing.
`es.DurableIdempotency(store)` keeps the keys in the store, so they survive a restart.
'''),
    ("code", r'''
stock_store = es.InMemoryEventStore()
stock_bus = ex.order_domain_bus(stock_store, middleware=[es.DurableIdempotency(stock_store)])
first = stock_bus.dispatch(ex.AddStock("tea", 10, idempotency_key="delivery-17"))
again = stock_bus.dispatch(ex.AddStock("tea", 10, idempotency_key="delivery-17"))
first.status, again.status, stock_bus.repository(ex.Inventory).load("tea").available
'''),
    ("md", r'''
## Your own aggregate

An aggregate is a class with a `stream_prefix`, command methods that check rules and
`record` events, and `@es.applies` handlers that change state.

## Exercise

Complete the `LoyaltyCard` below: `redeem(points)` must **refuse** (raise
`es.DomainException`) when the card has fewer points than asked, and record `PointsRedeemed`
otherwise. The reference answer is filled in; break it (remove the rule) and watch the
check fail.
'''),
    ("code", r'''
class LoyaltyCard(es.Aggregate):
    stream_prefix = "card"

    def __init__(self, id):
        super().__init__(id)
        self.points = 0

    @es.command
    def earn(self, points):
        if points <= 0:
            raise es.DomainException(f"'points' must be > 0 (got {points})")
        self.record("PointsEarned", points=points)

    @es.command
    def redeem(self, points):
        if points > self.points:
            raise es.DomainException(f"card {self.id!r}: cannot redeem {points} points (has {self.points})")
        self.record("PointsRedeemed", points=points)

    @es.applies("PointsEarned")
    def _earned(self, data):
        self.points += data["points"]

    @es.applies("PointsRedeemed")
    def _redeemed(self, data):
        self.points -= data["points"]
'''),
    ("code", r'''
# Check: overdrawing is refused and stores nothing; the balance equals a replay of the events.
cards = es.Repository(es.InMemoryEventStore(), LoyaltyCard)
card = LoyaltyCard("c-1"); card.earn(INITIAL_POINTS); card.redeem(INITIAL_POINTS // 4); cards.save(card)
card = cards.load("c-1")
try:
    card.redeem(INITIAL_POINTS)
    refused = False
except es.DomainException:
    refused = True
assert refused, "redeem() should refuse to take more points than the card has"
assert len(card.pending_events) == 0, "a refused command must record nothing"
events = cards.store.to_polars()
replayed = events.select(pl.when(pl.col("event_type") == "PointsEarned").then(pl.col("points"))
                           .otherwise(-pl.col("points")).sum()).item()
assert cards.load("c-1").points == replayed == INITIAL_POINTS - INITIAL_POINTS // 4
print("correct:", cards.load("c-1").points, "points left")
'''),
]
