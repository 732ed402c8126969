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
