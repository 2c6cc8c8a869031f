"""The resumable record of one batch: which chunks are answered, and their labels.

A batch is identified by its run id, a hash of what decides its answers and its chunks: the
input rows (sha256 of the pixels), their count, the chunk size asked for (or ``auto``), the
``output_prefix``, the destination and (when asked for) ``"return": "probabilities"``. Its
record is a folder::

    <state>/.predict-batch-<run id>/
        manifest.json        # identity, the chunk plan, answered chunks, one entry per attempt
        chunk-00000.npy ...  # the labels of every answered chunk
        chunk-00000.npz ...  # with probabilities: labels, probabilities, classes (np.savez)

A chunk's labels are written (atomically) before the manifest that lists it (also atomically),
so a process killed anywhere leaves a record whose every listed chunk is complete; a restart
with the same arguments finds the same folder and sends only the chunks it does not list.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import threading
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mnist_lambda import storage
from mnist_lambda.batch.plan import ChunkPlan
from mnist_serving.predictions import Predictions

RECORD_VERSION = 1
MANIFEST = "manifest.json"


def input_digest(pixels: np.ndarray) -> str:
    """sha256 of the rows (dtype, shape and bytes)."""
    digest = hashlib.sha256(f"{pixels.dtype.str}{pixels.shape}".encode())
    digest.update(np.ascontiguousarray(pixels).data)
    return digest.hexdigest()


def batch_identity(
    pixels: np.ndarray,
    *,
    rows_per_chunk: int | None = None,
    output_prefix: str | None = None,
    destination: str | None = None,
    probabilities: bool = False,
) -> tuple[str, dict[str, Any]]:
    """The deterministic run id of a batch, and what it was derived from (a batch of labels
    keeps the run id it had before probabilities existed)."""
    identity = {
        "version": RECORD_VERSION,
        "input_sha256": input_digest(pixels),
        "rows": len(pixels),
        "rows_per_chunk": rows_per_chunk or "auto",
        "output_prefix": output_prefix,
        "destination": destination,
    }
    if probabilities:
        identity["return"] = "probabilities"
    blob = json.dumps(identity, sort_keys=True).encode()
    return "b" + hashlib.sha256(blob).hexdigest()[:16], identity


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Progress:
    """The record folder of one batch; thread-safe; every change is written at once."""

    def __init__(self, folder: str | Path, run_id: str, identity: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.run_id = run_id
        self.probabilities = identity.get("return") == "probabilities"
        self._lock = threading.Lock()
        existing = storage.read_json(self.folder / MANIFEST)
        if existing.get("identity") == identity and existing.get("run_id") == run_id:
            self.manifest = existing
        else:  # a new batch (or a record of something else: start it over)
            self.manifest = {
                "run_id": run_id,
                "identity": identity,
                "plan": None,
                "model_sha256": None,
                "done": {},
                "attempts": [],
            }

    @property
    def plan(self) -> ChunkPlan | None:
        """The plan of the first attempt: a resumed batch keeps its chunks."""
        data = self.manifest["plan"]
        return ChunkPlan(**data) if data else None

    @property
    def model_sha256(self) -> str | None:
        return self.manifest["model_sha256"]

    def begin(self, plan: ChunkPlan) -> dict[int, Predictions]:
        """Start an attempt with ``plan``; the answers of the chunks answered before it."""
        answered: dict[int, Predictions] = {}
        bounds = plan.bounds()
        for index in sorted(int(i) for i in self.manifest["done"]):
            start, stop = bounds[index]
            got = self._load(index)
            if got is not None and got.labels.shape == (stop - start,):
                answered[index] = got
            else:  # listed but missing or wrong (edited by hand?): send it again
                del self.manifest["done"][str(index)]
        with self._lock:
            self.manifest["plan"] = asdict(plan)
            attempt = {"started": _now(), "resumed_chunks": len(answered), "sent_chunks": 0}
            self.manifest["attempts"].append({**attempt, "calls": 0, "retries": 0})
            self._write()
        return answered

    def chunk_path(self, index: int) -> Path:
        return self.folder / f"chunk-{index:05d}.{'npz' if self.probabilities else 'npy'}"

    def _load(self, index: int) -> Predictions | None:
        """A kept chunk, or None if it is missing or unreadable."""
        path = self.chunk_path(index)
        try:
            if not self.probabilities:
                return Predictions(np.load(path, allow_pickle=False).astype(np.int64))
            with np.load(path, allow_pickle=False) as data:
                got = Predictions(data["labels"], data["probabilities"], data["classes"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return None
        if got.probabilities.shape != (len(got.labels), len(got.classes)):
            return None
        return got

    def record(
        self,
        index: int,
        answer: Predictions,
        *,
        model_sha256: str | None,
        request_id: str | None,
        calls: int,
        retries: int,
    ) -> None:
        """Keep an answered chunk: its labels (and probabilities) first, then the manifest
        listing it."""
        if self.probabilities:
            with storage.atomic_path(self.chunk_path(index)) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, **answer.arrays())
        else:
            labels = np.asarray(answer.labels, dtype=np.int64)
            storage.atomic_save_npy(self.chunk_path(index), labels)
        with self._lock:
            entry = {"rows": len(answer.labels), "request_id": request_id}
            self.manifest["done"][str(index)] = entry
            if model_sha256 and not self.manifest["model_sha256"]:
                self.manifest["model_sha256"] = model_sha256
            attempt = self.manifest["attempts"][-1]
            attempt.update(sent_chunks=attempt["sent_chunks"] + 1, calls=calls, retries=retries)
            self._write()

    def remove(self) -> None:
        """Delete the record (the batch's output is written)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def _write(self) -> None:
        storage.atomic_write_json(self.folder / MANIFEST, self.manifest)
