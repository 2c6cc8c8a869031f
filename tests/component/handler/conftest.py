"""Fixtures of the handler layer: lambda_predict imported in-process, S3 on moto over HTTP."""

from __future__ import annotations

import importlib
import sys

import pytest
from aws_fakes import fake_aws_env


@pytest.fixture(scope="module")
def no_aws_config(tmp_path_factory: pytest.TempPathFactory):
    """A folder without AWS config files (one per module, so the handler's client is reused)."""
    return tmp_path_factory.mktemp("aws")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, no_aws_config) -> str:
    """Dummy credentials, us-east-1, S3 endpoint -> moto; no user AWS config leaks in."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    env = fake_aws_env(no_aws_config, moto_endpoint)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return moto_endpoint


@pytest.fixture
def cold_import():
    """(Re)import lambda_predict with the environment as it is now, as a cold start would; it
    is dropped afterwards, so that other tests import it afresh with their own environment."""

    def load():
        if "lambda_predict" in sys.modules:
            return importlib.reload(sys.modules["lambda_predict"])
        return importlib.import_module("lambda_predict")

    yield load
    sys.modules.pop("lambda_predict", None)
