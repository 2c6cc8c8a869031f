"""The local stack end to end: moto S3, `serve` as a process, the notebook API."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import signal
import stat
from pathlib import Path

import numpy as np
import pytest
import requests
from echo_app import write_echo_app
from polling import wait_until
from repo_paths import ROOT
from serve_process import ServeProcess

from mnist_lambda import cli, local_stack
from mnist_lambda.client import predict
from mnist_lambda.local_stack import procs, protocol
from mnist_lambda.local_stack.environment import function_environment
from mnist_lambda.local_stack.lambda_emulator import find_rie
from mnist_lambda.local_stack.protocol import make_s3_client
from mnist_lambda.local_stack.s3_server import S3Server
from mnist_lambda.template.reader import load_stack_spec

pytestmark = pytest.mark.timeout(120)


READY_KEYS = {
    "predict_url",
    "s3_url",
    "bucket",
    "region",
    "instances",
    "pid",
    "generation",
    "emulator_pids",
    "s3_pid",
    "port",
    "s3_port",
    "stage",
    "routes",
    "s3_credentials",
    "sandbox",
}


def _closed(*ports: int) -> bool:
    return not any(procs.port_open(p) for p in ports)


def test_rie_binary_and_function_environment(tmp_path: Path, monkeypatch) -> None:
    rie = find_rie()
    assert rie.stat().st_mode & stat.S_IXUSR
    monkeypatch.setenv("AWS_PROFILE", "someone-elses")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "real-secret")
    _, template = write_echo_app(tmp_path)
    spec = load_stack_spec(template).functions["EchoFunction"]
    env = function_environment(spec, {"ALLOWED_BUCKETS": "b"})
    assert env["ALLOWED_BUCKETS"] == "b"  # the stack's override beats the template
    assert env["GREETING"] == "hello-us-east-1"
    assert (env["AWS_LAMBDA_FUNCTION_TIMEOUT"], env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]) == (
        "5", "256")  # fmt: skip
    assert "AWS_PROFILE" not in env and "AWS_SECRET_ACCESS_KEY" not in env


def test_moto_s3_server_and_bucket() -> None:
    s3 = S3Server()
    url = s3.start()
    try:
        s3.create_bucket("unit-bucket")
        s3.create_bucket("unit-bucket")  # idempotent
        client = s3.admin_client()
        assert "unit-bucket" in [b["Name"] for b in client.list_buckets()["Buckets"]]
        client.put_object(Bucket="unit-bucket", Key="k.bin", Body=b"\x00\x01")
        assert client.get_object(Bucket="unit-bucket", Key="k.bin")["Body"].read() == b"\x00\x01"
        with pytest.raises(client.exceptions.ClientError, match="InvalidAccessKeyId"):
            make_s3_client(url).list_buckets()  # unsigned by a known user: refused
    finally:
        pid = s3.pid
        s3.stop()
    assert _closed(s3.port)
    assert pid is not None and not procs.pid_alive(pid)


def test_serve_main_lifecycle(tmp_path: Path) -> None:
    """Ready line, S3 + function wired together, SIGHUP redeploy, SIGTERM clean shutdown."""
    app, template = write_echo_app(tmp_path)
    state = tmp_path / "state" / "stack.json"
    serve = ServeProcess(
        ["--template", str(template), "--app-dir", str(app), "--instances", "2",
         "--bucket", "serve-bucket", "--state-file", str(state), "--model-path", str(template)],
        tmp_path / "serve.log",
    )  # fmt: skip
    try:
        info = serve.info
        assert set(info) >= READY_KEYS
        assert info["pid"] == serve.proc.pid
        assert (info["bucket"], info["region"], info["instances"]) == (
            "serve-bucket",
            "us-east-1",
            2,
        )
        assert info["predict_url"] == f"http://127.0.0.1:{info['port']}/dev/predict"
        assert json.loads(state.read_text())["pid"] == serve.proc.pid
        assert len(info["emulator_pids"]) == 2

        s3 = make_s3_client(info["s3_url"], credentials=info["s3_credentials"])
        assert "serve-bucket" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
        s3.put_object(Bucket="serve-bucket", Key="keep.txt", Body=b"kept")

        resp = requests.post(info["predict_url"], json={}, timeout=30)
        assert resp.status_code == 200
        env = resp.json()["env"]
        assert env["ALLOWED_BUCKETS"] == "from-template"  # the template is the one source
        assert env["AWS_ENDPOINT_URL_S3"] == info["s3_url"]
        assert env["LAMBDA_TASK_ROOT"] == "/var/task" and "MODEL_PATH" not in env
        assert env["AWS_REGION"] == "us-east-1"
        assert env["AWS_ACCESS_KEY_ID"] not in ("", info["s3_credentials"]["aws_access_key_id"])
        assert (
            requests.post(
                f"http://127.0.0.1:{info['port']}/predict", json={}, timeout=30
            ).status_code
            == 200
        )

        serve.signal(signal.SIGHUP)  # redeploy
        assert wait_until(lambda: json.loads(state.read_text())["generation"] == 1, 20)
        new = json.loads(state.read_text())
        assert not set(new["emulator_pids"]) & set(info["emulator_pids"])
        assert wait_until(lambda: not any(map(procs.pid_alive, info["emulator_pids"])), 10)
        resp = requests.post(info["predict_url"], json={}, timeout=30)
        assert resp.headers["X-Lambda-Emulator-Cold-Start"] == "true"
        assert resp.headers["X-Lambda-Emulator-Instance"].endswith("/g1")
        assert s3.get_object(Bucket="serve-bucket", Key="keep.txt")["Body"].read() == b"kept"

        children = procs.descendants(serve.proc.pid)
        assert new["s3_pid"] in children and set(new["emulator_pids"]) <= set(children)
        serve.signal(signal.SIGTERM)
        assert serve.wait(20) == 0
    finally:
        serve.kill()
    assert not state.exists()
    assert _closed(info["port"], info["s3_port"])
    assert wait_until(lambda: not any(map(procs.pid_alive, children)), 5)
    log = serve.stderr_text()
    assert "POST /dev/predict 200" in log and "redeployed" in log


def test_supervisor_killed_outright_leaves_no_orphans(tmp_path: Path) -> None:
    app, template = write_echo_app(tmp_path)
    serve = ServeProcess(["--template", str(template), "--app-dir", str(app)], tmp_path / "log")
    try:
        assert requests.post(serve.info["predict_url"], json={}, timeout=30).status_code == 200
        children = procs.descendants(serve.proc.pid)
        assert len(children) >= 3  # moto, the RIE and its Python runtime
        os.kill(serve.proc.pid, signal.SIGKILL)  # no chance to clean up
        serve.wait(10)
        assert wait_until(lambda: not any(map(procs.pid_alive, children)), 10)
    finally:
        serve.kill()


def test_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    app, template = write_echo_app(tmp_path)
    serve = ServeProcess(["--template", str(template), "--app-dir", str(app)], tmp_path / "log")
    try:
        children = procs.descendants(serve.proc.pid)
        serve.signal(signal.SIGINT)
        assert serve.wait(20) == 0
    finally:
        serve.kill()
    assert wait_until(lambda: not any(map(procs.pid_alive, children)), 5)
    assert "Traceback" not in serve.stderr_text()


def test_serve_fails_cleanly_on_a_bad_template(tmp_path: Path, capsys) -> None:
    app, _ = write_echo_app(tmp_path)
    missing = str(tmp_path / "missing.yaml")
    assert cli.main(["serve", "--template", missing, "--app-dir", str(app)]) == 1
    assert capsys.readouterr().out == ""
    assert cli.main(["serve", "--instances", "-1"]) == 2


def test_notebook_api_start_read_redeploy_stop(tmp_path: Path) -> None:
    app, template = write_echo_app(tmp_path)
    state_dir = tmp_path / "stack"
    assert local_stack.read(state_dir) is None
    info = local_stack.start(
        state_dir, app_dir=app, template=template, instances=1, bucket="api-bucket"
    )
    try:
        assert local_stack.read(state_dir) == info
        assert local_stack.start(state_dir, app_dir=app, template=template).pid == info.pid
        assert (info.bucket, info.generation, info.instances) == ("api-bucket", 0, 1)
        assert info.state_file == state_dir / protocol.STATE_FILE_NAME
        client = local_stack.s3_client(info)
        client.put_object(Bucket=info.bucket, Key="x", Body=b"1")
        assert requests.post(info.predict_url, json={}, timeout=30).status_code == 200
        again = local_stack.redeploy(state_dir)
        assert again.generation == 1 and again.pid == info.pid
        resp = requests.post(again.predict_url, json={}, timeout=30)
        assert resp.headers["X-Lambda-Emulator-Cold-Start"] == "true"
        assert client.get_object(Bucket=info.bucket, Key="x")["Body"].read() == b"1"
    finally:
        local_stack.stop(state_dir)
    assert local_stack.read(state_dir) is None
    assert not info.state_file.exists()
    assert not procs.pid_alive(info.pid)
    assert _closed(info.port, info.s3_port)
    local_stack.stop(state_dir)  # idempotent
    assert "ready: POST" in (state_dir / "local_stack.log").read_text()


def test_a_stack_started_for_its_s3_gets_its_function_on_deploy(
    tmp_path: Path, small_model_path: Path
) -> None:
    """Upload's stack: S3 and the API, no environment (502); deploy's redeploy brings the
    requested model and number of environments, and S3 keeps its objects."""
    state_dir = tmp_path / "stack"
    info = local_stack.start(state_dir, instances=0, bucket="s3-first")
    try:
        assert info.instances == 0 and info.emulator_pids == ()
        local_stack.s3_client(info).put_object(Bucket=info.bucket, Key="kept", Body=b"1")
        resp = requests.post(
            info.predict_url, json={"bucket": "s3-first", "key": "kept"}, timeout=30
        )
        assert resp.status_code == 502 and resp.json() == {"message": "Internal server error"}
        deployed = local_stack.redeploy(state_dir, model_path=str(small_model_path), instances=2)
        assert (deployed.instances, len(deployed.emulator_pids)) == (2, 2)
        assert deployed.raw["model_path"] == str(small_model_path.resolve())
        assert not (state_dir / protocol.DEPLOY_REQUEST_NAME).exists()
        kept = local_stack.s3_client(deployed).get_object(Bucket="s3-first", Key="kept")["Body"]
        assert kept.read() == b"1"
    finally:
        local_stack.stop(state_dir)


def test_a_redeploy_applies_template_parameters_and_reserved_concurrency_throttles(
    tmp_path: Path, small_model_path: Path, mnist_xy
) -> None:
    """``redeploy(parameters=...)`` re-reads the template: MemorySize follows, and with a
    reserved concurrency of 1 a second concurrent request is throttled as Lambda does (API
    Gateway answers 500) instead of waiting."""
    import concurrent.futures

    from real_stack import PREFIX, npy_bytes, real_stack

    state = tmp_path / "stack"
    with real_stack(state, small_model_path, instances=3) as info:
        assert info.memory_mb == 1769
        key = f"{PREFIX}rows.npy"
        local_stack.s3_client(info).put_object(
            Bucket=info.bucket, Key=key, Body=npy_bytes(mnist_xy[0][:3000])
        )
        parameters = {"ReservedConcurrency": "1", "MemorySize": "256"}
        info = local_stack.redeploy(state, parameters=parameters)
        assert info.memory_mb == 256 and info.raw["parameters"]["ReservedConcurrency"] == "1"
        assert info.raw["functions"]["PredictFunction"]["environments"] == 1
        assert len(info.emulator_pids) == 1
        body = {"bucket": info.bucket, "key": key}
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            calls = [pool.submit(requests.post, info.predict_url, json=body, timeout=60)]
            calls.append(pool.submit(requests.post, info.predict_url, json=body, timeout=60))
            answers = sorted((c.result() for c in calls), key=lambda r: r.status_code)
    assert [a.status_code for a in answers] == [200, 500], [a.text for a in answers]
    assert answers[1].json() == {"message": "Internal server error"}
    assert answers[1].headers["X-Lambda-Emulator-Throttled"] == "true"


def _real_app_skip_reason(model_path: Path) -> str | None:
    """Why the real handler/template cannot be used yet, or None."""
    handler = ROOT / "lambda_app" / "lambda_predict.py"
    template = ROOT / "template_no_auth.yaml"
    try:
        load_stack_spec(template)
        spec = importlib.util.spec_from_file_location("_lambda_predict_probe", handler)
        assert spec is not None and spec.loader is not None
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MODEL_PATH", str(model_path))  # in case the model loads at import
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
    except Exception as exc:
        return f"the real handler/template do not load: {exc!r}"
    return None


def test_real_lambda_app_behind_the_stack(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The real lambda_app/lambda_predict.py and template_no_auth.yaml, if they exist yet."""
    for name in ("lambda_app/lambda_predict.py", "template_no_auth.yaml"):
        if not (ROOT / name).exists():
            pytest.skip(f"{name} does not exist yet")
    small_model_path: Path = request.getfixturevalue("small_model_path")
    mnist_xy: tuple[np.ndarray, np.ndarray] = request.getfixturevalue("mnist_xy")
    reason = _real_app_skip_reason(small_model_path)
    if reason:
        pytest.skip(reason)
    from mnist_serving.model import load

    rows = np.ascontiguousarray(mnist_xy[0][:200], dtype=np.uint8)
    expected = load(small_model_path).predict(rows).tolist()
    state_dir = tmp_path / "stack"
    info = local_stack.start(state_dir, model_path=small_model_path)
    try:
        buf = io.BytesIO()
        np.save(buf, rows)
        local_stack.s3_client(info).put_object(
            Bucket=info.bucket, Key="digits/first200.npy", Body=buf.getvalue()
        )
        result = predict(info.predict_url, info.bucket, "digits/first200.npy")
        assert result.body == expected
    finally:
        local_stack.stop(state_dir)


def _memory_limit_mb(pid: int) -> float:
    """The memory limit of the cgroup ``pid`` is in (v1 or v2), in MB."""
    from mnist_lambda.aws_limits import MIB
    from mnist_lambda.local_stack.cgroups import _mounts

    mounts = _mounts()
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(",") and "memory" in mounts:
            limit = mounts["memory"] / path.lstrip("/") / "memory.limit_in_bytes"
            return int(limit.read_text()) / MIB
        if controllers == "" and "unified" in mounts and "memory" not in mounts:
            return int((mounts["unified"] / path.lstrip("/") / "memory.max").read_text()) / MIB
    raise AssertionError(f"process {pid} is in no memory cgroup")


def test_memory_size_reaches_the_environment_on_the_local_target(
    tmp_path: Path, small_model_path: Path
) -> None:
    """04_deploy's ``memory_size`` on ``target=local``: the deployment says it, and each
    environment's memory cgroup enforces it."""
    from mnist_lambda.deploy import targets

    run_dir = tmp_path / "run"
    targets.s3_client("local", run_dir, "us-east-1", targets.DEFAULT_BUCKET, start=True)
    try:
        for memory_mb in (512, 1024):
            deployment = targets.deploy(
                "local",
                run_dir,
                model_path=small_model_path,
                bucket=targets.DEFAULT_BUCKET,
                region="us-east-1",
                instances=1,
                memory_size=memory_mb,
            )
            info = local_stack.read(run_dir)
            assert info is not None and deployment.memory_mb == info.memory_mb == memory_mb
            if not info.raw["sandbox"]["limits"].startswith("enforced"):
                pytest.skip(info.raw["sandbox"]["limits"])
            (pid,) = info.emulator_pids
            assert _memory_limit_mb(pid) == memory_mb
    finally:
        targets.stop_local(run_dir)
