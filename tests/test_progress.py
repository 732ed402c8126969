"""Progress bars show when asked and stay silent whenever TQDM_DISABLE is set (as in CI)."""

from __future__ import annotations

import pytest

from esnotebook._progress import progress_bar


@pytest.mark.parametrize(
    ("env", "enabled", "silent"),
    [("1", True, True), ("", True, False), ("0", True, False), ("", False, True), ("1", False, True)],
)
def test_tqdm_disable_silences_every_bar(monkeypatch, env, enabled, silent):
    monkeypatch.setenv("TQDM_DISABLE", env)
    with progress_bar(total=3, enabled=enabled, desc="t") as bar:
        bar.update(3)
        assert bar.disable is silent


def test_the_generator_bar_follows_the_environment(monkeypatch, capsys):
    """A large generation draws its bar on stderr unless TQDM_DISABLE is set."""
    from esnotebook.datasets import generate_orders, orders

    monkeypatch.setattr(orders, "PROGRESS_FROM", 10)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    generate_orders(20, seed=1)
    assert "generating" not in capsys.readouterr().err
    monkeypatch.setenv("TQDM_DISABLE", "")
    generate_orders(20, seed=1)
    assert "generating" in capsys.readouterr().err


class FakeTimer:
    """Seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_model_eta_is_fitted_on_the_first_three_chunks_and_counts_down():
    """Without costs the model is fitted on the first chunk (setup as fixed cost, its rate
    per event), then on the next two (their pooled rate; the first chunk's excess is fixed
    cost too), and not after: its time left is per_event * events still to go, whatever
    later chunks take, so a wrong forecast shows beside tqdm's rate-based ETA."""
    from esnotebook._progress import ModelEta

    timer = FakeTimer()
    timer.now = 2.0  # the setup took 2 s
    bar = progress_bar(total=1000, enabled=False)
    eta = ModelEta(bar, total=1000, began=0.0, timer=timer)
    assert eta.predicted is None and eta.left is None
    timer.now += 30.0  # first chunk: 100 events in 30 s (warm-up included)
    eta.update(100)
    assert eta.per_event == pytest.approx(0.3) and eta.overhead == pytest.approx(2.0)
    assert eta.left == pytest.approx(0.3 * 900) and bar.postfix == "model 04:30 left"
    timer.now += 10.0  # second chunk: 100 events in 10 s, so 20 s of the first were warm-up
    eta.update(100)
    assert eta.per_event == pytest.approx(0.1) and eta.overhead == pytest.approx(22.0)
    timer.now += 20.0  # third: 100 in 20 s; the second and third pooled: 0.15 s per event
    eta.update(100)
    assert eta.per_event == pytest.approx(0.15) and eta.overhead == pytest.approx(2.0 + 30.0 - 15.0)
    assert eta.predicted == pytest.approx(17.0 + 0.15 * 1000) and bar.postfix == "model 01:45 left"
    timer.now += 500.0  # a slow fourth chunk changes nothing: the forecast stands
    eta.update(100)
    assert eta.predicted == pytest.approx(167.0) and eta.left == pytest.approx(90.0)
    assert bar.postfix == "model 01:30 left"
    eta.update(600)
    assert eta.left == 0 and bar.postfix == "model 00:00 left"


def test_given_costs_the_model_eta_forecasts_from_the_start():
    """With a calibrated per-event and fixed cost the bar shows the model's time left before
    the first chunk, and no chunk's timing changes the forecast."""
    from esnotebook._progress import ModelEta

    timer = FakeTimer()
    bar = progress_bar(total=50, enabled=False)
    eta = ModelEta(bar, total=50, began=0.0, per_event=2.0, overhead=7.0, timer=timer)
    assert eta.predicted == 107.0 and bar.postfix == "model 01:40 left"
    timer.now = 1000.0
    eta.update(20)
    assert (eta.per_event, eta.overhead, eta.left) == (2.0, 7.0, 60.0)
    assert bar.postfix == "model 01:00 left"
