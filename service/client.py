"""A front end's connection to the engine process: submit a request's windows, await their spans.

When the engine process goes away, every request in flight fails at once with 503 (none hangs), and
the connection is made again in the background until the restarted engine answers; ``ready`` tells
whether requests can be taken now.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import numpy as np

from ..model.tokenize import Encoded
from . import wire
from .wire import Cancel, Done, EngineInfo, Hello, Submit

RECONNECT_S = 0.1


class EngineError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class EngineClient:
    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self.writer: asyncio.StreamWriter | None = None
        self.pending: dict[int, asyncio.Future] = {}
        self.ids = itertools.count()
        self.info: EngineInfo | None = None
        self.task: asyncio.Task | None = None
        self.closing = False
        self.connected = asyncio.Event()  # set once the first connection is made
        self.outgoing: list[bytes] = []  # frames written together once this turn of the event loop ends

    @property
    def ready(self) -> bool:
        return self.writer is not None and self.task is not None and not self.task.done()

    async def start(self, timeout: float) -> None:
        """Connect (retrying while the engine starts) and keep the connection alive from then on."""
        self.task = asyncio.get_running_loop().create_task(self.connection_loop())
        try:
            await asyncio.wait_for(self.connected.wait(), timeout)
        except TimeoutError:
            raise RuntimeError(f"no engine process answered on {self.socket_path} within {timeout:.0f} s") from None

    async def connection_loop(self) -> None:
        while not self.closing:
            try:
                reader, writer = await asyncio.open_unix_connection(self.socket_path, limit=1 << 24)
                hello = await self.read(reader)
                if not isinstance(hello, Hello):
                    raise EOFError(f"the engine process answered {type(hello).__name__} before Hello")
                self.info = hello.info
                self.writer = writer
                self.connected.set()
                await self.dispatch(reader)
            except (OSError, EOFError, asyncio.IncompleteReadError):
                pass
            self.writer = None
            self.fail_all(EngineError(503, "engine_restarting", "the engine process stopped; retry shortly"))
            if not self.closing:
                await asyncio.sleep(RECONNECT_S)

    @staticmethod
    async def read(reader: asyncio.StreamReader) -> wire.Message:
        (size,) = wire.HEADER.unpack(await reader.readexactly(wire.HEADER.size))
        return wire.parse(await reader.readexactly(size))

    async def dispatch(self, reader: asyncio.StreamReader) -> None:
        """Every answer that has arrived, as it arrives (one read brings a batch's answers together)."""
        unread = b""
        while True:
            data = await reader.read(1 << 20)
            if not data:
                raise EOFError("the engine process closed the connection")
            bodies, unread = wire.split_frames(unread + data if unread else data)
            for body in bodies:
                self.answer(wire.parse(body))

    def answer(self, message: wire.Message) -> None:
        future = self.pending.pop(message.request_id, None)
        if future is None or future.done():
            return
        if isinstance(message, Done):
            future.set_result(message.spans)
        else:
            future.set_exception(EngineError(message.status, message.code, message.message))

    def fail_all(self, error: EngineError) -> None:
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)

    def submit(self, windows: list[Encoded], deadline: float) -> tuple[int, asyncio.Future]:
        """Send the windows; the future resolves with their spans (the WINDOW column indexes ``windows``)
        or fails with ``EngineError``. A future, not a coroutine: no task per request."""
        if self.writer is None:
            raise EngineError(503, "engine_restarting", "the engine process is restarting; retry shortly")
        request_id = next(self.ids)
        future = self.pending[request_id] = asyncio.get_running_loop().create_future()
        ids = np.concatenate([window.ids for window in windows])
        starts = np.concatenate([window.starts for window in windows])
        lengths = [len(window.ids) for window in windows]
        self.send(Submit(request_id, ids, starts, lengths, deadline))
        return request_id, future

    def send(self, message: wire.Message) -> None:
        """Queue a message; the requests that arrive in one turn of the event loop go out in one write."""
        if not self.outgoing:
            asyncio.get_running_loop().call_soon(self.flush)
        self.outgoing.append(wire.frame(message))

    def flush(self) -> None:
        frames, self.outgoing = self.outgoing, []
        if self.writer is not None:  # else the engine is gone, and its requests fail with fail_all
            self.writer.write(b"".join(frames))

    def cancel(self, request_id: int) -> None:
        """The client left or the deadline passed: free the engine of the request."""
        if self.pending.pop(request_id, None) is not None and self.writer is not None:
            self.send(Cancel(request_id))

    async def drain(self, timeout: float) -> None:
        """Wait (up to ``timeout``) for the requests in flight, then close."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.pending and loop.time() < deadline:
            await asyncio.sleep(0.01)
        self.closing = True
        if self.writer is not None:
            self.writer.close()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
