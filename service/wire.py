"""Messages between the front ends and the engine process: length-prefixed pickles on a Unix socket.

Both ends are this package on one host, so pickle (protocol 5, numpy arrays as raw buffers) is safe
and fast. Front end -> engine: ``("submit", id, ids, starts, lengths, deadline)``, ``("cancel", id)``.
Engine -> front end: ``("hello", info)`` once, ``("done", id, rows, scores)`` with one spans row per
triple (its window column indexing the request's windows), ``("error", id, status, code, message)``.
"""

from __future__ import annotations

import pickle
import socket
import struct

HEADER = struct.Struct("!I")


def frame(message: tuple) -> bytes:
    body = pickle.dumps(message, protocol=5)
    return HEADER.pack(len(body)) + body


def parse(body: bytes) -> tuple:
    return pickle.loads(body)


def receive_exactly(connection: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = connection.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError("connection closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(connection: socket.socket) -> tuple:
    (size,) = HEADER.unpack(receive_exactly(connection, HEADER.size))
    return parse(receive_exactly(connection, size))
