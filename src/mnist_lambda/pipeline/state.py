"""``run_state.json``: what one step hands to the next, one typed section per step.

``sample`` (:class:`SampleState`), ``train`` (:class:`TrainState`), ``upload``
(:class:`UploadState`) and ``deploy`` (:class:`~mnist_lambda.deploy.targets.Deployment`). A
notebook run alone reads what an earlier step left in the same run folder, or falls back to its
defaults when that step has not run there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from mnist_lambda.deploy.targets import Deployment
from mnist_lambda.pipeline import sections

STATE_FILE = "run_state.json"


@dataclass(frozen=True)
class SampleState:
    """What ``sample`` drew: the data source asked for and the one used."""

    data_source: str
    data_source_used: str
    data_spec: str
    """The ``data_source`` that loads exactly these digits again (``auto`` resolved)."""
    fell_back: bool
    n_train: int
    n_test: int


@dataclass(frozen=True)
class TrainState:
    """What ``train`` shipped: the serving model's file."""

    model_path: Path
    sha256: str
    serving_model: str
    model_format: str


@dataclass(frozen=True)
class UploadState:
    """Where ``upload`` put the test features, and how to check them."""

    target: str
    region: str
    bucket: str
    key: str
    bytes: int
    sha256: str
    rows: int


StepState = SampleState | TrainState | UploadState | Deployment
S = TypeVar("S", SampleState, TrainState, UploadState, Deployment)

SECTIONS: dict[type, str] = {
    SampleState: "sample",
    TrainState: "train",
    UploadState: "upload",
    Deployment: "deploy",
}


def write_state(run_dir: str | Path, value: StepState) -> None:
    """Replace its step's section of ``run_dir/run_state.json`` with ``value``."""
    sections.write(Path(run_dir) / STATE_FILE, SECTIONS[type(value)], value)


def read_state(run_dir: str | Path, kind: type[S]) -> S | None:
    """The ``kind`` section of ``run_dir/run_state.json``; None when its step has not run."""
    return sections.read(Path(run_dir) / STATE_FILE, SECTIONS[kind], kind)


def require_state(run_dir: str | Path, kind: type[S]) -> S:
    """As :func:`read_state`, but a step that has not run is an error that says what to do."""
    value = read_state(run_dir, kind)
    if value is None:
        step = SECTIONS[kind]
        raise RuntimeError(
            f"{run_dir} has no {step} step on record: run it first "
            f"(mnist-lambda run --steps {step} --out {run_dir})"
        )
    return value
