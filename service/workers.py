"""Several HTTP front ends on one port, each listening on a socket of its own (``SO_REUSEPORT``).

uvicorn's ``--workers`` shares one listening socket among its workers: whichever worker wakes first
accepts, so a client's keep-alive connections, opened together, can all land on one worker while the
others idle. Here every worker opens its own socket on the port with ``SO_REUSEPORT``, and the kernel
spreads new connections over the workers' sockets by their addresses. uvicorn's supervisor still
starts, watches, restarts and stops the workers.
"""

from __future__ import annotations

import logging
import socket

import uvicorn
from uvicorn.supervisors import Multiprocess

logger = logging.getLogger("uvicorn.error")


def reuse_port_socket(host: str, port: int, backlog: int | None = None) -> socket.socket:
    """A TCP socket bound to ``host:port`` in the port's reuse group; listening when ``backlog`` is given."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if backlog is not None:
        sock.listen(backlog)
    return sock


class OwnSocket:
    """Stands, in the socket list uvicorn hands each worker it spawns, for a socket the worker opens
    itself: pickled for the new process, it arrives there as a fresh listening socket on the port."""

    def __init__(self, host: str, port: int, backlog: int) -> None:
        self.address = (host, port, backlog)

    def __reduce__(self) -> tuple:
        return reuse_port_socket, self.address


def run_workers(config: uvicorn.Config) -> None:
    """Run ``config.workers`` front ends, each accepting on its own socket of ``config.port``."""
    # Bound but not listening, this socket holds the port (and resolves port 0) without taking connections.
    with reuse_port_socket(config.host, config.port) as reservation:
        port = reservation.getsockname()[1]
        logger.info(
            "Uvicorn running on http://%s:%d with %d workers, a listening socket each (Press CTRL+C to quit)",
            config.host,
            port,
            config.workers,
        )
        Multiprocess(config, sockets=[OwnSocket(config.host, port, config.backlog)]).run()  # type: ignore[list-item]
