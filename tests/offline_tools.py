"""Running the project's linters and scanners offline, on the templates they read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from http_stub import closed_port


def no_network_env(home: Path, drop_prefixes: tuple[str, ...] = ("AWS_",)) -> dict[str, str]:
    """This process's environment without ``drop_prefixes`` variables, ``HOME`` in ``home``,
    and proxies that lead to a closed port: a tool run with it cannot reach the network."""
    dead = f"http://127.0.0.1:{closed_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop_prefixes)}
    env.update(
        HOME=str(home),
        HTTP_PROXY=dead,
        HTTPS_PROXY=dead,
        http_proxy=dead,
        https_proxy=dead,
        NO_PROXY="",
        no_proxy="",
    )
    return env


def load_cfn(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM YAML template, short tags included (the local stack's reader)."""
    from mnist_lambda.template.reader import load_template

    return load_template(path)
