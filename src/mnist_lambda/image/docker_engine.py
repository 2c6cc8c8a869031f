"""The Docker engine as this project talks to it: is one there, and the ``docker`` CLI runs.

One place decides whether Docker-backed work can run (:func:`probe_engine`), so the CLI's
preflight and the tests' ``docker`` marker give the same reason when it cannot.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import shutil
import socket
import subprocess
from collections.abc import Callable, Sequence

import psutil

BRIDGE_NETWORK = "bridge"


class DockerError(RuntimeError):
    """A ``docker`` command failed; the message has its output."""


def probe_engine(
    timeout: float = 10.0, which: Callable[[str], str | None] = shutil.which
) -> tuple[str, str] | None:
    """None when ``docker info`` answers, else (what is wrong, what to do)."""
    docker = which("docker")
    fix = "install Docker and start it (`sam build` builds the function image with it)"
    if not docker:
        return "no `docker` command on PATH", fix
    try:
        done = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"the Docker engine did not answer within {timeout:g} s", fix
    except OSError as exc:
        return f"cannot run {docker}: {exc}", fix
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        detail = f" ({said[-1]})" if said else ""
        fix = "start Docker (or set DOCKER_HOST to a running engine)"
        return f"the Docker engine is not answering{detail}", fix
    return None


@functools.cache  # asked by every docker test and preflight; the answer holds for a process
def engine_problem() -> str | None:
    """None when a Docker engine answers, else one sentence: what is missing, what to do."""
    found = probe_engine()
    return f"{found[0]}: {found[1]}" if found else None


def run(args: Sequence[str], *, input_bytes: bytes | None = None, timeout: float = 1800) -> str:
    """``docker ARGS``; its stdout, or a :class:`DockerError` with stderr."""
    done = subprocess.run(
        ["docker", *args], input=input_bytes, capture_output=True, timeout=timeout
    )
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip()
        raise DockerError(f"`docker {' '.join(args[:3])}` failed: {err}")
    return done.stdout.decode(errors="replace")


def image_labels(tag: str) -> dict[str, str] | None:
    """The labels of local image ``tag`` ({} when it has none), or None when it is absent."""
    done = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", tag],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        return None
    return json.loads(done.stdout or "null") or {}


@functools.cache
def bridge_gateway() -> str:
    """The default bridge's gateway address: where a container reaches a server on this host.

    SAM never puts its containers on the host network, so a host server (the run's S3) must
    listen here, not on 127.0.0.1, for a function in a container to reach it. The engine names
    the gateway in the network's IPAM config, or (the default bridge, on older engines) only
    the bridge interface, whose address it is.
    """
    fmt = '{{json .IPAM.Config}} {{index .Options "com.docker.network.bridge.name"}}'
    out = run(["network", "inspect", BRIDGE_NETWORK, "--format", fmt], timeout=30).strip()
    config, _, interface = out.rpartition(" ")
    for entry in json.loads(config) or []:
        if (gateway := entry.get("Gateway", "")) and ipaddress.ip_address(gateway).version == 4:
            return gateway
    for address in psutil.net_if_addrs().get(interface, []):
        if address.family == socket.AF_INET:
            return address.address
    raise DockerError(f"the `{BRIDGE_NETWORK}` network has no IPv4 gateway: {out}")
