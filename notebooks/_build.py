"""Build the workshop notebooks from their reviewable sources in ``notebooks/_src/``.

Each ``_src/nbNN_<name>.py`` holds ``CELLS``: a list of ``(kind, source)`` pairs where
``kind`` is ``"md"``, ``"code"`` or ``"params"`` (a code cell tagged ``parameters``, so
papermill and the notebook test can override the small defaults). The ``.ipynb`` files are
written without outputs, so a diff shows only what a person changed.

Run ``python notebooks/_build.py`` after editing a source; ``--check`` fails (exit 1) when a
stored notebook differs from what its source builds.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "_src"
KINDS = ("md", "code", "params")


def _load_cells(source: Path) -> list[tuple[str, str]]:
    spec = importlib.util.spec_from_file_location(source.stem, source)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.CELLS


def build(source: Path) -> nbformat.NotebookNode:
    """The notebook ``source`` describes, with stable cell ids and no outputs."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    stem = source.stem.removeprefix("nb")
    for i, (kind, text) in enumerate(_load_cells(source)):
        if kind not in KINDS:
            raise ValueError(f"{source.name}: cell {i} kind must be one of {KINDS} (got {kind!r})")
        text = text.strip("\n")
        if kind == "md":
            cell = nbformat.v4.new_markdown_cell(text)
        else:
            cell = nbformat.v4.new_code_cell(text)
            if kind == "params":
                cell.metadata["tags"] = ["parameters"]
        cell.id = f"{stem[:2]}-{i:02d}"  # stable ids keep rebuilds diff-free
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def target_of(source: Path) -> Path:
    return HERE / (source.stem.removeprefix("nb") + ".ipynb")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a notebook is stale")
    args = parser.parse_args(argv)
    stale = []
    for source in sorted(SOURCES.glob("nb*.py")):
        text = nbformat.writes(build(source)) + "\n"
        target = target_of(source)
        if args.check:
            if not target.exists() or target.read_text() != text:
                stale.append(target.name)
        else:
            target.write_text(text)
            print(f"wrote {target.relative_to(HERE.parent)}")
    if stale:
        print("stale notebooks (run python notebooks/_build.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
