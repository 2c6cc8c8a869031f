"""The traffic what-if on the real local stack (loopback, the small model, short traces):
the stage throttle answers 429 without invoking the function; one environment is throttled by
Lambda (500) where one environment per request is not; cold starts never exceed the
environments. About 20-25 s."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from polling import wait_until
from real_stack import PREFIX, npy_bytes, real_stack

from mnist_lambda import local_stack
from mnist_lambda.tuning.traffic import run
from mnist_lambda.tuning.traffic.arrivals import arrival_times

pytestmark = pytest.mark.timeout(180)

KEY = PREFIX + "traffic.npy"
SEED = 0


@pytest.fixture(scope="module")
def rows(mnist_xy) -> np.ndarray:
    return np.ascontiguousarray(mnist_xy[0][:200], dtype=np.uint8)


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, small_model_path: Path, rows: np.ndarray
) -> Iterator[tuple[Path, local_stack.StackInfo]]:
    state_dir = tmp_path_factory.mktemp("traffic-stack")
    with contextlib.ExitStack() as cleanup:
        try:
            info = cleanup.enter_context(real_stack(state_dir, small_model_path))
        except (RuntimeError, TimeoutError, OSError) as exc:
            pytest.skip(f"the local stack cannot start here: {str(exc)[:500]}")
        local_stack.s3_client(info).put_object(Bucket=info.bucket, Key=KEY, Body=npy_bytes(rows))
        yield state_dir, info


def what_if(stack: tuple[Path, local_stack.StackInfo], **kwargs: Any) -> dict[str, Any]:
    state_dir, info = stack
    return run.what_if(
        state_dir=state_dir, info=info, bucket=info.bucket, key=KEY, seed=SEED, **kwargs
    )


def invocations_logged(log_file: Path, offset: int) -> int:
    """START lines the emulated function wrote to the stack's log after ``offset``."""
    with open(log_file, "rb") as fh:
        fh.seek(offset)
        return fh.read().count(b"] START RequestId: ")


def check_cold_starts(result: dict[str, Any]) -> None:
    for r in result["rates"]:
        assert r["cold_starts"] <= r["environments_used"] <= result["environments"], r
        assert r["other_errors"] == 0, r


def test_stage_throttle_answers_429_and_the_function_is_not_invoked(stack) -> None:
    state_dir, info = stack
    assert info.log_file is not None
    offset = info.log_file.stat().st_size
    result = what_if(stack, rates=[8], duration_s=3, environments=4, throttle=(2, 2))
    assert result["stage_throttle"] == {"rate": 2.0, "burst": 2}
    assert result["environments_source"] == "asked for"
    r = result["rates"][0]
    assert r["sent"] == len(arrival_times(8, 3, SEED))
    assert r["stage_throttle"]["admits_rate"] is False
    assert r["stage_429"] > 0
    # what the token bucket predicts from the schedule, within the jitter of a real clock
    assert abs(r["stage_429"] - r["stage_throttle"]["expected_429"]) <= 3, r
    # the function ran once per request the stage let through, no more (its own log says so)
    invoked = r["sent"] - r["stage_429"] - r["lambda_throttled_500"]
    assert r["invocations"] == invoked == r["served"]
    assert wait_until(lambda: invocations_logged(info.log_file, offset) >= invoked, 5)
    assert invocations_logged(info.log_file, offset) == invoked
    check_cold_starts(result)
    # the stack's own settings are back (stage throttle of real_stack, unreserved function)
    restored = local_stack.read(state_dir)
    assert restored is not None and restored.instances == info.instances == 1
    params = restored.raw["parameters"]
    assert (params["ThrottleRateLimit"], params["ThrottleBurstLimit"]) == ("10000", "5000")
    assert params["ReservedConcurrency"] == "0"


def test_lambda_throttles_one_environment_not_one_per_request(stack) -> None:
    # seed 0 at 6/s for 2 s: 9 requests, three of them 0.17-0.18 s after the first, while the
    # only environment is still in its cold start (0.4 s and more here)
    arrivals = arrival_times(6, 2, SEED)
    one = what_if(stack, rates=[6], duration_s=2, environments=1)
    r = one["rates"][0]
    assert (one["environments"], r["sent"], r["stage_429"]) == (1, len(arrivals), 0)
    assert r["lambda_throttled_500"] >= 3, r
    assert r["served"] + r["lambda_throttled_500"] == r["sent"]
    assert r["cold_starts"] == 1
    assert r["environments_needed"]["recommended"] > 1
    assert r["environments_needed"]["holds_rate"] is False
    check_cold_starts(one)
    # one environment per request of the trace: never all busy, so never throttled
    enough = what_if(stack, rates=[6], duration_s=2, environments=len(arrivals))
    r = enough["rates"][0]
    assert (r["served"], r["lambda_throttled_500"], r["stage_429"]) == (len(arrivals), 0, 0), r
    assert r["environments_needed"]["peak_in_flight"] <= len(arrivals)
    check_cold_starts(enough)


def test_default_environments_without_reserved_concurrency(stack) -> None:
    result = what_if(stack, rates=[2], duration_s=1)
    assert result["environments"] == run.LOCAL_DEFAULT_ENVIRONMENTS
    assert "ReservedConcurrency 0" in result["environments_source"]
    r = result["rates"][0]
    assert r["served"] == r["sent"] and r["cost_per_hour_usd"]["total"] > 0
    check_cold_starts(result)
