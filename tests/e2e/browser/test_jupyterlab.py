"""A new user's JupyterLab session in a real browser (Debian's Chromium, driven by Playwright):
`make lab`, then *Run → Run All Cells* in 01 to 05 in order, as the README says.

Each notebook runs on the project's kernel without a kernel prompt and without an error; the
only pink (stderr) box is a real warning, at most one in the whole run (the fallback to the
5,000-digit sample when OpenML does not answer); progress bars are widgets that end at 100 %;
the figures render; the endpoint agrees 100 % with the notebook; `make lab`'s terminal has no
kernel transport warning; and git stays clean, before and after a save on purpose.

JupyterLab serves a throwaway repository of this clone's notebooks (tests/notebook_repo.py);
the run writes under the test's folder (``MNIST_LAMBDA_OUTPUTS``, and 02's ``model_dir`` set in
its parameters cell as a user would), never into the clone.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import urllib3
from notebook_repo import git, make_notebook_repo
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright
from repo_paths import ROOT

from mnist_lambda import paths
from mnist_lambda.deploy import targets
from mnist_lambda.local_stack import procs
from mnist_lambda.pipeline import runner, state

CHROMIUM = os.environ.get("MNIST_LAMBDA_CHROMIUM") or shutil.which("chromium")
NOTEBOOKS = (
    "01_sample_data",
    "02_train_model",
    "03_upload_to_s3",
    "04_deploy",
    "05_evaluate_endpoint",
)
CHROMIUM_ARGS = [  # a closed network: no background connections (docs: env machines)
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"
"""The notebook tab in front (the others stay in the DOM, hidden)."""
RUN_TIMEOUT_S = 600
KERNEL_WAIT_MS = 60_000
KERNEL_SETTLED = """panel => {
    const name = document.querySelector(panel + ' .jp-KernelName');
    return document.querySelector('.jp-Dialog') !== null
        || (name !== null && !['', 'No Kernel'].includes(name.innerText.trim()));
}"""
"""A kernel prompt is open, or the toolbar names a kernel (JupyterLab says "No Kernel" while
the notebook's session is not yet set up)."""

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(
        CHROMIUM is None and os.environ.get("CI") != "true",
        reason="needs Chromium (apt-get install chromium; CI installs it)",
    ),
]


def _set_model_dir(notebooks: Path, model_dir: Path) -> None:
    """02's parameters cell edited as a user would: the serving model goes to ``model_dir``."""
    path = notebooks / "02_train_model.ipynb"
    text = path.read_text(encoding="utf-8")
    default = 'model_dir: str = \\"\\"'
    assert default in text, "02's parameters cell no longer has model_dir"
    path.write_text(text.replace(default, f'model_dir: str = \\"{model_dir}\\"'), "utf-8")


@dataclass
class Lab:
    url: str
    token: str
    repo: Path
    run_dir: Path
    log: Path


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """`make lab` serving a throwaway repository; stopped, with the run's local stack, after."""
    if CHROMIUM is None:
        pytest.fail("CI=true and no Chromium: .ci/run installs it (scripts/browser.sh)")
    repo = make_notebook_repo(
        tmp_path / "repo", edit=lambda nbs: _set_model_dir(nbs, tmp_path / "model")
    )
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    # every cell in the DOM, so that the test reads every output (not only those on screen)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    port, token = procs.free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        paths.OUTPUTS_ENV: str(tmp_path / "outputs"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "lab-settings"),
        # a new user's layout: not the tabs another JupyterLab of this user left open
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
    }
    lab_args = f"--no-browser --ip 127.0.0.1 --port {port} --IdentityProvider.token={token}"
    log = tmp_path / "make-lab.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["make", "-C", str(ROOT), "lab", f"LAB_DIR={repo}", f"LAB_ARGS={lab_args}"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    run_dir = tmp_path / "outputs" / "interactive"
    try:
        _wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", proc, log)
        yield Lab(f"http://127.0.0.1:{port}", token, repo, run_dir, log)
    finally:
        if run_dir.exists():
            targets.stop_local(run_dir)
        _stop_tree(proc)


def _wait_for_server(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    http = urllib3.PoolManager(retries=False, timeout=2)
    deadline = time.monotonic() + 180  # make lab runs make setup's check first
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"make lab exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if http.request("GET", url).status == 200:
                return
        except urllib3.exceptions.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within 180 s:\n{log.read_text()[-3000:]}")


def _stop_tree(proc: subprocess.Popen[bytes]) -> None:
    """make, JupyterLab and its kernels: SIGTERM, then SIGKILL what is left."""
    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in family:
        with contextlib.suppress(psutil.NoSuchProcess):  # gone meanwhile (a kernel, say)
            p.terminate()
    _, alive = psutil.wait_procs(family, timeout=15)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


def _run_all(page: Any, lab: Lab, name: str) -> dict[str, Any]:
    """Open the notebook, Run All from the menu, wait until every cell ran; what it shows."""
    page.goto(f"{lab.url}/lab/tree/notebooks/{name}.ipynb?token={lab.token}")
    page.wait_for_selector(f"{PANEL} .jp-Notebook-ExecutionIndicator[data-status='idle']")
    # the session settles on a kernel or asks for one; "No Kernel" until then (slow on CI)
    with contextlib.suppress(PlaywrightTimeout):  # still "No Kernel": the assertion says so
        page.wait_for_function(KERNEL_SETTLED, arg=PANEL, timeout=KERNEL_WAIT_MS)
    page.wait_for_timeout(1000)  # a kernel prompt would open now
    assert page.query_selector(".jp-Dialog") is None, page.inner_text(".jp-Dialog")
    kernel = page.inner_text(f"{PANEL} .jp-KernelName")
    page.click("div.lm-MenuBar-itemLabel:text-is('Run')")
    page.click("li.lm-Menu-item:has-text('Run All Cells')")
    _wait_until_done(page, name)
    return {
        "kernel": kernel,
        "stderr": _texts(page, "application/vnd.jupyter.stderr"),
        "errors": _texts(page, "application/vnd.jupyter.error"),
        "stdout": "\n".join(_texts(page, "application/vnd.jupyter.stdout")),
        "images": len(page.query_selector_all(f"{PANEL} .jp-RenderedImage img")),
        "bars": page.eval_on_selector_all(
            f"{PANEL} .jp-OutputArea-output .widget-hbox", "els => els.map(e => e.innerText)"
        ),
    }


def _wait_until_done(page: Any, name: str) -> None:
    """Every code cell has an execution count and the kernel stayed idle for 3 s (or an error
    showed: Run All stops there)."""
    deadline, idle_since = time.monotonic() + RUN_TIMEOUT_S, None
    while time.monotonic() < deadline:
        page.wait_for_timeout(1000)
        if page.query_selector(f"{PANEL} [data-mime-type='application/vnd.jupyter.error']"):
            return
        not_run = page.eval_on_selector_all(
            f"{PANEL} .jp-CodeCell .jp-InputArea-prompt",
            r"els => els.filter(e => !/\[\d+\]/.test(e.textContent)).length",
        )
        status = page.get_attribute(f"{PANEL} .jp-Notebook-ExecutionIndicator", "data-status")
        if not_run == 0 and status == "idle":
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 3:
                return
        else:
            idle_since = None
    pytest.fail(f"{name}: Run All did not finish within {RUN_TIMEOUT_S} s")


def _texts(page: Any, mime: str) -> list[str]:
    return page.eval_on_selector_all(
        f"{PANEL} .jp-RenderedText[data-mime-type='{mime}']", "els => els.map(e => e.innerText)"
    )


def test_run_all_in_jupyterlab_as_a_new_user(lab: Lab) -> None:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(120_000)
            shown = {name: _run_all(page, lab, name) for name in NOTEBOOKS}
            assert git(lab.repo, "status", "--porcelain") == ""  # run, not saved: untouched
            page.keyboard.press("Control+s")  # 05, saved on purpose, outputs and all
            saved = lab.repo / "notebooks" / "05_evaluate_endpoint.ipynb"
            for _ in range(60):
                if '"output_type"' in saved.read_text(encoding="utf-8"):
                    break
                page.wait_for_timeout(500)
        finally:
            browser.close()

    for name, seen in shown.items():
        assert seen["kernel"] == runner.KERNEL_DISPLAY_NAME, name
        assert seen["errors"] == [], f"{name}: {seen['errors']}"
        for text in seen["stderr"]:  # a pink box is a real warning
            assert re.search(r"\b\w*Warning: ", text), f"{name} stderr: {text}"
    warnings = [text for seen in shown.values() for text in seen["stderr"]]
    assert len(warnings) <= 1, warnings  # the sample fallback, said once
    for name in ("02_train_model", "05_evaluate_endpoint"):
        bars = shown[name]["bars"]
        assert bars and all("100%" in bar for bar in bars), f"{name} progress: {bars}"
    for name in ("01_sample_data", "02_train_model", "05_evaluate_endpoint"):
        assert shown[name]["images"] > 0, f"{name}: no figure rendered"
    assert "agreement with the notebook 100.00%" in shown["05_evaluate_endpoint"]["stdout"]

    # the run wrote where the README says, and the model where the parameters cell said
    trained = state.read_state(lab.run_dir, state.TrainState)
    assert trained is not None
    assert Path(trained.model_path).is_relative_to(lab.run_dir.parents[1] / "model")
    terminal = lab.log.read_text(errors="replace")
    assert "running over TCP" not in terminal and "Traceback" not in terminal, terminal[-3000:]

    # saved on purpose: outputs on disk, none in git (the nbstripout filter)
    assert '"output_type"' in saved.read_text(encoding="utf-8")
    assert git(lab.repo, "diff", "--no-textconv") == ""
    git(lab.repo, "add", "notebooks")
    assert git(lab.repo, "status", "--porcelain") == ""
