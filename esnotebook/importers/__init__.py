"""Bring your own events in, and take them out again.

- :func:`import_eventsourcing_sqlite`, :func:`import_eventsourcing_postgres`: the stored
  events of an application built with the Python ``eventsourcing`` library.
- :func:`import_jsonl`, :func:`import_csv`: files, with a column mapping and a choice
  between refusing a file with bad rows and rejecting just those rows.
- :func:`export_jsonl`: any store to JSON Lines, which :func:`import_jsonl` reads back.

Every import checks everything first and then commits once, atomically: an import either
happens whole (minus the rejected rows, when asked for) or not at all.
"""

from ._report import ImportRefusedError, ImportReport, problems_frame
from .eventsourcing import (
    import_eventsourcing_postgres,
    import_eventsourcing_sqlite,
    read_eventsourcing_postgres,
    read_eventsourcing_sqlite,
)
from .files import DEFAULT_COLUMNS, export_jsonl, import_csv, import_jsonl

__all__ = [
    "DEFAULT_COLUMNS",
    "ImportRefusedError",
    "ImportReport",
    "export_jsonl",
    "import_csv",
    "import_eventsourcing_postgres",
    "import_eventsourcing_sqlite",
    "import_jsonl",
    "problems_frame",
    "read_eventsourcing_postgres",
    "read_eventsourcing_sqlite",
]
