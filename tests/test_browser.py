"""The workshop in a real browser: JupyterLab driven by Playwright in headless Chromium.

Notebooks that pass under nbclient can still break where people use them (a widget that
never renders, a plot that does not update). These tests start JupyterLab on a free
loopback port with a token, open it in Debian's Chromium (no browser download), run the
notebooks as a participant would, and save screenshots to ``test-artifacts/``.

Chromium comes from Debian's ``chromium`` package (``.ci/run`` installs it); set
``ESNOTEBOOK_CHROMIUM`` to use another binary. In CI the tests never skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("ESNOTEBOOK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "esnotebook-browser-test"

def _has_lab() -> bool:
    try:
        import jupyterlab  # noqa: F401
    except ImportError:
        return False
    return True


def _require(condition: bool, what: str) -> None:
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing; .ci/run installs it")
    pytest.skip(f"{what} is not installed here")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server over a scratch copy of the notebooks; stopped however the tests end."""
    _require(Path(CHROMIUM).exists(), f"Chromium ({CHROMIUM})")
    _require(_has_lab(), "JupyterLab")
    try:
        import playwright  # noqa: F401
    except ImportError:
        _require(False, "Playwright (pip package)")

    base = tmp_path_factory.mktemp("lab")
    root = base / "notebooks"
    shutil.copytree(ROOT / "notebooks", root, ignore=shutil.ignore_patterns("_src", "_build.py"))
    # No news or update checks: the machine has no network, and their pop-ups cover the page.
    settings = base / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = {
        **os.environ,
        "ESNOTEBOOK_DATA": str(base / "data"),
        "TQDM_DISABLE": "1",
        "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
    }
    env.pop("MPLBACKEND", None)  # the notebooks' figures render inline, as for a participant
    port = _free_port()
    log = open(base / "jupyterlab.log", "wb")  # noqa: SIM115 - closed in teardown
    server = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
            "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
            f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2) as r:
                    json.load(r)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "JupyterLab did not start:\n" + (base / "jupyterlab.log").read_text()[-3000:]
                    ) from None
                time.sleep(0.5)
        yield url
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(server.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()


@pytest.fixture(scope="module")
def browser(lab, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )  # fmt: skip
        try:
            yield context
        finally:
            context.close()


# JavaScript run in the page, through the app JupyterLab exposes (expose_app_in_browser).
_NOTEBOOK_STATE = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext) return null;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = [];
  for (const cell of panel.content.model.cells) {
    if (cell.type !== 'code') continue;
    const outputs = cell.outputs.toJSON();
    cells.push({
      count: cell.executionCount,
      errors: outputs.filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue),
      images: outputs.filter(o => o.data && o.data['image/png']).length,
    });
  }
  return {status: kernel ? kernel.status : 'none', cells: cells};
}"""


def _open_and_run_all(page, lab_url: str, notebook: str, *, timeout: float = 300) -> dict:
    # ?reset: a fresh workspace, so the notebook opened here is the only one and the current one.
    page.goto(f"{lab_url}/lab/tree/{notebook}?reset&token={TOKEN}")
    page.wait_for_function(
        """(path) => {
          const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
          const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
          return k && k.status === 'idle' && w.context.path.endsWith(path);
        }""",
        arg=notebook,
        timeout=120_000,
    )
    page.evaluate(
        """() => { const app = window.jupyterapp;
                   app.shell.activateById(app.shell.currentWidget.id);
                   return app.commands.execute('notebook:run-all-cells'); }"""
    )
    deadline = time.monotonic() + timeout
    while True:
        state = page.evaluate(_NOTEBOOK_STATE)
        done = state and state["status"] == "idle" and all(c["count"] for c in state["cells"])
        if done or (state and any(c["errors"] for c in state["cells"])):
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"{notebook} did not finish within {timeout:.0f} s: {state}")
        time.sleep(1)


def test_index_notebook_runs_in_jupyterlab_without_errors_and_renders_its_figures(lab, browser):
    """00_index run cell by cell in JupyterLab: every code cell executes, none errors, and
    its figures are on screen as real images."""
    page = browser.new_page()
    state = _open_and_run_all(page, lab, "00_index.ipynb")
    errors = [e for c in state["cells"] for e in c["errors"]]
    assert errors == []
    assert all(c["count"] for c in state["cells"])
    assert sum(c["images"] for c in state["cells"]) >= 1
    shown = page.evaluate(
        "() => [...document.querySelectorAll('.jp-OutputArea-output img')]"
        ".filter(i => i.complete && i.naturalWidth > 100).length"
    )
    assert shown >= 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "00_index.png"), full_page=True)
    page.close()


def test_lag_explorer_replots_when_the_consumer_rate_slider_moves(lab, browser):
    """In 07_capacity_planning the lag explorer renders as a live widget; moving its
    consumer-rate slider in the browser recomputes the plot and the summary."""
    page = browser.new_page()
    state = _open_and_run_all(page, lab, "07_capacity_planning.ipynb")
    assert [e for c in state["cells"] for e in c["errors"]] == []
    explorer = page.locator(".esn-lag-explorer").first
    explorer.wait_for(state="visible", timeout=60_000)
    explorer.scroll_into_view_if_needed()
    plot = explorer.locator(".esn-lag-plot")
    summary = explorer.locator(".esn-lag-summary")
    plot.wait_for(state="visible", timeout=60_000)
    before_plot, before_summary = plot.get_attribute("src"), summary.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    explorer.screenshot(path=str(ARTIFACTS / "lag_explorer_before.png"))

    handle = explorer.locator(".esn-control-consumer-rate .noUi-handle")
    handle.focus()
    for _ in range(5):
        handle.press("ArrowRight")
    rate = float(explorer.locator(".esn-control-consumer-rate .widget-readout").inner_text())
    # continuous_update=False: the model changes as each key is released; wait until the
    # summary reports the group capacity of the rate the slider now shows (one consumer).
    page.wait_for_function(
        "([sel, want]) => { const s = document.querySelector(sel); return s && s.innerText.includes(want); }",
        arg=[".esn-lag-explorer .esn-lag-summary", f"{rate:.1f} events/s"],
        timeout=60_000,
    )
    page.wait_for_function(
        "([sel, old]) => { const i = document.querySelector(sel); return i && i.getAttribute('src') !== old "
        "&& i.complete && i.naturalWidth > 100; }",
        arg=[".esn-lag-explorer .esn-lag-plot", before_plot],
        timeout=60_000,
    )
    assert summary.inner_text() != before_summary
    assert plot.get_attribute("src") != before_plot
    explorer.screenshot(path=str(ARTIFACTS / "lag_explorer_after.png"))
    page.close()
