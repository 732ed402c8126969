"""Progress bars: ``tqdm.auto`` (a widget in Jupyter, text in a terminal), imported only when
a bar is shown, and silent whenever ``TQDM_DISABLE`` is set (CI sets it)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any


def progress_bar(
    iterable: Iterable[Any] | None = None, *, enabled: bool = True, **kwargs: Any
) -> Any:
    """A ``tqdm.auto`` bar over ``iterable`` (or a manual one), shown when ``enabled``.

    An explicit ``disable`` argument would override tqdm's own reading of ``TQDM_DISABLE``,
    so the environment is consulted here.
    """
    from tqdm.auto import tqdm

    quiet = not enabled or os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false")
    return tqdm(iterable, disable=quiet, **kwargs)
