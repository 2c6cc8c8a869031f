"""Run the notebooks in order with papermill into one run folder, and record the run.

``run.json`` records, per step, every parameter its notebook ran with (the notebook's defaults
overridden by what was passed), so :func:`replay_plan` can repeat a run exactly. Steps hand
their results on through ``run_state.json`` (see :mod:`mnist_lambda.pipeline.state`). After
the run, the run's local stack (if any) is stopped unless ``keep_stack``.
"""

from __future__ import annotations

import ast
import datetime as dt
import os
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import papermill as pm
import yaml
from ipykernel.kernelspec import install as install_kernel
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
from jupyter_client.localinterfaces import localhost
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.paths import jupyter_runtime_dir
from traitlets import default

from mnist_lambda import paths, provenance, storage
from mnist_lambda.deploy import targets
from mnist_lambda.pipeline import metrics, report, state
from mnist_serving.model import file_sha256

KERNEL_NAME = "mnist-lambda"
"""The kernel the notebooks name (their metadata) and every run uses: this environment's."""
KERNEL_DISPLAY_NAME = "mnist-lambda (.venv)"


class LocalKernelManager(AsyncKernelManager):
    """How papermill starts the kernel: over Unix sockets (IPC) where the system has them.

    Over TCP, ipykernel warns at every start that its traffic is not encrypted; over a Unix
    socket in Jupyter's runtime folder (private to the user) there is no network traffic to
    encrypt, so the warning has no cause (and real warnings still show). Each kernel's sockets
    are named after a fresh id, so runs side by side never share them. Windows has no IPC
    transport, and a socket path longer than Unix allows can't be bound: TCP there.
    """

    @default("transport")
    def _transport_default(self) -> str:
        return kernel_transport(self._ipc_path)

    @default("ip")
    def _ip_default(self) -> str:
        return self._ipc_path if self.transport == "ipc" else localhost()

    @cached_property
    def _ipc_path(self) -> str:
        """Where the sockets go: ``<runtime dir>/kernel-<id>-ipc-<port number>``."""
        return str(Path(jupyter_runtime_dir()) / f"kernel-{uuid.uuid4().hex[:16]}-ipc")


IPC_PATH_MAX = 100
"""Longest socket path prefix used (Unix allows 104-108 bytes; the suffix adds 2 to 6)."""


def kernel_transport(ipc_path: str) -> str:
    """``ipc`` where a kernel's Unix sockets ``<ipc_path>-N`` can be bound, else ``tcp`` (no
    IPC transport on Windows; a path too long for Unix)."""
    return "ipc" if os.name == "posix" and len(ipc_path) < IPC_PATH_MAX else "tcp"


def lab_kernel_transport() -> str:
    """:func:`kernel_transport` for JupyterLab's kernels, whose sockets are
    ``<runtime dir>/kernel-<uuid4>-ipc-N`` (``scripts/jupyter-setup.sh`` configures it)."""
    return kernel_transport(str(Path(jupyter_runtime_dir()) / f"kernel-{uuid.uuid4()}-ipc"))


@dataclass(frozen=True)
class Step:
    name: str
    notebook: str


STEPS: tuple[Step, ...] = (
    Step("sample", "01_sample_data.ipynb"),
    Step("train", "02_train_model.ipynb"),
    Step("upload", "03_upload_to_s3.ipynb"),
    Step("deploy", "04_deploy.ipynb"),
    Step("evaluate", "05_evaluate_endpoint.ipynb"),
)


class RunError(RuntimeError):
    """A run that could not start or a step that failed; the message says where and what next."""


@dataclass
class RunResult:
    run_dir: Path
    status: str
    steps: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


def available_steps() -> list[Step]:
    """The steps whose notebooks exist, in order."""
    return [s for s in STEPS if (paths.notebooks_dir() / s.notebook).exists()]


def select_steps(names: Sequence[str] | None) -> list[Step]:
    steps = available_steps()
    if not names:
        return steps
    known = {s.name: s for s in steps}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise RunError(f"unknown step(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return [s for s in steps if s.name in names]


def parse_value(text: str) -> Any:
    """A ``-p KEY VALUE`` value as YAML would read it (``10000`` -> int, ``true`` -> bool); an
    empty value is the empty string (YAML would read null)."""
    if not text.strip():
        return text
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _coerce(value: Any, declared: str, raw: Any) -> Any:
    if declared == "str" and not isinstance(value, str):
        return str(raw)
    if declared == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def notebook_defaults(step: Step) -> dict[str, Any]:
    """The values a notebook's ``parameters`` cell assigns, as Python objects."""
    defaults = {}
    for name, spec in pm.inspect_notebook(str(paths.notebooks_dir() / step.notebook)).items():
        try:
            defaults[name] = ast.literal_eval(spec["default"])
        except (ValueError, SyntaxError):
            defaults[name] = spec["default"]
    return defaults


def ensure_kernel() -> str:
    """A kernel spec in this environment that runs this interpreter (user kernels can't shadow)."""
    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
        if spec.argv and Path(spec.argv[0]) == Path(sys.executable):
            return KERNEL_NAME
    except NoSuchKernel:
        pass
    install_kernel(kernel_name=KERNEL_NAME, display_name=KERNEL_DISPLAY_NAME, prefix=sys.prefix)
    return KERNEL_NAME


def plan_parameters(
    steps: Sequence[Step],
    given: Mapping[str, Any],
    base: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Parameters per notebook: each gets only what it declares; unknown keys are an error.

    ``base`` holds earlier per-step values (a replayed run's); ``given`` overrides them.
    """
    plans: dict[str, dict[str, Any]] = {}
    declared_anywhere: set[str] = set()
    for step in steps:
        declared = pm.inspect_notebook(str(paths.notebooks_dir() / step.notebook))
        declared_anywhere |= set(declared)
        values = dict((base or {}).get(step.name, {})) | dict(given)
        plans[step.name] = {
            key: _coerce(value, declared[key]["inferred_type_name"], value)
            for key, value in values.items()
            if key in declared
        }
    unknown = sorted(set(given) - declared_anywhere)
    if unknown:
        raise RunError(
            f"unknown parameter(s) {', '.join(unknown)} for steps "
            f"{', '.join(s.name for s in steps)}; see `mnist-lambda params`"
        )
    return plans


def replay_plan(run_json: str | Path) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The steps and per-step parameters that repeat the run recorded in ``run_json``.

    ``run_dir`` is left out (the new run has its own); ``data_source="auto"`` becomes the source
    the recorded run actually used, so the same digits are drawn even if OpenML's reachability
    changed since.
    """
    recorded = storage.read_json(run_json)
    if "effective_parameters" not in recorded:
        raise RunError(f"{run_json} has no effective parameters on record; cannot repeat it")
    plans = {
        step: {k: v for k, v in values.items() if k != "run_dir"}
        for step, values in recorded["effective_parameters"].items()
    }
    spec = recorded.get("data_spec")
    if spec and plans.get("sample", {}).get("data_source") == "auto":
        plans["sample"]["data_source"] = spec
    return list(recorded.get("steps") or plans), plans


def effective_parameters(
    steps: Sequence[Step], plans: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Every parameter each step's notebook runs with: its defaults, overridden by its plan
    (:func:`plan_parameters`)."""
    return {s.name: notebook_defaults(s) | dict(plans[s.name]) for s in steps}


def new_run_id(root: str | Path) -> str:
    """UTC time + short git sha, e.g. ``20261127T171500Z-1a2b3c4``."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{provenance.git_sha(root).replace('-dirty', 'd')}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def run(
    out_dir: str | Path | None = None,
    steps: Sequence[str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    progress: bool = True,
    keep_stack: bool = False,
    base: Mapping[str, Mapping[str, Any]] | None = None,
    replayed_from: str | Path | None = None,
) -> RunResult:
    """Execute the selected notebooks into ``out_dir`` (default ``outputs/<run-id>/``).

    ``base`` gives per-step parameters (from :func:`replay_plan`) that ``parameters`` override.
    """
    root = paths.project_root()
    run_id = Path(out_dir).name if out_dir else new_run_id(root)
    run_dir = Path(out_dir).resolve() if out_dir else paths.outputs_dir() / run_id
    chosen = select_steps(steps)
    given = dict(parameters or {})
    plans = plan_parameters(chosen, given | {"run_dir": str(run_dir)}, base)
    run_dir.mkdir(parents=True, exist_ok=True)
    kernel = ensure_kernel()
    effective = effective_parameters(chosen, plans)
    info = _run_record(root, run_id, chosen, given, effective, replayed_from)
    storage.atomic_write_json(run_dir / "run.json", info)
    metrics.write(run_dir, metrics.RunMetrics(run_id))
    result = RunResult(run_dir=run_dir, status="running")
    executed: list[Path] = []
    try:
        for number, step in enumerate(chosen, 1):
            tag = f"[{number}/{len(chosen)} {step.name}]"
            error = _execute(step, tag, run_dir, plans[step.name], kernel, progress, info)
            executed.append(run_dir / step.notebook)
            if error:
                result.status, result.error = "failed", error
                break
            seconds = info["timings"][step.name]
            notebook = str(run_dir / step.notebook)
            result.steps.append({"step": step.name, "notebook": notebook, "seconds": seconds})
        else:
            result.status = "succeeded"
    except KeyboardInterrupt:
        result.status = "interrupted"
        result.error = "interrupted (Ctrl-C); outputs written so far are complete files"
        raise
    finally:
        _finish(run_dir, info, result, executed, keep_stack)
    return result


def _run_record(
    root: Path,
    run_id: str,
    steps: Sequence[Step],
    given: Mapping[str, Any],
    effective: Mapping[str, Mapping[str, Any]],
    replayed_from: str | Path | None,
) -> dict[str, Any]:
    """``run.json`` as a run starts: what was asked, and the code and libraries it runs."""
    return {
        "run_id": run_id,
        "status": "running",
        "started": _now(),
        "steps": [s.name for s in steps],
        "parameters": dict(given),
        "effective_parameters": effective,
        "replayed_from": str(replayed_from) if replayed_from else None,
        "git_sha": provenance.git_sha(root, short=False),
        "lock_sha256": file_sha256(root / "poetry.lock"),
        "python": sys.version.split()[0],
        "library_versions": provenance.library_versions(),
        "timings": {},
    }


def _execute(
    step: Step,
    tag: str,
    run_dir: Path,
    parameters: Mapping[str, Any],
    kernel: str,
    progress: bool,
    info: dict[str, Any],
) -> str:
    """Run one step's notebook into the run folder and time it (``info["timings"]``); return
    "" when it succeeded, else what failed and where."""
    output = run_dir / step.notebook
    started = time.perf_counter()
    print(f"{tag} start {step.notebook} -> {output}", file=sys.stderr, flush=True)
    # papermill rewrites its output after every cell, in place: it runs into a partial file
    # beside the output, renamed over it once the notebook has finished (or failed in a cell),
    # so the run folder never holds a half-written notebook.
    partial = output.with_name(f".{output.stem}.partial.ipynb")
    error = ""
    try:
        try:
            pm.execute_notebook(
                str(paths.notebooks_dir() / step.notebook),
                str(partial),
                parameters=dict(parameters),
                kernel_name=kernel,
                cwd=str(paths.notebooks_dir()),
                progress_bar=progress,
                kernel_manager_class=LocalKernelManager,
            )
        except pm.PapermillExecutionError as exc:
            error = (
                f"step '{step.name}' failed in notebooks/{step.notebook}, cell "
                f"{exc.cell_index} (execution count {exc.exec_count}): "
                f"{exc.ename}: {exc.evalue}\n"
                f"The executed notebook is kept for inspection: {output}"
            )
        partial.replace(output)
    finally:
        info["timings"][step.name] = round(time.perf_counter() - started, 2)
        done = "failed" if error else "done"
        print(f"{tag} {done} in {info['timings'][step.name]:.1f} s", file=sys.stderr)
    return error


def _finish(
    run_dir: Path,
    info: dict[str, Any],
    result: RunResult,
    executed: Sequence[Path],
    keep_stack: bool,
) -> None:
    """Stop the run's local stack (unless ``keep_stack``), complete ``run.json`` and write the
    report of the notebooks that ran."""
    if not keep_stack and targets.stop_local(run_dir):
        print("local stack stopped (--keep-stack leaves it running)", file=sys.stderr)
    sample = state.read_state(run_dir, state.SampleState)
    info.update(
        status=result.status,
        error=result.error,
        finished=_now(),
        data_spec=sample.data_spec if sample else None,
    )
    storage.atomic_write_json(run_dir / "run.json", info)
    if executed:
        title = f"Run {info['run_id']}"
        report.write_html_report(executed, run_dir / "report.html", title=title, run_dir=run_dir)
