"""The front ends' HTTP protocol: uvicorn's own, with a response's head and body in one write."""

from __future__ import annotations

import asyncio

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from triplex.service.one_write import CONTINUE, OneWriteProtocol


class Recorder(asyncio.Transport):
    """What a connection's transport is asked to write, call by call."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def get_extra_info(self, name: str, default=None):
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def echo(scope, receive, send) -> None:
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def exchange(protocol_class: type, *parts: bytes) -> list[bytes]:
    """Feed a request to a real uvicorn protocol, part by part, and return the writes it made."""
    config = uvicorn.Config(echo, http=protocol_class, log_level="warning")
    config.load()
    protocol = protocol_class(config, ServerState(), {})
    transport = Recorder()
    protocol.connection_made(transport)
    for part in parts:
        protocol.data_received(part)
        for _ in range(20):
            await asyncio.sleep(0)
    protocol.connection_lost(None)
    return transport.writes


REQUEST = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\n"


@pytest.mark.parametrize("protocol_class,writes", [(HttpToolsProtocol, 2), (OneWriteProtocol, 1)])
def test_a_response_leaves_in_one_write(protocol_class: type, writes: int) -> None:
    sent = asyncio.run(exchange(protocol_class, REQUEST + b"hello", REQUEST + b"again"))
    assert len(sent) == 2 * writes  # two requests on one keep-alive connection
    responses = b"".join(sent).split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(responses) == 2
    assert responses[0].endswith(b"\r\n\r\nhello") and responses[1].endswith(b"\r\n\r\nagain")


def test_an_interim_continue_is_not_held() -> None:
    head = REQUEST.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n")
    sent = asyncio.run(exchange(OneWriteProtocol, head, b"hello"))
    assert sent[0] == CONTINUE  # written while the client still waits to send its body
    assert len(sent) == 2 and sent[1].startswith(b"HTTP/1.1 200 OK\r\n") and sent[1].endswith(b"hello")
