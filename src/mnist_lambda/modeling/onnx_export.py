"""Export a fitted scikit-learn classifier to ONNX, and ship it only once parity is proven.

:func:`export_onnx` converts the estimator with skl2onnx (``zipmap`` off, so the graph's outputs
are ``label`` then ``probabilities``; the input is the raw float32 pixels, so the graph holds the
preprocessing too), checks that it imports standard operator domains only, then loads it with
the serving runtime itself (:func:`mnist_serving.loading.load_model`, i.e. onnxruntime) and
compares it with scikit-learn on every row it is given (the whole test split):

- labels must equal ``predict`` on every row;
- probabilities must equal ``predict_proba`` within :data:`PROBA_TOLERANCE` (absolute).

All of that happens in a staging folder inside the model folder (same file system), holding
``model.onnx`` and a ``manifest.json`` exactly as they will ship. Only when every step passed are
the files moved into the model folder: ``model.onnx``, then ``model-requirements.txt`` (the
runtime packages the image needs for it), then ``manifest.json`` (written atomically; it is what
names the served artifact), and then a stale ``model.npz`` is removed, so the folder holds exactly
one model. A failed step raises :class:`ExportError` naming the step and the estimator, and
leaves the model folder as it was.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnist_lambda.modeling import model_requirements, training
from mnist_lambda.provenance import library_versions
from mnist_lambda.storage import atomic_path, atomic_write_json, atomic_write_text
from mnist_serving import loading
from mnist_serving.model_info import MANIFEST_NAME
from mnist_serving.onnx_model import STANDARD_DOMAINS, operator_domains
from mnist_serving.schema import INPUT_SCHEMA

ONNX_MODEL_FILE = "model.onnx"
NPZ_MODEL_FILE = loading.DEFAULT_MODEL_FILE
REQUIREMENTS_FILE = model_requirements.FILE_NAME
MODEL_FILES = (NPZ_MODEL_FILE, ONNX_MODEL_FILE)
"""The serving artifacts a model folder may hold; exactly one of them at a time."""

FORMAT = "onnx"
FORMAT_DESCRIPTION = (
    "ONNX graph converted by skl2onnx from the fitted scikit-learn estimator, preprocessing "
    "included; input: float32 pixels (n, 784) 0-255; outputs: 'label' (int64) then "
    "'probabilities' (float32, columns in the order of model.classes, zipmap off); standard "
    "operator domains only (ai.onnx, ai.onnx.ml); runs with onnxruntime, loading executes no code"
)
PROBA_TOLERANCE = 1e-4
"""Largest absolute difference allowed between onnxruntime's and scikit-learn's probabilities
(the graph computes in float32, scikit-learn mostly in float64: typically ~1e-6 apart)."""
SHOWN_ROWS = 20
"""Differing rows listed in a parity error."""
STEPS = ("conversion", "operator domains", "session creation", "parity")
"""The export's steps, in order; an :class:`ExportError` names the one that failed."""
VERSIONED_LIBRARIES = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy")


class ExportError(RuntimeError):
    """An export step failed: the model was not shipped."""

    def __init__(self, step: str, estimator: str, detail: str) -> None:
        self.step = step
        self.estimator = estimator
        self.detail = detail
        super().__init__(f"ONNX export of {estimator} refused at step '{step}': {detail}")


class ParityError(ExportError):
    """onnxruntime and scikit-learn disagree on some rows."""

    def __init__(self, estimator: str, detail: str, rows: np.ndarray) -> None:
        self.rows = rows  # every differing row index
        super().__init__("parity", estimator, detail)


@dataclass(frozen=True)
class Parity:
    """How the exported model compares with scikit-learn on the rows checked."""

    rows_checked: int
    labels_equal: int
    max_probability_difference: float
    tolerance: float

    @property
    def passed(self) -> bool:
        return (
            self.labels_equal == self.rows_checked
            and self.max_probability_difference <= self.tolerance
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_checked": self.rows_checked,
            "labels_equal": self.labels_equal,
            "max_probability_difference": self.max_probability_difference,
            "tolerance": self.tolerance,
            "passed": self.passed,
        }


@dataclass
class OnnxExport:
    """A shipped ONNX model: its file, manifest, parity proof, and the serving runtime's view."""

    path: Path
    manifest: dict[str, Any]
    parity: Parity
    labels: np.ndarray = field(repr=False)  # the serving runtime's labels on the rows checked
    requirements_path: Path | None = None

    @property
    def files(self) -> list[Path]:
        """What ships in the model folder."""
        extra = [self.requirements_path] if self.requirements_path else []
        return [self.path, self.path.with_name(MANIFEST_NAME), *extra]


def describe_estimator(estimator: Any) -> str:
    """``Pipeline(PCA -> StandardScaler -> LogisticRegression)`` or the class name."""
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list):
        inner = " -> ".join(describe_estimator(step) for _, step in steps)
        return f"{type(estimator).__name__}({inner})"
    return type(estimator).__name__


def _label(estimator: Any, name: str | None) -> str:
    what = describe_estimator(estimator)
    return f"'{name}' ({what})" if name else what


def convert(estimator: Any, sample: np.ndarray) -> Any:
    """The estimator as an ONNX ``ModelProto``: float32 input, outputs label and probabilities."""
    from skl2onnx import to_onnx  # lazy: ~2 s to import, and only an ONNX export needs it

    x = np.asarray(sample[:1], dtype=np.float32)
    return to_onnx(estimator, x, options={id(estimator): {"zipmap": False}})


def opset(model_proto: Any) -> dict[str, int]:
    """Operator set version per domain (``ai.onnx`` for the default domain)."""
    out: dict[str, int] = {}
    for entry in model_proto.opset_import:
        domain = entry.domain or "ai.onnx"
        out[domain] = max(out.get(domain, 0), int(entry.version))
    return dict(sorted(out.items()))


def check_parity(
    estimator: Any,
    served: Any,
    X: np.ndarray,
    tolerance: float = PROBA_TOLERANCE,
    name: str | None = None,
) -> tuple[Parity, np.ndarray]:
    """Compare ``served`` (the serving runtime's model) with ``estimator`` on every row of ``X``.

    Returns the parity record and the served labels; raises :class:`ParityError` listing the
    first :data:`SHOWN_ROWS` differing rows when a label differs or a probability is further
    than ``tolerance`` from scikit-learn's.
    """
    x = np.asarray(X, dtype=np.float32)
    expected = np.asarray(estimator.predict(x))
    expected_proba = np.asarray(estimator.predict_proba(x), dtype=np.float64)
    labels = np.asarray(served.predict(x))
    proba = np.asarray(served.predict_proba(x), dtype=np.float64)
    if proba.shape != expected_proba.shape:
        raise ParityError(
            _label(estimator, name),
            f"probabilities of shape {proba.shape}, scikit-learn's are {expected_proba.shape}",
            np.arange(len(x)),
        )
    diff = np.abs(proba - expected_proba).max(axis=1) if len(x) else np.zeros(0)
    parity = Parity(
        rows_checked=len(x),
        labels_equal=int(np.sum(labels == expected)),
        max_probability_difference=float(diff.max()) if len(x) else 0.0,
        tolerance=tolerance,
    )
    if parity.passed:
        return parity, labels
    wrong = np.flatnonzero(labels != expected)
    far = np.flatnonzero(diff > tolerance)
    parts = []
    if wrong.size:
        shown = ", ".join(
            f"row {i}: sklearn {expected[i]} vs onnx {labels[i]}" for i in wrong[:SHOWN_ROWS]
        )
        parts.append(
            f"labels differ from scikit-learn's predict on {wrong.size} of {len(x)} rows "
            f"(first {min(wrong.size, SHOWN_ROWS)}: {shown})"
        )
    if far.size:
        shown = ", ".join(f"row {i}: {diff[i]:.3g}" for i in far[:SHOWN_ROWS])
        parts.append(
            f"probabilities differ from predict_proba by more than {tolerance:g} on {far.size} "
            f"rows (max {parity.max_probability_difference:.3g}; first "
            f"{min(far.size, SHOWN_ROWS)}: {shown})"
        )
    raise ParityError(_label(estimator, name), "; ".join(parts), np.union1d(wrong, far))


def remove_other_models(model_dir: str | Path, keep: str) -> list[Path]:
    """Delete the serving artifacts other than ``keep`` (and an ONNX model's requirements when
    ``keep`` is not ONNX) from ``model_dir``; return what was removed."""
    model_dir = Path(model_dir)
    stale = [name for name in MODEL_FILES if name != keep]
    if not keep.endswith(".onnx"):
        stale.append(REQUIREMENTS_FILE)
    removed = []
    for name in stale:
        path = model_dir / name
        if path.is_file():
            path.unlink()
            removed.append(path)
    return removed


def export_onnx(
    estimator: Any,
    X_check: np.ndarray,
    model_dir: str | Path,
    *,
    name: str,
    model_type: str | None = None,
    run_id: str,
    data_source: str,
    n_train: int,
    metrics: dict[str, Any],
    tolerance: float = PROBA_TOLERANCE,
) -> OnnxExport:
    """Convert a fitted classifier, prove parity on ``X_check`` through the serving runtime, and
    only then ship ``model.onnx``, ``model-requirements.txt`` and ``manifest.json`` into
    ``model_dir`` (removing a stale ``model.npz``). Raises :class:`ExportError` otherwise.

    ``X_check`` should be the whole test split (uint8 or float32 pixels); ``metrics`` goes into
    the manifest as it is (test accuracy, cross-validation).
    """
    model_dir = Path(model_dir)
    who = _label(estimator, name)
    proto, data = _convert_checked(estimator, X_check, who)
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".onnx-export-", dir=model_dir))
    try:
        staged = staging / ONNX_MODEL_FILE
        staged.write_bytes(data)
        manifest = _manifest(
            staged,
            proto,
            estimator,
            name=name,
            model_type=model_type,
            n_train=n_train,
            metrics=metrics,
            run_id=run_id,
            data_source=data_source,
        )
        atomic_write_json(staging / MANIFEST_NAME, manifest)
        try:
            served = loading.load_model(staged)
        except Exception as exc:
            raise ExportError("session creation", who, f"{type(exc).__name__}: {exc}") from exc
        parity, labels = check_parity(estimator, served, X_check, tolerance, name)
        manifest["parity"] = parity.as_dict()
        target, requirements = _ship(staged, model_dir, manifest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return OnnxExport(target, manifest, parity, labels, requirements)


def _convert_checked(estimator: Any, X_check: np.ndarray, who: str) -> tuple[Any, bytes]:
    """The ONNX graph and its bytes, refused unless its operator domains are standard and the
    estimator's classes are integers."""
    try:
        proto = convert(estimator, X_check)
        data = proto.SerializeToString()
    except Exception as exc:  # skl2onnx raises many types; all mean "cannot convert"
        raise ExportError("conversion", who, f"{type(exc).__name__}: {exc}") from exc
    domains = operator_domains(data)
    if other := domains - STANDARD_DOMAINS:
        raise ExportError(
            "operator domains",
            who,
            f"the graph imports non-standard operator domains {sorted(other)}; only the "
            "standard ones (ai.onnx, ai.onnx.ml) are served",
        )
    classes = np.asarray(getattr(estimator, "classes_", []))
    if classes.size == 0 or not np.issubdtype(classes.dtype, np.integer):
        raise ExportError(
            "conversion", who, f"expected integer classes_, got {classes.tolist()!r}"
        )
    return proto, data


def _manifest(
    staged: Path,
    proto: Any,
    estimator: Any,
    *,
    name: str,
    model_type: str | None,
    n_train: int,
    metrics: dict[str, Any],
    run_id: str,
    data_source: str,
) -> dict[str, Any]:
    """The ONNX model's manifest: the common fields, its input's name, opset and requirements."""
    what = describe_estimator(estimator)
    input_name = proto.graph.input[0].name
    return training.build_manifest(
        staged,
        format=FORMAT,
        format_description=FORMAT_DESCRIPTION,
        model={
            "name": name,
            "type": model_type or what,
            "estimator": what,
            "n_train": n_train,
            "classes": np.asarray(estimator.classes_).astype(np.int64).tolist(),
        },
        metrics=metrics,
        run_id=run_id,
        data_source=data_source,
        input_schema=INPUT_SCHEMA | {"onnx_input_name": input_name, "onnx_dtype": "float32"},
        versions=library_versions(VERSIONED_LIBRARIES),
        opset=opset(proto),
        runtime_requirements=model_requirements.onnx_pins(),
    )


def _ship(staged: Path, model_dir: Path, manifest: dict[str, Any]) -> tuple[Path, Path]:
    """Move the model in, then its requirements, then the manifest that names it; then the other
    format's files go. Returns the model's and the requirements' paths."""
    target = model_dir / ONNX_MODEL_FILE
    staged.replace(target)
    requirements = atomic_write_text(
        model_dir / REQUIREMENTS_FILE, model_requirements.onnx_requirements()
    )
    atomic_write_json(model_dir / MANIFEST_NAME, manifest)
    remove_other_models(model_dir, keep=ONNX_MODEL_FILE)
    return target, requirements


def copy_model_files(model_dir: str | Path, dest: str | Path) -> list[Path]:
    """Copy the model folder's artifact, manifest and requirements into ``dest`` (e.g. the run's
    ``model/`` folder), removing the other format's stale files there; return the copies."""
    model_dir, dest = Path(model_dir), Path(dest)
    artifact = loading.default_model_path(model_dir)
    copies = []
    for src in (artifact, model_dir / MANIFEST_NAME, model_dir / REQUIREMENTS_FILE):
        if src.is_file():
            with atomic_path(dest / src.name) as tmp:
                shutil.copy2(src, tmp)
            copies.append(dest / src.name)
    remove_other_models(dest, keep=artifact.name)
    return copies
