"""uvicorn's HTTP protocol (httptools), writing each response's head and its first body part in one write.

uvicorn writes a response's status line and headers as soon as the app sends ``http.response.start``,
and its body on ``http.response.body``: two system calls, and on TCP two packets, for every answer. Here
the head waits for the first body part and both leave in one write (a bare endpoint's CPU per request:
91 -> 87 µs; benchmarks/README.md, issue 28). An interim ``100 Continue`` is never
held. A response is only complete once its body is sent, so holding the head delays nothing a client
can read.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class OneWrite:
    """A connection's transport, seen by one request-response cycle: the cycle's first write (the
    response's head) is held and goes out with the next one."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.head: bytes | None = None
        self.started = False

    def write(self, data: bytes) -> None:
        if not self.started and data != CONTINUE:
            self.started, self.head = True, data
            return
        if self.head is not None:
            data, self.head = self.head + data, None
        self.transport.write(data)

    def close(self) -> None:
        if self.head is not None:
            self.transport.write(self.head)
            self.head = None
        self.transport.close()

    def __getattr__(self, name: str) -> object:
        return getattr(self.transport, name)


class OneWriteProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol whose request-response cycles write through ``OneWrite``."""

    def on_headers_complete(self) -> None:
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is not None and self.cycle is not previous:  # a new cycle; its task has not run yet
            self.cycle.transport = OneWrite(self.transport)  # type: ignore[assignment]
