"""Joining a Ray cluster, for the bulk job and the Serve replicas alike."""

from __future__ import annotations

import os
import socket

import ray

CONNECT_TIMEOUT_S = 10.0


class ClusterError(ValueError):
    """No Ray cluster at the address given: one line for the user."""


def check_reachable(address: str) -> None:
    """An unreachable HOST:PORT fails here within CONNECT_TIMEOUT_S, not after Ray's own long retries."""
    if address in ("auto", "local") or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except (OSError, ValueError) as error:
        raise ClusterError(
            f"--address {address}: no Ray cluster answers there ({error}); start one with 'ray start --head'"
        ) from None


def connect(address: str | None) -> None:
    """Join the cluster at ``address`` ("auto": the one started on this machine); None starts a local one."""
    if address:
        check_reachable(address)
    try:
        ray.init(address=address, logging_level="WARNING", log_to_driver=False, ignore_reinit_error=True)
    except (ConnectionError, RuntimeError) as error:
        hint = ""
        if address not in (None, "auto") and os.environ.get("RAY_AUTH_MODE") != "token":
            hint = " (a cluster with token authentication needs RAY_AUTH_MODE=token and its token here)"
        raise ClusterError(f"--address {address}: {str(error).splitlines()[0]}{hint}") from None
