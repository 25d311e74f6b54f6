"""Messages between the front ends and the engine process: length-prefixed frames on a Unix socket.

Front end -> engine: ``Submit`` and ``Cancel``. Engine -> front end: ``Hello`` once on connecting, then
``Done`` or ``Failed`` for each request submitted. The two that every request sends, ``Submit`` and
``Done``, are a fixed header and raw int64/float64 arrays (writing and reading one took 8-13 µs here,
against about 60 as a pickle); the rare ones are pickles (both ends are this package on one host).
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass

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


PICKLED, SUBMIT, DONE = b"p", b"s", b"d"  # a frame's first byte
SUBMIT_HEAD = struct.Struct("<cqdI")  # kind, request id, deadline, windows; then lengths, ids, starts (int64)
DONE_HEAD = struct.Struct("<cqI")  # kind, request id, triples; then rows (int64, 6 per triple), scores (float64)


def frame(message: Message) -> bytes:
    if isinstance(message, Submit):
        parts = [SUBMIT_HEAD.pack(SUBMIT, message.request_id, message.deadline, len(message.lengths))]
        parts += [raw(message.lengths), raw(message.ids), raw(message.starts)]
    elif isinstance(message, Done):
        spans = message.spans
        parts = [DONE_HEAD.pack(DONE, message.request_id, len(spans)), raw(spans.rows)]
        parts.append(raw(spans.scores, np.float64))
    else:
        parts = [PICKLED, pickle.dumps(message, protocol=5)]
    body = b"".join(parts)
    return HEADER.pack(len(body)) + body


def raw(values: np.ndarray | list[int], dtype: type = np.int64) -> bytes:
    return np.asarray(values, dtype=dtype).tobytes()


def parse(body: bytes) -> Message:
    """A message from its frame's body; the arrays of ``Submit`` and ``Done`` are read-only views of it."""
    kind = body[:1]
    if kind == SUBMIT:
        _, request_id, deadline, windows = SUBMIT_HEAD.unpack_from(body)
        lengths = list(struct.unpack_from(f"={windows}q", body, SUBMIT_HEAD.size))  # as numpy wrote them
        tokens, offset = sum(lengths), SUBMIT_HEAD.size + 8 * windows
        ids = np.frombuffer(body, np.int64, tokens, offset)
        starts = np.frombuffer(body, np.int64, tokens, offset + 8 * tokens)
        return Submit(request_id, ids, starts, lengths, deadline)
    if kind == DONE:
        _, request_id, triples = DONE_HEAD.unpack_from(body)
        rows = np.frombuffer(body, np.int64, 6 * triples, DONE_HEAD.size).reshape(triples, 6)
        scores = np.frombuffer(body, np.float64, triples, DONE_HEAD.size + 48 * triples)
        return Done(request_id, Spans(rows, scores))
    return pickle.loads(body[1:])


def split_frames(data: bytes) -> tuple[list[bytes], bytes]:
    """The bodies of the whole frames at the front of ``data``, and what is left of a frame still arriving."""
    bodies, offset, size = [], 0, len(data)
    while offset + HEADER.size <= size:
        (length,) = HEADER.unpack_from(data, offset)
        end = offset + HEADER.size + length
        if end > size:
            break
        bodies.append(data[offset + HEADER.size : end])
        offset = end
    return bodies, data[offset:]
