"""``python -m esnotebook``: the same as the ``esnotebook`` command."""

from esnotebook.cli import main

raise SystemExit(main())
