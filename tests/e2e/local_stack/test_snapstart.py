"""SnapStart, emulated: one init per deployment, environments restored from it with the hooks.

The real function (lambda_app + template_no_auth.yaml with ``SnapStart=PublishedVersions``) on
the local stack: the model is loaded once, the before-snapshot hook runs once, and each
environment runs the after-restore hook (a new S3 client) before it answers.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
from pathlib import Path

import numpy as np
import pytest
from real_stack import PREFIX, npy_bytes, predict, real_stack

from mnist_lambda import local_stack
from mnist_lambda.local_stack.protocol import LOG_FILE_NAME

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="SnapStart is emulated in the sandbox, which needs root"
)
SNAPSTART = ["-P", "SnapStart=PublishedVersions"]


@pytest.fixture(scope="module")
def rows(mnist_xy) -> np.ndarray:
    return mnist_xy[0][:50]


def _handler_messages(log: str, environment: str) -> list[str]:
    """The handler's JSON log messages that ``environment`` printed."""
    messages = []
    for line in log.splitlines():
        _, sep, body = line.partition(f"[{environment}] ")
        if sep and body.startswith("{"):
            messages.append(json.loads(body)["message"])
    return messages


def test_environments_are_restored_from_one_init(
    tmp_path: Path, small_model_path: Path, rows, expected
) -> None:
    state = tmp_path / "stack"
    with real_stack(state, small_model_path, instances=2, extra_args=SNAPSTART) as info:
        assert info.raw["functions"]["PredictFunction"]["environments"] == 2
        local_stack.s3_client(info).put_object(
            Bucket=info.bucket, Key=f"{PREFIX}rows.npy", Body=npy_bytes(rows)
        )
        with concurrent.futures.ThreadPoolExecutor(2) as pool:  # both environments
            answers = list(pool.map(lambda _: predict(info, f"{PREFIX}rows.npy"), range(2)))
        warm = predict(info, f"{PREFIX}rows.npy")
        log = (state / LOG_FILE_NAME).read_text()
    for answer in [*answers, warm]:
        assert answer.status_code == 200 and answer.json() == expected
    names = {a.headers["X-Lambda-Emulator-Instance"] for a in answers}
    assert names == {"PredictFunction-1/g0", "PredictFunction-2/g0"}, names
    for answer in answers:  # a restore, not an init
        assert answer.headers["X-Lambda-Emulator-Cold-Start"] == "true"
        assert float(answer.headers["X-Lambda-Emulator-Restore-Duration-Ms"]) > 0
        assert "X-Lambda-Emulator-Init-Duration-Ms" not in answer.headers
    assert warm.headers["X-Lambda-Emulator-Cold-Start"] == "false"
    assert "X-Lambda-Emulator-Restore-Duration-Ms" not in warm.headers

    snapshot = _handler_messages(log, "PredictFunction-snapshot/g0")
    assert snapshot.count("model loaded") == 1
    assert snapshot[-1] == "before snapshot: S3 client closed"
    for name in names:  # no init in a restored environment; the hook made its S3 client
        messages = _handler_messages(log, name)
        assert "model loaded" not in messages
        assert messages[0] == "after restore: new S3 client"
        assert messages[1] == "request finished"  # served with that client


def test_a_redeploy_takes_a_new_snapshot_and_off_means_an_ordinary_init(
    tmp_path: Path, small_model_path: Path, rows, expected
) -> None:
    state = tmp_path / "stack"
    with real_stack(state, small_model_path, extra_args=SNAPSTART) as info:
        local_stack.s3_client(info).put_object(
            Bucket=info.bucket, Key=f"{PREFIX}rows.npy", Body=npy_bytes(rows)
        )
        assert "Restore-Duration" in str(predict(info, f"{PREFIX}rows.npy").headers)
        info = local_stack.redeploy(state)
        again = predict(info, f"{PREFIX}rows.npy")
        info = local_stack.redeploy(state, parameters={"SnapStart": "None"})
        off = predict(info, f"{PREFIX}rows.npy")
        log = (state / LOG_FILE_NAME).read_text()
    assert again.json() == expected and off.json() == expected
    assert float(again.headers["X-Lambda-Emulator-Restore-Duration-Ms"]) > 0
    assert _handler_messages(log, "PredictFunction-snapshot/g1").count("model loaded") == 1
    assert float(off.headers["X-Lambda-Emulator-Init-Duration-Ms"]) > 0
    assert "X-Lambda-Emulator-Restore-Duration-Ms" not in off.headers
    assert "PredictFunction-snapshot/g2" not in log
    assert "model loaded" in _handler_messages(log, "PredictFunction-1/g2")


def test_an_init_that_fails_fails_the_deploy(tmp_path: Path) -> None:
    """A version whose init fails is not published: the stack does not start."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "lambda_predict.py").write_text("raise RuntimeError('no model')\n")
    with pytest.raises(RuntimeError, match="exited") as failed:
        local_stack.start(tmp_path / "stack", app_dir=app, extra_args=SNAPSTART)
    assert "the init before the snapshot failed" in str(failed.value)
