"""Shared fixtures: the real MNIST test set from ../shared and a small trained serving model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
LAMBDA_APP = ROOT / "lambda_app"
SHARED_MNIST = Path(os.environ.get("MNIST_IDX_DIR", ROOT.parent / "shared" / "data" / "mnist"))

# The handler module is imported the way Lambda does: with lambda_app/ as the task root.
if str(LAMBDA_APP) not in sys.path:
    sys.path.insert(0, str(LAMBDA_APP))


def _read_idx(path: Path, offset: int) -> np.ndarray:
    import gzip

    with gzip.open(path, "rb") as fh:
        return np.frombuffer(fh.read(), dtype=np.uint8, offset=offset)


@pytest.fixture(scope="module")
def moto_endpoint():
    """A moto S3 server over real HTTP on 127.0.0.1 (free port), one per test module."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Folder with the shared MNIST IDX files (never copied into the repo)."""
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.fail(f"shared MNIST data not found in {SHARED_MNIST} (set MNIST_IDX_DIR)")
    return SHARED_MNIST


@pytest.fixture(scope="session")
def mnist_xy(mnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 shared MNIST test digits: (10000, 784) uint8 pixels and int64 labels."""
    x = _read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784)
    y = _read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz", 8).astype(np.int64)
    return x, y


@pytest.fixture(scope="session")
def small_model_path(tmp_path_factory: pytest.TempPathFactory, mnist_xy) -> Path:
    """A serving model (PCA 30 + 4-NN) fitted on the first 3,000 shared digits, saved as .npz."""
    from mnist_serving.model import DigitModel

    x, y = mnist_xy
    xtr = x[:3000].astype(np.float32)
    mean = xtr.mean(axis=0)
    _, _, vt = np.linalg.svd(xtr - mean, full_matrices=False)
    components = vt[:30].astype(np.float32)
    model = DigitModel(
        mean=mean.astype(np.float32),
        components=components,
        train_proj=((xtr - mean) @ components.T).astype(np.float32),
        train_labels=y[:3000],
        classes=np.arange(10, dtype=np.int64),
        n_neighbors=4,
    )
    path = tmp_path_factory.mktemp("model") / "model.npz"
    model.save(path)
    return path
