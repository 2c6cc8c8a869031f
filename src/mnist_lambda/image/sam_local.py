"""The tutorial's own test commands, run for real: ``sam build``, ``sam local invoke`` and
``sam local start-api``, on a Docker engine, against a local S3.

A deployment is a *SAM project folder* (:func:`stage_project`): the template, its OpenAPI
definition and the build context (``Dockerfile``, ``.dockerignore``, ``lambda_app/`` with the model
to serve), so that what ``sam build`` builds is exactly one trained model. The function in its
container reaches the run's S3 at the Docker bridge's gateway, named in an ``--env-vars`` file:
``sam local`` does not evaluate ``Fn::If`` in environment variables (it passes the variable
empty), so the template's ``S3EndpointUrl`` parameter, which sets ``AWS_ENDPOINT_URL_S3`` on the
local stack and leaves it out on AWS, cannot carry it there. The credentials the function gets
are the ones in the ``sam`` process's environment (SAM passes them on): the local stack's
function principal, so the template's IAM policy is enforced on every S3 call.

SAM's telemetry is off and its weekly PyPI version check is skipped: every ``sam`` command here
uses a configuration folder of its own under ``.lambda/sam-cli`` (the user's ``~/.aws-sam`` is not
touched).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from subprocess import DEVNULL
from typing import Any

import psutil

from mnist_lambda.image import base, build, docker_engine
from mnist_lambda.local_stack import StackInfo, procs
from mnist_lambda.paths import project_root
from mnist_lambda.storage import atomic_write_json, atomic_write_text
from mnist_lambda.template import FUNCTION_ID, TEMPLATE_NAME, template_path
from mnist_lambda.template.reader import load_template

BUILD_DIR = ".aws-sam/build"
ENV_VARS_FILE = "env-vars.json"
API_STATE_FILE = "sam_local_api.json"
API_LOG_FILE = "sam_local_api.log"
API_START_TIMEOUT_S = 300  # the first start builds SAM's own layer on the image
INVOKE_TIMEOUT_S = 300


def sam_executable() -> str:
    """The ``sam`` installed beside this interpreter, else the one on PATH."""
    beside = Path(sys.executable).with_name("sam")
    found = str(beside) if beside.exists() else shutil.which("sam")
    if not found:
        raise RuntimeError("the SAM CLI is not installed: run `make setup`")
    return found


class SamLocalError(RuntimeError):
    """A ``sam`` command failed; the message has the command and the end of its output."""


def write_template(dest: Path, docker_tag: str) -> Path:
    """The project's template in ``dest`` with ``docker_tag`` as its ``DockerTag``."""
    template, found = re.subn(
        r"^(\s*DockerTag:\s*)\S+\s*$",
        rf"\g<1>{docker_tag}",
        template_path().read_text(encoding="utf-8"),
        flags=re.MULTILINE,
    )
    if found != 1:
        raise SamLocalError(f"{TEMPLATE_NAME}: expected one DockerTag, found {found}")
    return atomic_write_text(dest / TEMPLATE_NAME, template)


def stage_project(dest: Path, model_path: Path | None = None) -> Path:
    """A SAM project in ``dest`` (made anew): template, OpenAPI and the build context with
    ``model_path`` as the function's model. The image's tag (``DockerTag``) gets the model's
    SHA-256 prefix, so that two projects never build over each other's image."""
    build.stage_context(dest, model_path)
    shutil.copytree(project_root() / "openapi", dest / "openapi")
    model = next((dest / "lambda_app" / "model").glob("model.*"))
    tag = load_template(template_path())["Resources"][FUNCTION_ID]["Metadata"]["DockerTag"]
    write_template(dest, f"{tag}-{hashlib.sha256(model.read_bytes()).hexdigest()[:12]}")
    return dest


def sam_environment(
    credentials: Mapping[str, str] | None = None, region: str = ""
) -> dict[str, str]:
    """The environment for ``sam``: no telemetry, no version check, and (when given) the
    credentials and region that SAM hands to the function."""
    app_dir = project_root() / ".lambda" / "sam-cli"
    app_dir.mkdir(parents=True, exist_ok=True)
    metadata = {"telemetryEnabled": False, "lastVersionCheck": datetime.now(UTC).timestamp()}
    atomic_write_json(app_dir / "metadata.json", metadata)
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "__SAM_CLI_APP_DIR": str(app_dir)}
    if credentials:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            env.pop(name, None)
        env["AWS_ACCESS_KEY_ID"] = credentials["aws_access_key_id"]
        env["AWS_SECRET_ACCESS_KEY"] = credentials["aws_secret_access_key"]
    if region:
        env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = region
    return env


def _run(cmd: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float) -> str:
    done = subprocess.run(
        list(cmd), cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise SamLocalError(f"`{' '.join(cmd[1:3])}` failed ({done.returncode}):\n{tail}")
    return done.stdout


def sam_build(project: Path, *, echo: bool = False) -> Path:
    """``sam build`` of ``project`` (the base image made ready first); the built template.

    The image is then tagged into a repository of its own (``<function>-<DockerTag>``) and the
    built template points at it: ``sam local`` runs containers from ``<repository>:rapid-<arch>``,
    which it rebuilds from the function's image at each start, and ``sam build`` names the
    repository after the function alone, so two projects would otherwise share that tag."""
    base.ensure_base()
    cmd = [sam_executable(), "build", "--template", TEMPLATE_NAME, "--build-dir", BUILD_DIR]
    if echo:
        print("$", " ".join(["sam", *cmd[1:]]), flush=True)
    _run(cmd, project, sam_environment(), timeout=1800)
    built = project / BUILD_DIR / "template.yaml"
    text = built.read_text(encoding="utf-8")
    match = re.search(r"^\s*ImageUri:\s*(\S+)\s*$", text, flags=re.MULTILINE)
    if match is None:
        raise SamLocalError(f"{built}: no ImageUri")
    repository, _, tag = match.group(1).rpartition(":")
    own = f"{repository}-{tag}:{tag}"
    docker_engine.run(["tag", match.group(1), own], timeout=60)
    atomic_write_text(built, text[: match.start(1)] + own + text[match.end(1) :])
    return built


def built_image(project: Path) -> str:
    """The image tag the built template of ``project`` names."""
    text = (project / BUILD_DIR / "template.yaml").read_text(encoding="utf-8")
    match = re.search(r"^\s*ImageUri:\s*(\S+)\s*$", text, flags=re.MULTILINE)
    if match is None:
        raise SamLocalError(f"{project / BUILD_DIR}: no ImageUri in the built template")
    return match.group(1)


def write_env_vars(project: Path, s3_endpoint: str) -> Path:
    """The ``--env-vars`` file that points the function at ``s3_endpoint``."""
    return atomic_write_json(
        project / ENV_VARS_FILE, {FUNCTION_ID: {"AWS_ENDPOINT_URL_S3": s3_endpoint}}
    )


def _overrides(parameters: Mapping[str, Any]) -> list[str]:
    pairs = [f"{k}={v}" for k, v in parameters.items() if v not in ("", None)]
    return ["--parameter-overrides", *pairs] if pairs else []


def invoke_command(
    project: Path, event: Path, parameters: Mapping[str, Any], env_vars: Path | None
) -> list[str]:
    """``sam local invoke`` of the built function with ``event``."""
    cmd = [sam_executable(), "local", "invoke", FUNCTION_ID]
    cmd += ["--template", str(project / BUILD_DIR / "template.yaml"), "--event", str(event)]
    cmd += _overrides(parameters)
    return cmd + (["--env-vars", str(env_vars)] if env_vars else [])


def invoke(
    project: Path,
    event: Path,
    *,
    parameters: Mapping[str, Any],
    env_vars: Path | None = None,
    credentials: Mapping[str, str] | None = None,
    region: str = "us-east-1",
) -> dict[str, Any]:
    """The function's answer to ``event`` (``sam local invoke``), parsed."""
    cmd = invoke_command(project, event, parameters, env_vars)
    out = _run(cmd, project, sam_environment(credentials, region), INVOKE_TIMEOUT_S)
    start = out.find("{")
    if start < 0:
        raise SamLocalError(f"`sam local invoke` printed no JSON answer: {out[-500:]}")
    return json.loads(out[start:])


@dataclass(frozen=True)
class LocalApi:
    """A running ``sam local start-api``, as recorded in its project folder."""

    url: str  # http://127.0.0.1:<port>
    pid: int
    pid_start_time: float
    project: str
    log_file: str

    @property
    def predict_url(self) -> str:
        return f"{self.url}/predict"


def start_api_command(
    project: Path, port: int, parameters: Mapping[str, Any], env_vars: Path | None
) -> list[str]:
    """``sam local start-api`` on 127.0.0.1:``port``, one warm container made at start."""
    cmd = [sam_executable(), "local", "start-api"]
    cmd += ["--template", str(project / BUILD_DIR / "template.yaml")]
    cmd += ["--host", procs.HOST, "--port", str(port), "--warm-containers", "EAGER"]
    cmd += _overrides(parameters)
    return cmd + (["--env-vars", str(env_vars)] if env_vars else [])


def read_api(project: Path) -> LocalApi | None:
    """The API recorded in ``project``, if its process still runs."""
    try:
        data = json.loads((project / API_STATE_FILE).read_text())
        proc = psutil.Process(int(data["pid"]))
        if abs(proc.create_time() - data["pid_start_time"]) > 1 or not proc.is_running():
            return None
    except (OSError, ValueError, KeyError, psutil.Error):
        return None
    return LocalApi(**data)


def start_api(
    project: Path,
    *,
    parameters: Mapping[str, Any],
    env_vars: Path | None = None,
    credentials: Mapping[str, str] | None = None,
    region: str = "us-east-1",
    port: int = 0,
    timeout: float = API_START_TIMEOUT_S,
) -> LocalApi:
    """Start ``sam local start-api`` detached (it outlives this process, as the local stack
    does), wait until it answers, and record it in ``project``."""
    stop_api(project)
    port = port or procs.free_port()
    cmd = start_api_command(project, port, parameters, env_vars)
    log_file = project / API_LOG_FILE
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=project,
            env=sam_environment(credentials, region),
            stdin=DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api = LocalApi(
        f"http://{procs.HOST}:{port}",
        proc.pid,
        psutil.Process(proc.pid).create_time(),
        str(project),
        str(log_file),
    )
    atomic_write_json(project / API_STATE_FILE, asdict(api))
    deadline = time.monotonic() + timeout
    while not procs.port_open(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_api(project)
            tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-25:])
            why = f"exited with {proc.returncode}" if proc.poll() is not None else "timed out"
            raise SamLocalError(f"`sam local start-api` {why} while starting; {log_file}:\n{tail}")
        time.sleep(0.2)
    return api


def start_api_on_stack(
    project: Path, stack: StackInfo, parameters: Mapping[str, Any], **kwargs: Any
) -> LocalApi:
    """:func:`start_api` with the function reading ``stack``'s S3 (its endpoint in the
    ``--env-vars`` file) as the function principal (its keys, its region)."""
    return start_api(
        project,
        parameters=parameters,
        env_vars=write_env_vars(project, stack.s3_url),
        credentials=stack.function_credentials,
        region=stack.region,
        **kwargs,
    )


def stop_api(project: Path, timeout: float = 30) -> bool:
    """Stop the API recorded in ``project`` (SIGTERM: SAM removes its containers); True when
    one was running."""
    api = read_api(project)
    (project / API_STATE_FILE).unlink(missing_ok=True)
    if api is None:
        return False
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(api.pid)
        os.killpg(api.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except psutil.TimeoutExpired:
            os.killpg(api.pid, signal.SIGKILL)
    return True
