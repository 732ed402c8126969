"""The workshop notebooks: stored clean, built from their sources, public API only, and every
one runs top to bottom (a failing cell fails the run, naming the notebook and the cell)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT = 240  # seconds; a cell that hangs fails instead of stalling CI

ids = [p.stem for p in NOTEBOOKS]


def _code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def _python_of(source: str) -> str:
    # IPython magics and shell escapes are not Python; blank them so ast can read the rest.
    lines = source.splitlines()
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in lines)


def _private_uses(source: str) -> list[str]:
    """The esnotebook names a cell reaches that are private (a part starting with "_")."""
    found = []
    for node in ast.walk(ast.parse(_python_of(source))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "esnotebook":
            parts = node.module.split(".") + [a.name for a in node.names]
            found += [f"from {node.module} import {a.name}" for a in node.names
                      if any(p.startswith("_") for p in parts)]  # fmt: skip
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "esnotebook" and any(p.startswith("_") for p in parts):
                    found.append(alias.name)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "es"
            and node.attr.startswith("_")
            and node.attr != "__version__"
        ):
            found.append(f"es.{node.attr}")
    return found


def test_there_is_a_workshop():
    """The numbered notebooks 00 to 10 are all there."""
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(11)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_is_stored_without_outputs(path):
    """A stored notebook has no outputs and no execution counts (clean diffs, no stale results)."""
    nb = nbformat.read(path, as_version=4)
    dirty = [
        i for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count is not None)
    ]  # fmt: skip
    assert dirty == [], f"{path.name}: cells {dirty} carry outputs or execution counts"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_first_code_cell_is_tagged_parameters(path):
    """The first code cell holds the small defaults and is tagged `parameters`."""
    first = _code_cells(nbformat.read(path, as_version=4))[0]
    tags = first.metadata.get("tags", [])
    assert "parameters" in tags, f"{path.name}: first code cell is not tagged 'parameters'"
    assert "import" not in first.source, f"{path.name}: the parameters cell should hold only values"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_uses_only_public_names(path):
    """No notebook reaches into a private esnotebook module or name."""
    nb = nbformat.read(path, as_version=4)
    private = [(c.id, use) for c in _code_cells(nb) for use in _private_uses(c.source)]
    assert private == [], f"{path.name}: private esnotebook names used: {private}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_opens_with_prose_and_ends_with_a_check(path):
    """Each notebook explains before it codes, and ends with an exercise whose check asserts."""
    nb = nbformat.read(path, as_version=4)
    prose = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert nb.cells[0].cell_type == "markdown", f"{path.name}: the first cell should explain"
    assert any("Exercise" in text for text in prose), f"{path.name}: no exercise"
    last = _code_cells(nb)[-1].source
    assert "assert" in last, f"{path.name}: the last code cell should check the exercise"


def test_stored_notebooks_match_their_sources():
    """Every .ipynb is exactly what `python notebooks/_build.py` makes of its source."""
    out = subprocess.run(
        [sys.executable, str(NOTEBOOK_DIR / "_build.py"), "--check"],
        check=False, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_private_name_detector_catches_private_imports():
    """The public-API check itself flags underscore modules and names (so it can fail)."""
    assert _private_uses("from esnotebook._dask import partitioned_rebuild") != []
    assert _private_uses("import esnotebook.store._frames") != []
    assert _private_uses("x = es._schema") != []
    public = "import esnotebook as es\nfrom esnotebook.runner import ProjectionRunner\nes.sim"
    assert _private_uses(public) == []


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_notebook_runs(path, tmp_path, monkeypatch):
    """The notebook runs top to bottom with a fresh kernel, in a temporary folder, headless."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("ESNOTEBOOK_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    # The notebooks' scratch stores (tempfile.mkdtemp) go away with the test's folder.
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3",
        resources={"metadata": {"path": str(run_dir)}},
    )  # fmt: skip
    try:
        client.execute()
    except CellExecutionError as exc:
        failed = next(
            (i for i, c in enumerate(nb.cells) if c.cell_type == "code"
             and any(o.get("output_type") == "error" for o in c.get("outputs", []))),
            None,
        )  # fmt: skip
        pytest.fail(f"{path.name}: cell {failed} failed\n{exc}", pytrace=False)
