"""The tutorial's deployment (A) against ours (B, behind the profile's API auth), each on a local
stack of its own, called alternately A, B, A, B so that drift of the machine (thermal, other
load) hits both alike: cold starts, accuracy on the held-out rows, warm latency per request size,
peak memory, our largest supported request, and the bytes of both artifacts and request
objects."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mnist_lambda import local_stack
from mnist_lambda.batch import NPY_HEADER_BYTES
from mnist_lambda.bench.objects import npy_size, our_object
from mnist_lambda.bench.prepare import Prepared, rows_for
from mnist_lambda.bench.profile import A, B, Profile
from mnist_lambda.bench.stacks import Side, stacks
from mnist_lambda.template.reader import function_settings
from mnist_lambda.tutorial.deployment import NO_STAGE_THROTTLE, tutorial_start_args
from mnist_lambda.tutorial.model import tutorial_object
from mnist_serving.schema import N_PIXELS


def measure(
    profile: Profile, prep: Prepared, work: Path, say: Callable[[str], None]
) -> dict[str, Any]:
    """Both sides' measurements, as ``results.json`` keeps them."""
    tutorial = Side(A, work / "stack-tutorial", tutorial_object, ".joblib")
    ours = Side(B, work / "stack-ours", our_object, ".npz")
    sides = [tutorial, ours]
    with stacks(sides, start_kwargs(profile, prep)):
        say("stacks up; uploading request objects")
        for side in sides:
            for n in profile.sizes:
                side.upload(str(n), rows_for(prep.x_test, n))
            side.upload("heldout", prep.x_test)
        say(f"cold starts x{profile.cold_repeats} (alternating)")
        cold = cold_starts(sides, str(profile.sizes[0]), profile.cold_repeats)
        say("warm-up and accuracy on the held-out rows")
        accuracy = {side.name: held_out_accuracy(side, profile, prep.y_test) for side in sides}
        say(f"warm latency: {profile.repeats} alternating pairs per size")
        warm = warm_pairs(sides, profile, say)
        peak = {side.name: side.peak_mb() for side in sides}
        max_request = largest_request(ours, prep, say) if profile.max_request else None
    return {
        "api_auth": {side.name: side.stack.auth.get("type", "NONE") for side in sides},
        "memory_mb": {side.name: side.memory_mb for side in sides},
        "cold": cold,
        "warm": warm,
        "accuracy": accuracy,
        "peak_mb": peak,
        "max_request": max_request,
        "object_bytes": {side.name: side.object_bytes for side in sides},
        "npy_bytes": {str(n): npy_size(rows_for(prep.x_test, n)) for n in profile.sizes},
        "artifact_bytes": {
            A: prep.tutorial_model.stat().st_size,
            B: prep.our_model.stat().st_size,
        },
    }


def start_kwargs(profile: Profile, prep: Prepared) -> dict[str, dict[str, Any]]:
    """Each side's :func:`mnist_lambda.local_stack.start` arguments: the tutorial's function at
    its memory, public; ours behind ``profile.auth`` (called as the stack's allowed caller:
    :meth:`Side.call`), an API key's usage plan lifted as the stage's throttle is."""
    return {
        A: {
            "app_dir": prep.tutorial_model.parent,
            "extra_args": tutorial_start_args(profile.tutorial_memory_mb),
        },
        B: {
            "model_path": prep.our_model,
            **local_stack.auth_start_kwargs(profile.auth, NO_STAGE_THROTTLE, unlimited_plan=True),
        },
    }


def cold_starts(sides: list[Side], label: str, repeats: int) -> dict[str, list[dict[str, Any]]]:
    """Per side, ``repeats`` times: a redeploy, then the first call on ``label``, timed from the
    redeploy to the answer (``first_response_ms``)."""
    cold: dict[str, list[dict[str, Any]]] = {side.name: [] for side in sides}
    for _ in range(repeats):
        for side in sides:
            t0 = time.perf_counter()
            side.redeploy()
            call = side.timed_call(label)
            call["first_response_ms"] = (time.perf_counter() - t0) * 1000
            cold[side.name].append(call)
    return cold


def held_out_accuracy(side: Side, profile: Profile, y_test: np.ndarray) -> float:
    """Every object called once (warm caches, no timing), then the held-out rows' accuracy."""
    for label in [*map(str, profile.sizes), "heldout"]:
        side.call(label)
    return float(np.mean(side.call("heldout")["labels"] == y_test))


def warm_pairs(
    sides: list[Side], profile: Profile, say: Callable[[str], None]
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """``profile.repeats`` rounds of one call per side and size; the order of the sides flips
    every round."""
    warm = {side.name: {str(n): [] for n in profile.sizes} for side in sides}
    for rep in range(profile.repeats):
        for n in profile.sizes:
            for side in sides if rep % 2 == 0 else sides[::-1]:
                warm[side.name][str(n)].append(side.timed_call(str(n)))
        say(f"  pair {rep + 1}/{profile.repeats} done")
    return warm


def largest_request(ours: Side, prep: Prepared, say: Callable[[str], None]) -> dict[str, Any]:
    """Our function on the largest request the template allows (its ``MaxObjectBytes``)."""
    limit = function_settings().max_object_bytes
    rows = (limit - NPY_HEADER_BYTES) // N_PIXELS
    say(f"our largest supported request: {rows:,} rows ({limit:,} bytes of .npy)")
    ours.upload("max", rows_for(prep.x_test, rows))
    call = ours.timed_call("max")
    return {
        "rows": rows,
        "object_bytes": ours.object_bytes["max"],
        "seconds": call["seconds"],
        "function_ms": call["function_ms"],
        "predict_ms": call["predict_ms"],
        "peak_mb": ours.peak_mb(),
    }
