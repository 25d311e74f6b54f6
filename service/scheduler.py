"""Which windows go into the next engine batch: fair across requests, similar in length.

The unit of work is a window, not a text: a request of 64 long texts is hundreds of windows, and they
are spread over many batches. Each batch is led by the request served least recently (round robin), so
none starves; the rest of the batch is filled with windows nearest in length to the leader's (padding
is wasted work), at most an equal share per request, so a big request cannot crowd out the small ones
that arrive while it runs. A request alone in the queue still gets whole batches.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ..model.decode import Spans

LOOKAHEAD = 4  # batches' worth of requests searched for windows of similar length


@dataclass
class Request:
    """One request's windows (all its texts'): token ids and character starts (-1: special token) per
    window, and their spans as batches finish them."""

    key: tuple
    ids: list[np.ndarray]
    starts: list[np.ndarray]
    deadline: float  # time.monotonic(), which every process on the host shares
    pending: list[int] = field(default_factory=list)  # windows not yet in a batch, in order
    spans: list[Spans | None] = field(default_factory=list)
    enqueued: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.pending = list(range(len(self.ids)))
        self.spans = [None] * len(self.ids)
        self.remaining = len(self.ids)  # windows without spans yet


class Scheduler:
    def __init__(self, max_batch_size: int, max_batch_tokens: int, max_queue: int) -> None:
        self.max_batch_size, self.max_batch_tokens, self.max_queue = max_batch_size, max_batch_tokens, max_queue
        self.waiting: OrderedDict[tuple, Request] = (
            OrderedDict()
        )  # requests with windows to schedule, least recently served first
        self.queued_windows = 0
        self.earliest_deadline = math.inf  # at or before every waiting request's: ``expired`` looks no sooner

    def has_room(self, windows: int) -> bool:
        return self.queued_windows + windows <= self.max_queue or not self.waiting

    def add(self, request: Request) -> None:
        if request.ids:
            self.waiting[request.key] = request
            self.queued_windows += len(request.ids)
            self.earliest_deadline = min(self.earliest_deadline, request.deadline)

    def remove(self, key: tuple) -> Request | None:
        request = self.waiting.pop(key, None)
        if request is not None:
            self.queued_windows -= len(request.pending)
        return request

    def expired(self, now: float) -> list[Request]:
        """Requests past their deadline, taken out of the queue (their clients already got 504). The queue is
        searched only once the earliest deadline has passed, not before every batch."""
        if now <= self.earliest_deadline:
            return []
        expired = [self.remove(key) for key, request in list(self.waiting.items()) if request.deadline < now]
        self.earliest_deadline = min((request.deadline for request in self.waiting.values()), default=math.inf)
        return expired

    def next_batch(self) -> list[tuple[Request, int]]:
        """(request, window index) pairs for the next engine call; empty when nothing waits."""
        if not self.waiting:
            return []
        if self.queued_windows <= self.max_batch_size:  # everything may fit: one batch of all, if in budget
            batch = [(request, index) for request in self.waiting.values() for index in request.pending]
            if len(batch) * max(len(request.ids[index]) for request, index in batch) <= self.max_batch_tokens:
                self.waiting.clear()
                self.queued_windows, self.earliest_deadline = 0, math.inf
                return batch
        requests = list(self.waiting.values())[: LOOKAHEAD * self.max_batch_size]
        share = max(1, math.ceil(self.max_batch_size / len(requests)))
        leader = requests[0]
        batch = [(leader, leader.pending[0])]
        target = len(leader.ids[leader.pending[0]])
        candidates = [  # nearest in length first, then the least recently served, then in window order
            (abs(len(request.ids[index]) - target), order, index, request)
            for order, request in enumerate(requests)
            for index in request.pending[1 if request is leader else 0 : share]
        ]
        candidates.sort()  # (distance, order, index) is never equal twice: the requests are not compared
        longest = target
        for _, _, index, request in candidates:
            if len(batch) >= self.max_batch_size:
                break
            length = max(longest, len(request.ids[index]))
            if (len(batch) + 1) * length <= self.max_batch_tokens:
                batch.append((request, index))
                longest = length
        taken: dict[int, tuple[Request, set[int]]] = {}
        for request, index in batch:
            taken.setdefault(id(request), (request, set()))[1].add(index)
        for request, indices in taken.values():
            request.pending = [index for index in request.pending if index not in indices]
            self.waiting.move_to_end(request.key)  # served: to the back of the round
            if not request.pending:
                del self.waiting[request.key]
        self.queued_windows -= len(batch)
        return batch

    @staticmethod
    def padding(batch: list[tuple[Request, int]]) -> tuple[int, float]:
        """Padded tokens of the batch and the share of them that is padding."""
        lengths = [len(request.ids[index]) for request, index in batch]  # a few: plain Python
        padded = len(lengths) * max(lengths)
        return padded, 1 - sum(lengths) / padded
