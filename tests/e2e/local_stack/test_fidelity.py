"""The local stack runs what ships, the way Lambda runs it: each test starts `serve` over HTTP.

A probe function (below) reports what it can see and do from inside its environment: which
Python, which user, what it can import, where it can write, what S3 lets its credentials do.
"""

from __future__ import annotations

import io
import json
import os
import signal
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from polling import wait_until
from repo_paths import ROOT
from serve_process import ServeProcess

from mnist_lambda.local_stack import procs
from mnist_lambda.local_stack.protocol import make_s3_client
from mnist_lambda.local_stack.task_root import read_dockerfile

pytestmark = pytest.mark.timeout(300)

IS_ROOT = os.geteuid() == 0

PROBE = """
import errno, json, os, sys, time

def handler(event, context):
    query = event.get("queryStringParameters") or {}  # a body the API's validator lets by
    cmd = json.loads(query.get("cmd") or event.get("body") or "{}")
    out = {}
    if "imports" in cmd:
        for name in cmd["imports"]:
            try:
                __import__(name)
                out[name] = "ok"
            except Exception as exc:
                out[name] = type(exc).__name__
    if "write" in cmd:
        for path in cmd["write"]:
            try:
                with open(path, "wb") as fh:
                    fh.write(b"x")
                out[path] = "ok"
            except OSError as exc:
                out[path] = errno.errorcode[exc.errno]
    if "fill_tmp_mb" in cmd:
        written = 0
        try:
            with open("/tmp/fill", "wb") as fh:
                for _ in range(cmd["fill_tmp_mb"]):
                    fh.write(b"\\0" * 1048576)
                    fh.flush()
                    written += 1
        except OSError as exc:
            out["fill_error"] = errno.errorcode[exc.errno]
        os.remove("/tmp/fill")
        out["filled_mb"] = written
    if "alloc_mb" in cmd:
        block = bytearray(cmd["alloc_mb"] * 1048576)
        block[::4096] = b"x" * len(block[::4096])
        out["allocated_mb"] = len(block) // 1048576
    if "spin" in cmd:
        start, n = time.process_time(), 0
        for _ in range(cmd["spin"]):
            n += 1
        out["cpu_s"] = time.process_time() - start
    if "s3" in cmd:
        import boto3
        s3 = boto3.client("s3")
        for op, key in cmd["s3"]:
            try:
                if op == "get":
                    s3.get_object(Bucket=cmd["bucket"], Key=key)["Body"].read()
                elif op == "put":
                    s3.put_object(Bucket=cmd["bucket"], Key=key, Body=b"1")
                else:
                    s3.delete_object(Bucket=cmd["bucket"], Key=key)
                out[f"{op} {key}"] = "ok"
            except s3.exceptions.ClientError as exc:
                out[f"{op} {key}"] = exc.response["Error"]["Code"]
    out.update(uid=os.getuid(), version=list(sys.version_info[:2]), path=sys.path,
               cwd=os.getcwd(), task_root=os.environ.get("LAMBDA_TASK_ROOT"))
    return {"statusCode": 200, "body": json.dumps(out)}
"""

TEMPLATE = """\
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Parameters:
  MemorySize: {Type: Number, Default: 1769}
Resources:
  ProbeApi:
    Type: AWS::Serverless::Api
    Properties: {StageName: dev}
  ProbeFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: probe.handler
      Timeout: 20
      MemorySize: !Ref MemorySize
      Events:
        Probe:
          Type: Api
          Properties: {RestApiId: !Ref ProbeApi, Path: /predict, Method: post}
"""


@pytest.fixture(scope="module")
def probe_app(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The probe, with the shipped function's requirements (numpy, boto3), and its template."""
    root = tmp_path_factory.mktemp("probe")
    app = root / "app"
    app.mkdir()
    (app / "probe.py").write_text(PROBE)
    (app / "requirements.txt").write_text((ROOT / "lambda_app/requirements.txt").read_text())
    (root / "template.yaml").write_text(TEMPLATE)
    return app, root / "template.yaml"


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Start ``serve`` with the given arguments; everything started is stopped afterwards."""
    started: list[ServeProcess] = []

    def start(*args: str) -> ServeProcess:
        started.append(ServeProcess(list(args), tmp_path / f"serve-{len(started)}.log", 120))
        return started[-1]

    yield start
    for proc in started:
        proc.signal(signal.SIGTERM)
        proc.wait(30)


def call(stack: ServeProcess, body: dict[str, Any], **query: str) -> requests.Response:
    return requests.post(stack.info["predict_url"], json=body, params=query, timeout=60)


def test_function_runs_what_ships_on_the_image_python(serve, probe_app) -> None:
    app, template = probe_app
    stack = serve("--template", str(template), "--app-dir", str(app))
    resp = call(stack, {"imports": ["numpy", "boto3", "sklearn", "pandas", "awscrt", "IPython"]})
    assert resp.status_code == 200, resp.text
    seen = resp.json()
    assert {k: seen[k] for k in ("numpy", "boto3")} == {"numpy": "ok", "boto3": "ok"}
    for dev_only in ("sklearn", "pandas", "awscrt", "IPython"):
        assert seen[dev_only] == "ModuleNotFoundError", dev_only
    assert not any(".venv" in p for p in seen["path"]), seen["path"]
    sandbox = stack.info["sandbox"]
    image_python = read_dockerfile().python_version
    if sandbox["python"] == image_python:
        assert seen["version"] == [int(v) for v in image_python.split(".")]
    else:  # no such interpreter on this machine: the ready line must say so
        assert f"the image has {image_python}" in sandbox["python"]
    if IS_ROOT:
        assert seen["uid"] == 65534 and sandbox["user"] == "nobody"
        assert seen["task_root"] == seen["cwd"] == "/var/task"
        assert seen["path"][:2] == ["/var/task", "/var/runtime"]  # as in the base image
        assert all(p.startswith("/var/") for p in seen["path"]), seen["path"]


def test_a_handler_importing_a_dev_package_fails_under_the_stack(
    serve, probe_app, tmp_path: Path
) -> None:
    app, template = probe_app
    (app / "uses_sklearn.py").write_text(
        "import sklearn\n\ndef handler(event, context):\n  pass\n"
    )
    stack = serve("--template", str(template), "--app-dir", str(app), "--handler",
                  "uses_sklearn.handler")  # fmt: skip
    resp = call(stack, {})
    assert resp.status_code == 502 and resp.json() == {"message": "Internal server error"}
    assert wait_until(lambda: "No module named 'sklearn'" in stack.stderr_text(), 10)


@pytest.mark.skipif(not IS_ROOT, reason="the sandbox needs root (mount namespace, setuid)")
def test_writes_outside_tmp_fail_and_tmp_is_the_ephemeral_storage(serve, probe_app) -> None:
    app, template = probe_app
    stack = serve("--template", str(template), "--app-dir", str(app))
    targets = ["/var/task/x", "/var/task/probe.py", "/x", "/var/tmp/x", "/dev/shm/x", "/tmp/x"]
    seen = call(stack, {"write": targets}).json()
    assert seen["/var/task/x"] == seen["/var/task/probe.py"] == "EROFS"
    assert {seen[p] for p in ("/x", "/var/tmp/x", "/dev/shm/x")} <= {"EACCES", "EROFS", "ENOENT"}
    assert seen["/tmp/x"] == "ok"
    seen = call(stack, {"fill_tmp_mb": 600}).json()  # the template sets no EphemeralStorage
    assert seen["fill_error"] == "ENOSPC" and 500 <= seen["filled_mb"] <= 512


@pytest.mark.skipif(not IS_ROOT, reason="without root the function runs as its owner")
def test_a_file_the_function_user_cannot_read_is_caught(serve, probe_app) -> None:
    app, template = probe_app
    secret = app / "private_helper.py"
    secret.write_text("VALUE = 1\n")
    secret.chmod(0o600)  # as a umask of 077 on the build host would leave it
    (app / "uses_private.py").write_text(
        "import private_helper\n\ndef handler(event, context):\n  pass\n"
    )
    stack = serve("--template", str(template), "--app-dir", str(app), "--handler",
                  "uses_private.handler")  # fmt: skip
    assert call(stack, {}).status_code == 502
    assert wait_until(lambda: "PermissionError" in stack.stderr_text(), 10)


def _limits_enforced(stack: ServeProcess) -> None:
    if not stack.info["sandbox"]["limits"].startswith("enforced"):
        pytest.skip(stack.info["sandbox"]["limits"])


def test_memory_size_kills_the_environment_and_the_next_call_is_cold(serve, probe_app) -> None:
    app, template = probe_app
    stack = serve("--template", str(template), "--app-dir", str(app), "-P", "MemorySize=128")
    _limits_enforced(stack)
    first = call(stack, {"alloc_mb": 16})
    assert first.status_code == 200, first.text
    resp = call(stack, {"alloc_mb": 300})  # far over 128 MB
    assert resp.status_code == 502 and resp.json() == {"message": "Internal server error"}
    assert wait_until(lambda: "Runtime.OutOfMemory" in stack.stderr_text(), 10)
    again = call(stack, {"alloc_mb": 16})
    assert again.status_code == 200
    assert again.headers["X-Lambda-Emulator-Cold-Start"] == "true"


def test_cpu_share_follows_memory_size(serve, probe_app) -> None:
    """At 885 MB (half a vCPU) a CPU-bound call takes about twice as long as at 1,769 MB."""
    app, template = probe_app
    half = serve("--template", str(template), "--app-dir", str(app), "-P", "MemorySize=885")
    full = serve("--template", str(template), "--app-dir", str(app), "-P", "MemorySize=1769")
    _limits_enforced(half)
    durations: dict[str, list[float]] = {"half": [], "full": []}
    for _ in range(4):  # interleaved, so a busy moment of the machine hits both
        for name, stack in (("half", half), ("full", full)):
            resp = call(stack, {"spin": 15_000_000})  # about 0.5 s of one CPU
            assert resp.status_code == 200
            durations[name].append(float(resp.headers["X-Lambda-Emulator-Duration-Ms"]))
    ratio = min(durations["half"][1:]) / min(durations["full"][1:])  # first calls are cold
    assert 1.5 < ratio < 2.6, (ratio, durations)


# --- IAM: the function's credentials allow exactly the template's Policies ------------------

BUCKET = "fidelity-data"
PREFIX = "inputs/"


@pytest.fixture
def iam_stack(serve, probe_app) -> ServeProcess:
    """The probe under the real template's policies (data under inputs/, output predictions/)."""
    app, _ = probe_app
    stack = serve("--template", str(ROOT / "template_no_auth.yaml"), "--app-dir", str(app),
                  "--handler", "probe.handler", "--bucket", BUCKET,
                  "-P", f"DataKeyPrefix={PREFIX}")  # fmt: skip
    admin = make_s3_client(stack.info["s3_url"], credentials=stack.info["s3_credentials"])
    for key in (f"{PREFIX}a.npy", "secret/b.npy"):
        admin.put_object(Bucket=BUCKET, Key=key, Body=b"data")
    return stack


def test_s3_refuses_what_the_policy_does_not_allow(iam_stack: ServeProcess) -> None:
    ops = [
        ["get", f"{PREFIX}a.npy"], ["get", "secret/b.npy"], ["get", f"{PREFIX}missing.npy"],
        ["put", "predictions/p.json"], ["put", "secret/p.json"], ["put", f"{PREFIX}p.json"],
        ["delete", f"{PREFIX}a.npy"], ["delete", "predictions/p.json"],
    ]  # fmt: skip
    cmd = json.dumps({"bucket": BUCKET, "s3": ops})
    resp = call(iam_stack, {"bucket": BUCKET, "key": f"{PREFIX}a.npy"}, cmd=cmd)
    assert resp.status_code == 200, resp.text
    seen = resp.json()
    assert {f"{op} {key}": seen[f"{op} {key}"] for op, key in ops} == {
        f"get {PREFIX}a.npy": "ok",
        "get secret/b.npy": "AccessDenied",
        f"get {PREFIX}missing.npy": "NoSuchKey",  # s3:ListBucket: a missing key is a 404
        "put predictions/p.json": "ok",
        "put secret/p.json": "AccessDenied",
        f"put {PREFIX}p.json": "AccessDenied",
        f"delete {PREFIX}a.npy": "AccessDenied",
        "delete predictions/p.json": "AccessDenied",
    }


def test_the_handler_answers_s3_refusals_in_its_error_format(
    serve, small_model_path: Path, mnist_xy
) -> None:
    """The handler's own allow-list opened to the whole bucket: only IAM stands in the way."""
    stack = serve("--template", str(ROOT / "template_no_auth.yaml"), "--bucket", BUCKET,
                  "--model-path", str(small_model_path), "-P", f"DataKeyPrefix={PREFIX}",
                  "-e", f"ALLOWED_BUCKETS={BUCKET}", "-e", "OUTPUT_PREFIX=secret/")  # fmt: skip
    admin = make_s3_client(stack.info["s3_url"], credentials=stack.info["s3_credentials"])
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(mnist_xy[0][:5], dtype=np.uint8))
    for key in (f"{PREFIX}rows.npy", "secret/rows.npy"):
        admin.put_object(Bucket=BUCKET, Key=key, Body=buf.getvalue())
    ok = call(stack, {"bucket": BUCKET, "key": f"{PREFIX}rows.npy"})
    assert ok.status_code == 200 and len(ok.json()) == 5
    for body in (
        {"bucket": BUCKET, "key": "secret/rows.npy"},  # read outside DataKeyPrefix
        {"bucket": BUCKET, "key": f"{PREFIX}rows.npy", "output_key": "secret/out.json"},
    ):
        resp = call(stack, body)
        assert resp.status_code == 403, resp.text
        assert resp.json()["error"]["code"] == "forbidden"
    missing = call(stack, {"bucket": BUCKET, "key": f"{PREFIX}nothing.npy"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


# --- a crashed environment is replaced, not reused ------------------------------------------


def test_an_idle_environment_whose_runtime_died_is_replaced(serve, probe_app) -> None:
    app, template = probe_app
    stack = serve("--template", str(template), "--app-dir", str(app))
    assert call(stack, {}).status_code == 200
    (rie,) = stack.info["emulator_pids"]
    (runtime,) = procs.descendants(rie)
    os.kill(runtime, signal.SIGKILL)
    assert wait_until(lambda: not procs.pid_alive(runtime), 5)
    resp = call(stack, {})  # nothing in flight: Lambda would start a fresh environment
    assert resp.status_code == 200, resp.text
    assert resp.headers["X-Lambda-Emulator-Cold-Start"] == "true"
    assert statistics.fmean([call(stack, {}).status_code for _ in range(3)]) == 200
    assert json.loads(resp.text)["uid"] == (65534 if IS_ROOT else os.geteuid())


# --- without root: the stack still runs, and says what it does not enforce ------------------


def test_without_root_the_stack_runs_and_says_what_is_not_enforced(
    probe_app, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unprivileged path (no mounts, no user switch, no cgroups), in-process, as root too."""
    from mnist_lambda.local_stack.cgroups import Cgroups, LimitsUnavailable
    from mnist_lambda.local_stack.environment import function_environment
    from mnist_lambda.local_stack.lambda_emulator import FunctionPool
    from mnist_lambda.local_stack.sandbox import Sandbox
    from mnist_lambda.local_stack.task_root import build
    from mnist_lambda.template.reader import load_stack_spec

    app, template = probe_app
    with monkeypatch.context() as m:
        m.setattr(os, "geteuid", lambda: 1000)
        with pytest.raises(LimitsUnavailable, match="not root"):
            Cgroups()
        sandbox = Sandbox(build(app / "requirements.txt"))
    assert not sandbox.isolated and sandbox.cgroups is None
    seen = sandbox.describe()
    assert seen["limits"] == "limits not enforced: not root, so no cgroup can be written"
    assert seen["filesystem"].startswith("sandbox not enforced")
    spec = load_stack_spec(template).functions["ProbeFunction"]
    pool = FunctionPool(spec, function_environment(spec), app, sandbox=sandbox)
    pool.start()
    try:
        event = {"body": json.dumps({"imports": ["numpy", "sklearn"]})}
        result = pool.invoke(json.dumps(event).encode(), time.monotonic() + 60)
        body = json.loads(json.loads(result.body)["body"])
    finally:
        pool.close()
    assert (body["numpy"], body["sklearn"]) == ("ok", "ModuleNotFoundError")
    assert not any(".venv" in p for p in body["path"])
    assert result.max_memory_mb is None  # no cgroup: no Max Memory Used
