"""Several HTTP front ends on one port, each connection handed in turn to the next worker by one acceptor.

uvicorn's ``--workers`` shares one listening socket among its workers: whichever worker wakes first
accepts, so a client's keep-alive connections, opened together, can all land on one worker while the
others idle. A listening socket per worker (``SO_REUSEPORT``) spreads many connections by a hash of their
addresses, but two connections land on one worker as often as not. Here a thread of the supervising
process accepts every connection and passes it (``SCM_RIGHTS`` over a Unix socket) to the workers in turn;
a worker serves it as one it had accepted. A worker joins the turn once its app has started and leaves it
when it stops, taking what was already handed to it. uvicorn's supervisor still starts, watches, restarts
and stops the workers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import selectors
import socket
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from uvicorn.supervisors import multiprocess

logger = logging.getLogger("uvicorn.error")
ACCEPTOR_SOCKET = "TRIPLEX_ACCEPTOR_SOCKET"  # where the workers find the acceptor


class Acceptor:
    """Accepts on the port while some worker is ready, and hands each connection to the next worker.

    A worker acknowledges each connection it takes; until then the acceptor keeps its own copy. A worker
    that dies before taking what was handed to it (killed, say) never read from those connections, and
    they go to another worker instead of being lost with it."""

    def __init__(self, listener: socket.socket, path: str) -> None:
        self.listener = listener
        self.listener.setblocking(False)
        self.hall = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # one message, one connection
        self.hall.bind(path)
        self.hall.listen(64)
        self.workers: collections.deque[socket.socket] = collections.deque()
        self.unacknowledged: dict[socket.socket, collections.deque[socket.socket]] = {}
        self.stranded: list[socket.socket] = []  # handed to a worker that left, while no other was ready
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.hall, selectors.EVENT_READ, self.enrol)

    def run(self) -> None:
        while True:
            for key, _ in self.selector.select():
                try:
                    key.data(key.fileobj)
                except Exception:  # one connection's trouble must not stop the port
                    logger.exception("the acceptor failed on a connection; it goes on")

    def enrol(self, hall: socket.socket) -> None:
        worker, _ = hall.accept()
        worker.setblocking(False)  # a worker that stops reading must not stop the others' turns
        self.workers.append(worker)
        self.unacknowledged[worker] = collections.deque()
        self.selector.register(worker, selectors.EVENT_READ, self.listen_to)
        if len(self.workers) == 1:  # until a worker is ready, connections wait in the port's backlog
            self.selector.register(self.listener, selectors.EVENT_READ, self.hand_out)
        stranded, self.stranded = self.stranded, []
        for connection in stranded:
            self.hand(connection)

    def hear(self, worker: socket.socket) -> bool:
        """Close our copies of the connections the worker has acknowledged; False once it has left."""
        taken = self.unacknowledged[worker]
        while True:
            try:
                data = worker.recv(16)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not data:
                return False
            for _ in data:  # one byte per connection, in the order they were handed
                taken.popleft().close()

    def listen_to(self, worker: socket.socket) -> None:
        if not self.hear(worker):
            self.leave(worker)

    def leave(self, worker: socket.socket) -> None:
        if worker not in self.workers:  # a failed send and its end of file can both report it
            return
        self.hear(worker)  # acknowledgements sent before it left
        self.selector.unregister(worker)
        self.workers.remove(worker)
        worker.close()
        if not self.workers:
            self.selector.unregister(self.listener)
        for connection in self.unacknowledged.pop(worker):  # never taken: not a byte of them was read
            self.hand(connection)

    def hand_out(self, listener: socket.socket) -> None:
        try:
            connection, _ = listener.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return
        except OSError as error:  # out of file descriptors, say: the connection waits in the backlog
            logger.error("accepting a connection failed (%s); retrying shortly", error)
            time.sleep(0.1)
            return
        self.hand(connection)

    def hand(self, connection: socket.socket) -> None:
        """Send the connection to the next worker that can take it (each once, in turn)."""
        tries = len(self.workers)
        while tries and self.workers:
            tries -= 1
            worker = self.workers[0]
            self.workers.rotate(-1)
            try:
                socket.send_fds(worker, [b"c"], [connection.fileno()])
            except BlockingIOError:  # hundreds of connections it has not taken yet: the next one
                continue
            except OSError:  # it has left (or died) since its last turn: the next one takes it
                self.leave(worker)
                continue
            self.unacknowledged[worker].append(connection)
            return
        if not self.workers:  # the last worker left with it: the next to start takes it
            self.stranded.append(connection)
            return
        logger.warning("no worker could take a connection; it is closed")
        connection.close()


class HandedServer(uvicorn.Server):
    """A front end that serves the connections the acceptor hands it instead of accepting its own."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the app's lifespan; no listening socket of its own
        self.door = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.door.connect(os.environ[ACCEPTOR_SOCKET])  # blocking for the acknowledgements; reads never wait
        self.arriving: set[asyncio.Task] = set()
        self.protocol = functools.partial(
            self.config.http_protocol_class,  # as uvicorn's own server makes it for an accepted connection
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        asyncio.get_running_loop().add_reader(self.door.fileno(), self.take)

    def take(self) -> None:
        """Serve every connection handed over so far; when the acceptor is gone, stop."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.door, 1, 1, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            if not data:
                loop.remove_reader(self.door.fileno())
                self.should_exit = True
                return
            for fd in fds:
                connection = socket.socket(fileno=fd)
                connection.setblocking(False)
                task = loop.create_task(loop.connect_accepted_socket(self.protocol, connection))
                self.arriving.add(task)
                task.add_done_callback(self.arriving.discard)
                self.acknowledge()

    def acknowledge(self) -> None:
        """Tell the acceptor that a connection was taken (before a byte of it is read), so it drops its copy."""
        with contextlib.suppress(OSError):  # the acceptor is gone (the server stops): nobody keeps a copy
            self.door.send(b"a")  # the acceptor reads these between connections: a full queue empties soon

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Take what was handed here so far, then leave the turn: the acceptor's next send here fails and
        # goes to another worker, as do the connections sent meanwhile, which this worker never took.
        self.take()
        asyncio.get_running_loop().remove_reader(self.door.fileno())
        self.door.shutdown(socket.SHUT_RDWR)
        self.door.close()
        await asyncio.gather(*self.arriving, return_exceptions=True)
        await super().shutdown(sockets)


class HandedProcess(multiprocess.Process):
    """uvicorn's worker process, running a ``HandedServer``."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = HandedServer(config=self.config)
        return self._server


def run_workers(config: uvicorn.Config) -> None:
    """Run ``config.workers`` front ends on ``config.port``, connections handed to them in turn."""
    listener = config.bind_socket()  # uvicorn's own: a port in use ends the start in one line
    with listener, tempfile.TemporaryDirectory(prefix="triplex-acceptor-") as folder:
        listener.listen(config.backlog)
        os.environ[ACCEPTOR_SOCKET] = str(Path(folder) / "acceptor.sock")  # the workers inherit it
        acceptor = Acceptor(listener, os.environ[ACCEPTOR_SOCKET])
        threading.Thread(target=acceptor.run, name="acceptor", daemon=True).start()
        logger.info("%d workers; one acceptor hands them the connections in turn", config.workers)
        multiprocess.Process = HandedProcess  # type: ignore[misc]  # uvicorn's supervisor builds workers by this name
        multiprocess.Multiprocess(config, sockets=[]).run()
