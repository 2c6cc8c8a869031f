"""Turn the bytes of an S3 object into validated ``(n, 784)`` uint8 pixels.

The format is chosen by the key's suffix and checked against the content's magic bytes:

* ``.npy``: ``np.load(allow_pickle=False)``; object (pickled) arrays are refused.
* ``.npz``: one array, or the one named ``X``, ``x`` or ``features``; same rules as ``.npy``.
* ``.csv`` / ``.csv.gz``: comma-separated numbers, one row per digit, optional header line.

Pickle and joblib objects are refused outright: unpickling executes code chosen by whoever wrote
the file, so accepting them from callers would be remote code execution. Format-level problems
(unknown, mismatched, unsafe, corrupt) are 415; arrays of the wrong shape or values are 422.
"""

from __future__ import annotations

import io
import math
import re
import zipfile
import zlib

import numpy as np

from mnist_serving.errors import InvalidInput, ObjectTooLarge, UnsupportedFormat
from mnist_serving.schema import N_PIXELS, PIXEL_MAX, PIXEL_MIN

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")
GZIP_MAGIC = b"\x1f\x8b"
PICKLE_MAGIC = b"\x80"
"""First byte of every pickle of protocol 2 or later (joblib's uncompressed files included)."""

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
SUFFIXES = (".csv.gz", ".npy", ".npz", ".csv")
"""Supported key suffixes, longest first so ``.csv.gz`` wins over ``.csv``."""

NPZ_ARRAY_NAMES = ("X", "x", "features")

PICKLE_REFUSED = (
    "pickle/joblib objects are refused: unpickling runs code chosen by whoever wrote the file "
    "(remote code execution); send the pixels as .npy, .npz, .csv or .csv.gz"
)
PICKLED_ARRAY_REFUSED = (
    "pickled arrays are refused: an object-dtype array stores pickled Python objects, and "
    "loading it would run code chosen by the file's author; save numeric pixels (e.g. uint8)"
)


def format_for_key(key: str) -> str:
    """The format named by the key's suffix (``.npy``, ``.npz``, ``.csv``, ``.csv.gz``) or 415."""
    lower = key.lower()
    if lower.endswith(PICKLE_SUFFIXES):
        raise UnsupportedFormat(PICKLE_REFUSED)
    for suffix in SUFFIXES:
        if lower.endswith(suffix):
            return suffix
    raise UnsupportedFormat(
        "unsupported object type; the key must end with .npy, .npz, .csv or .csv.gz"
    )


def load_pixels(fmt: str, data: bytes, *, max_bytes: int) -> np.ndarray:
    """Decode ``data`` as ``fmt`` and validate it: ``(n, 784)`` uint8, C-contiguous."""
    return validate_pixels(decode(fmt, data, max_bytes=max_bytes))


def decode(fmt: str, data: bytes, *, max_bytes: int) -> np.ndarray:
    """Decode ``data`` as ``fmt`` into an array (not yet validated); 415 on format problems."""
    if data.startswith(PICKLE_MAGIC):
        raise UnsupportedFormat(PICKLE_REFUSED + " (the object starts with pickle's byte 0x80)")
    if fmt == ".npy":
        _expect_magic(data, (NPY_MAGIC,), ".npy")
        return decode_npy(data)
    if fmt == ".npz":
        _expect_magic(data, ZIP_MAGICS, ".npz (zip)")
        return decode_npz(data, max_bytes=max_bytes)
    if fmt == ".csv.gz":
        _expect_magic(data, (GZIP_MAGIC,), "gzip")
        return decode_csv(gunzip(data, max_bytes=max_bytes))
    if fmt == ".csv":
        return decode_csv(data)
    raise UnsupportedFormat(f"unsupported format {fmt!r}")


def decode_npy(data: bytes) -> np.ndarray:
    """Load a ``.npy`` without pickle, after checking its header (dtype, declared size)."""
    fp = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise UnsupportedFormat(f".npy format version {version} is not supported")
    except Exception:  # numpy parses the header text: a hostile one raises many kinds of error
        raise UnsupportedFormat("not a valid .npy file (unreadable header)") from None
    if dtype.hasobject:
        raise UnsupportedFormat(PICKLED_ARRAY_REFUSED)
    expected = math.prod(shape) * dtype.itemsize
    available = len(data) - fp.tell()
    if available < expected:
        raise UnsupportedFormat(
            f"truncated .npy: its header promises {expected} bytes of data, the object has "
            f"{available}"
        )
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, TypeError) as exc:  # e.g. a dtype numpy cannot rebuild
        raise UnsupportedFormat(f"not a loadable .npy file ({_clip(str(exc))})") from None


def decode_npz(data: bytes, *, max_bytes: int) -> np.ndarray:
    """Pick the array of a ``.npz`` (one array, or ``X``/``x``/``features``) and load it."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except Exception:  # a hostile archive raises many kinds of error: all mean "not a .npz"
        raise UnsupportedFormat("not a valid .npz file (unreadable zip archive)") from None
    with archive:
        members = {
            info.filename.removesuffix(".npy"): info
            for info in archive.infolist()
            if not info.is_dir()
        }
        if not members:
            raise InvalidInput("the .npz holds no arrays")
        if len(members) == 1:
            info = next(iter(members.values()))
        else:
            name = next((n for n in NPZ_ARRAY_NAMES if n in members), None)
            if name is None:
                shown = ", ".join(_clip(n, 40) for n in sorted(members)[:5])
                raise InvalidInput(
                    f"the .npz holds {len(members)} arrays ({shown}); send one array, or name "
                    f"the pixels {', '.join(NPZ_ARRAY_NAMES)}"
                )
            info = members[name]
        if info.file_size > max_bytes:
            raise ObjectTooLarge(
                f"the .npz array is {info.file_size} bytes uncompressed; the limit is "
                f"{max_bytes} bytes (MAX_OBJECT_BYTES)"
            )
        try:
            member = archive.read(info)
        except Exception:  # BadZipFile, zlib.error, NotImplementedError, ValueError (seek), ...
            raise UnsupportedFormat("not a valid .npz file (corrupt or encrypted array)") from None
    if not member.startswith(NPY_MAGIC):
        raise UnsupportedFormat("the .npz member is not a .npy array")
    return decode_npy(member)


def gunzip(data: bytes, *, max_bytes: int) -> bytes:
    """Decompress a (possibly multi-member) gzip stream, refusing more than ``max_bytes``."""
    out = bytearray()
    rest = data
    while rest:
        stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            out += stream.decompress(rest, max_bytes + 1 - len(out))
        except zlib.error:
            raise UnsupportedFormat("not a valid gzip stream") from None
        if len(out) > max_bytes:
            raise ObjectTooLarge(
                f"the CSV is over {max_bytes} bytes once decompressed (MAX_OBJECT_BYTES)"
            )
        if not stream.eof:
            raise UnsupportedFormat("truncated gzip stream")
        rest = stream.unused_data
        if not rest.strip(b"\0"):  # trailing zero padding is allowed by gzip tools
            break
    return bytes(out)


def decode_csv(data: bytes) -> np.ndarray:
    """Parse comma-separated numbers (optional header line) into a float64 array."""
    if data.startswith((NPY_MAGIC, GZIP_MAGIC, *ZIP_MAGICS)) or b"\0" in data:
        raise UnsupportedFormat("the object is binary, not CSV text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnsupportedFormat("the CSV is not UTF-8 text") from None
    rows = [line for line in text.splitlines() if line.strip()]
    if rows and _is_header(rows[0]):
        rows = rows[1:]
    if not rows:
        return np.empty((0, 0), dtype=np.float64)
    try:
        return np.loadtxt(rows, delimiter=",", dtype=np.float64, ndmin=2, comments=None)
    except ValueError as exc:
        raise InvalidInput(_csv_error(str(exc))) from None


def validate_pixels(array: np.ndarray) -> np.ndarray:
    """Check ``array`` is ``(n>=1, 784)`` finite integral numbers in 0..255; return it as uint8."""
    if array.dtype.kind not in "uif":
        raise InvalidInput(f"pixels must be numbers; got dtype {_clip(str(array.dtype), 40)}")
    if array.ndim != 2:
        hint = ""
        if array.ndim == 3 and array.shape[1:] == (28, 28):
            hint = f"; flatten the images first: x.reshape(len(x), {N_PIXELS})"
        raise InvalidInput(f"expected a 2-D array (n, {N_PIXELS}), got shape {array.shape}{hint}")
    rows, cols = array.shape
    if rows == 0:
        raise InvalidInput("no rows: send at least one digit")
    if cols != N_PIXELS:
        hint = ""
        if cols == N_PIXELS + 1:
            hint = " (a leading index or label column? write the CSV with pandas' index=False)"
        raise InvalidInput(f"expected {N_PIXELS} columns (28x28 pixels), got {cols}{hint}")
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            n_nan = int(np.isnan(array).sum())
            n_inf = int(array.size - finite.sum()) - n_nan
            where = _first(~finite)
            raise InvalidInput(
                f"pixels must be finite: {n_nan} NaN and {n_inf} infinite values "
                f"(first at index {where})"
            )
        fractional = array != np.floor(array)
        if fractional.any():
            where = _first(fractional)
            raise InvalidInput(f"pixels must be whole numbers: {array[where]:g} at index {where}")
    low, high = array.min(), array.max()
    if low < PIXEL_MIN or high > PIXEL_MAX:
        where = _first((array < PIXEL_MIN) | (array > PIXEL_MAX))
        raise InvalidInput(
            f"pixels must be in {PIXEL_MIN}..{PIXEL_MAX}: found {array[where]:g} at index "
            f"{where} (min {low:g}, max {high:g})"
        )
    return np.ascontiguousarray(array, dtype=np.uint8)


def _expect_magic(data: bytes, magics: tuple[bytes, ...], kind: str) -> None:
    if not data.startswith(magics):
        raise UnsupportedFormat(f"the object's content is not {kind} data, as its suffix says")


def _is_header(line: str) -> bool:
    """A first line is a header when its non-empty fields are all non-numeric, or are pandas'
    default column labels ``0..n-1`` / ``1..n`` going past 255 (so they cannot be pixels)."""
    fields = [f.strip() for f in line.split(",")]
    values = [f for f in fields if f]
    if not values:
        return False
    numbers = [_as_float(f) for f in values]
    if all(v is None for v in numbers):
        return True
    if any(v is None for v in numbers) or len(numbers) < 2:
        return False
    start = numbers[0]
    labels = [start + i for i in range(len(numbers))]
    return start in (0.0, 1.0) and numbers == labels and labels[-1] > PIXEL_MAX


def _as_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


_NOT_A_NUMBER = re.compile(r"could not convert string '(.*)' to \w+ at row (\d+), column (\d+)")
_COLUMNS_CHANGED = re.compile(r"number of columns changed from (\d+) to (\d+) at row (\d+)")


def _csv_error(message: str) -> str:
    """Rephrase numpy's loadtxt error (rows counted from 1, after any header line)."""
    if match := _NOT_A_NUMBER.search(message):
        value, row, col = match.groups()
        return f"CSV data row {int(row) + 1}, column {col}: {_clip(value, 20)!r} is not a number"
    if match := _COLUMNS_CHANGED.search(message):
        before, after, row = match.groups()
        return f"CSV rows differ in length: data row {row} has {after} columns, not {before}"
    return f"the CSV could not be read as numbers ({_clip(message.split(';')[0])})"


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
