"""Messages between the front ends and the engine process: length-prefixed pickles on a Unix socket.

Both ends are this package on one host, so pickle (protocol 5, numpy arrays as raw buffers) is safe
and fast. Front end -> engine: ``Submit`` and ``Cancel``. Engine -> front end: ``Hello`` once on
connecting, then ``Done`` or ``Failed`` for each request submitted.
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from ..model.decode import Spans

HEADER = struct.Struct("!I")


@dataclass(slots=True)
class EngineInfo:
    provider: str
    precision: str
    max_batch_size: int
    thresholds: dict[str, float]  # the export's own, or TRIPLEX_THRESHOLDS


@dataclass(slots=True)
class Hello:
    """Engine -> front end, once on connecting: what the engine runs, for ``/v1/model``."""

    info: EngineInfo


@dataclass(slots=True)
class Submit:
    """Front end -> engine: a request's windows one after the other, as token ids, character starts (-1:
    special token) and the windows' lengths."""

    request_id: int
    ids: np.ndarray
    starts: np.ndarray
    lengths: list[int]
    deadline: float  # time.monotonic(), which every process on the host shares


@dataclass(slots=True)
class Cancel:
    """Front end -> engine: the client went away or the deadline passed; drop what is left of the request."""

    request_id: int


@dataclass(slots=True)
class Done:
    """Engine -> front end: a request's triples as token spans, the window column indexing its windows."""

    request_id: int
    spans: Spans


@dataclass(slots=True)
class Failed:
    """Engine -> front end: the request failed; the HTTP status, code and message to answer with."""

    request_id: int
    status: int
    code: str
    message: str


Message = Hello | Submit | Cancel | Done | Failed


def frame(message: Message) -> bytes:
    body = pickle.dumps(message, protocol=5)
    return HEADER.pack(len(body)) + body


def parse(body: bytes) -> Message:
    return pickle.loads(body)


def receive(stream: BinaryIO) -> Message:
    """The next message from a buffered reader over the socket (one ``recv`` brings many small messages)."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        raise EOFError("connection closed")
    (size,) = HEADER.unpack(header)
    body = stream.read(size)
    if len(body) < size:
        raise EOFError("connection closed")
    return parse(body)
