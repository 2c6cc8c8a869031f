"""The target=aws preflight: each missing piece named with its fix, and no test leaves loopback."""

from __future__ import annotations

import io
import os
import shutil
import socket
import stat
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError
from botocore.stub import Stubber

from mnist_lambda.pipeline import preflight

IDENTITY = {
    "UserId": "AIDEXAMPLE",
    "Account": "123456789012",
    "Arn": "arn:aws:iam::123456789012:user/dev",
}


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test that tries to connect beyond 127.0.0.1."""
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1"):
            raise AssertionError(f"test tried to reach {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An environment where boto3 can resolve no credentials: no env, empty files, no IMDS."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    empty = tmp_path / "empty"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("HOME", str(tmp_path))


def fake_docker(folder: Path, body: str) -> Path:
    """A ``docker`` shell script in ``folder`` that runs ``body``."""
    folder.mkdir(exist_ok=True)
    path = folder / "docker"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return folder


class FakeSession:
    """A boto3 session stand-in: given credentials and a given STS client."""

    def __init__(self, credentials: Any, client: Any = None) -> None:
        self.credentials = credentials
        self.sts = client
        self.client_kwargs: dict[str, Any] = {}

    def get_credentials(self) -> Any:
        return self.credentials

    def client(self, service: str, **kwargs: Any) -> Any:
        assert service == "sts"
        self.client_kwargs = kwargs
        return self.sts


class RaisingClient:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def get_caller_identity(self) -> dict[str, Any]:
        raise self.exc


def offline_sts() -> Any:
    """A real STS client (made offline) with dummy keys, to stub."""
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    return session.client("sts")


# --- bucket names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["mnist-lambda-local", "abc", "a" * 63, "my.data.bucket", "1-2-3", "digits2024"],
)
def test_valid_bucket_names(name: str) -> None:
    assert preflight.bucket_name_errors(name) == []
    assert preflight.check_bucket(name) == []


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("", "characters long"),
        ("ab", "characters long"),
        ("a" * 64, "characters long"),
        ("Mnist-Lambda", "lowercase letters"),
        ("my_bucket", "lowercase letters"),
        ("my bucket", "lowercase letters"),
        ("-bucket", "begin and end"),
        ("bucket.", "begin and end"),
        ("my..bucket", "adjacent dots"),
        ("192.168.5.4", "IP address"),
        ("xn--bucket", "'xn--'"),
        ("sthree-bucket", "'sthree-'"),
        ("amzn-s3-demo-bucket", "'amzn-s3-demo-'"),
        ("bucket-s3alias", "'-s3alias'"),
        ("bucket--ol-s3", "'--ol-s3'"),
        ("bucket.mrap", "'.mrap'"),
        ("bucket--x-s3", "'--x-s3'"),
        ("bucket--table-s3", "'--table-s3'"),
    ],
)
def test_invalid_bucket_names_say_which_rule(name: str, rule: str) -> None:
    assert any(rule in e for e in preflight.bucket_name_errors(name))
    (problem,) = preflight.check_bucket(name)
    assert problem.check == "bucket"
    assert rule in problem.message
    assert "-p bucket" in problem.fix


# --- regions --------------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1", "ap-southeast-2"])
def test_regions_boto3_knows(region: str) -> None:
    assert region in preflight.known_regions()
    assert preflight.check_region(region) == []


@pytest.mark.parametrize("region", ["us-east-9", "US-EAST-1", "mars-north-1", "us_east_1"])
def test_unknown_region(region: str) -> None:
    (problem,) = preflight.check_region(region)
    assert problem.check == "region"
    assert repr(region) in problem.message
    assert "-p region" in problem.fix


def test_missing_region_and_suggestions() -> None:
    (problem,) = preflight.check_region("", known={"us-east-1"})
    assert problem.message == "no AWS region"
    (problem,) = preflight.check_region("eu-west-9", known={"eu-west-1", "us-east-1"})
    assert "eu-west-1" in problem.fix
    assert "us-east-1" not in problem.fix


# --- docker ---------------------------------------------------------------------------------


def test_docker_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    (problem,) = preflight.check_docker()
    assert problem.check == "docker"
    assert "no `docker`" in problem.message
    assert "install Docker" in problem.fix


def test_docker_engine_down(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bin_dir = fake_docker(
        tmp_path / "bin", 'echo "Cannot connect to the Docker daemon" >&2; exit 1'
    )
    monkeypatch.setenv("PATH", str(bin_dir))
    (problem,) = preflight.check_docker()
    assert "not answering (Cannot connect to the Docker daemon)" in problem.message
    assert "start Docker" in problem.fix


def test_docker_engine_hangs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    sleep = shutil.which("sleep")
    monkeypatch.setenv("PATH", str(fake_docker(tmp_path / "bin", f"exec {sleep} 30")))
    start = time.monotonic()
    (problem,) = preflight.check_docker(timeout=0.5)
    assert time.monotonic() - start < 10
    assert "did not answer within 0.5 s" in problem.message


def test_docker_engine_answers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(fake_docker(tmp_path / "bin", "echo 27.0.0")))
    assert preflight.check_docker() == []


# --- credentials ----------------------------------------------------------------------------


@pytest.mark.usefixtures("no_aws")
def test_no_credentials() -> None:
    identity, problems = preflight.caller_identity("us-east-1")
    assert identity is None
    (problem,) = problems
    assert problem.check == "credentials"
    assert str(problem) == (
        "no AWS credentials: set AWS_PROFILE or run `aws configure` (or `aws sso login`)"
    )


@pytest.mark.usefixtures("no_aws")
def test_unknown_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    (problem,) = preflight.check_aws("mnist-lambda-local", "us-east-1", docker=False)
    assert problem.check == "credentials"
    assert "no-such-profile" in problem.message


def test_identity_with_one_short_try() -> None:
    sts = offline_sts()
    session = FakeSession(credentials=object(), client=sts)
    with Stubber(sts) as stub:
        stub.add_response("get_caller_identity", IDENTITY)
        identity, problems = preflight.caller_identity("eu-west-1", timeout=3, session=session)
    assert problems == []
    assert identity is not None and identity["Arn"] == IDENTITY["Arn"]
    config = session.client_kwargs["config"]
    assert session.client_kwargs["region_name"] == "eu-west-1"
    assert (config.connect_timeout, config.read_timeout) == (3, 3)
    assert config.retries["total_max_attempts"] == 1


def test_rejected_credentials() -> None:
    sts = offline_sts()
    with Stubber(sts) as stub:
        stub.add_client_error("get_caller_identity", "InvalidClientTokenId", http_status_code=403)
        (problem,) = preflight.caller_identity("us-east-1", session=FakeSession(object(), sts))[1]
    assert problem.check == "credentials"
    assert "InvalidClientTokenId" in problem.message


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url="https://sts.us-east-1.amazonaws.com/"),
        ConnectTimeoutError(endpoint_url="https://sts.us-east-1.amazonaws.com/"),
    ],
)
def test_network_errors_are_named(exc: Exception) -> None:
    session = FakeSession(object(), RaisingClient(exc))
    (problem,) = preflight.caller_identity("us-east-1", session=session)[1]
    assert problem.check == "network"
    assert "cannot reach AWS STS" in problem.message


@pytest.mark.usefixtures("no_aws")
def test_unreachable_sts_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real boto3, dummy keys, STS on a closed loopback port: one try, a named problem."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{port}")
    start = time.monotonic()
    identity, problems = preflight.caller_identity("us-east-1", timeout=2)
    assert time.monotonic() - start < 10
    assert identity is None
    assert [p.check for p in problems] == ["network"]


# --- all together ---------------------------------------------------------------------------


@pytest.mark.usefixtures("no_aws")
def test_check_aws_names_every_missing_piece(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    problems = preflight.check_aws("Not_A_Bucket", "us-east-9")
    assert [p.check for p in problems] == ["region", "bucket", "docker", "credentials"]
    out = io.StringIO()
    assert preflight.report(problems, file=out) == 2
    text = out.getvalue()
    assert text.startswith("error: not ready to run (the target's needs are missing):")
    assert "set AWS_PROFILE or run `aws configure`" in text


def test_check_aws_pure_checks_pass(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(fake_docker(tmp_path / "bin", "echo 27.0.0")))
    sts = offline_sts()
    with Stubber(sts) as stub:
        stub.add_response("get_caller_identity", IDENTITY)
        out = io.StringIO()
        problems = preflight.check_aws(
            "mnist-lambda-123456789012", "eu-west-1", session=FakeSession(object(), sts), out=out
        )
    assert problems == []
    assert out.getvalue() == f"AWS credentials: {IDENTITY['Arn']} (account 123456789012)\n"
    assert preflight.report(problems, file=io.StringIO()) == 0


@pytest.mark.usefixtures("no_aws")
def test_check_run_applies_only_to_aws_steps(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker
    assert preflight.check_run({}) == []  # target defaults to local
    assert preflight.check_run({"target": "aws"}, ["sample", "train"]) == []
    upload = preflight.check_run({"target": "aws", "bucket": "ab"}, ["upload"])
    assert [p.check for p in upload] == ["bucket", "credentials"]  # no sam build: no docker
    deploy = preflight.check_run({"target": "aws"}, ["deploy"])
    assert [p.check for p in deploy] == ["docker", "credentials"]  # deploy takes no bucket
    teardown = preflight.check_run({"target": "aws", "teardown": True}, ["deploy"])
    assert [p.check for p in teardown] == ["credentials"]


def test_check_run_refuses_an_auth_the_target_does_not_enforce(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker
    assert preflight.check_run({"auth": "iam"}) == []  # the local stack enforces it
    problems = preflight.check_run({"auth": "api_key", "target": "sam-local"})
    assert problems[0].check == "auth" and "aws-sam-cli#7750" in problems[0].fix
    assert "target='local'" in problems[0].fix
    assert [p.check for p in problems].count("auth") == 1  # once, though two steps take auth
    unknown = preflight.check_run({"auth": "oauth"})
    assert [p.check for p in unknown] == ["auth"] and "'none'" in unknown[0].fix


def test_check_run_for_sam_local_needs_docker_and_no_aws(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker
    problems = preflight.check_run({"target": "sam-local"}, ["upload", "deploy", "evaluate"])
    assert [p.check for p in problems] == ["docker"]  # once, and no AWS credentials
    assert "install Docker" in problems[0].fix
    teardown = {"target": "sam-local", "teardown": True}
    assert preflight.check_run(teardown, ["deploy"]) == []  # stopping needs no engine
    out = io.StringIO()
    assert preflight.report(problems, file=out) == 2
    assert "no `docker` command on PATH" in out.getvalue()


def test_sam_local_with_an_engine_checks_the_base_image(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An engine answers but the base image is neither here nor buildable: say what to do."""
    from mnist_lambda.image import base

    monkeypatch.setenv("PATH", str(fake_docker(tmp_path / "bin", "echo 27.0.0")))
    why = ("public.ecr.aws/lambda/python:3.12 is not here", "install CPython 3.12")
    monkeypatch.setattr(base, "base_problem", lambda: why)
    (problem,) = preflight.check_sam_local()
    assert problem.check == "base image" and problem.message == why[0]
    assert "docker pull public.ecr.aws/lambda/python:3.12" in problem.fix and why[1] in problem.fix


@pytest.mark.usefixtures("no_aws")
def test_check_run_reads_a_replays_parameters() -> None:
    base = {"upload": {"target": "aws", "bucket": "Bad_Bucket", "region": "us-east-1"}}
    problems = preflight.check_run({}, ["upload"], base=base)
    assert [p.check for p in problems] == ["bucket", "credentials"]
    assert preflight.check_run({"target": "local"}, ["upload"], base=base) == []
    unknown_region = preflight.check_run({"target": "aws", "region": "nowhere-1"}, ["upload"])
    assert [p.check for p in unknown_region] == ["region", "credentials"]
