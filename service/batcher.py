"""The dynamic batcher: a queue of texts and one loop that forms batches and runs the engine.

Batches are bounded by a number of windows and by padded tokens (windows x longest window). When the
queue is thin the loop waits up to ``max_wait_s`` for company. Each text's future resolves with its
result. It knows nothing about HTTP; the engine knows nothing about queues.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property

from model.pipeline import Extraction
from model.tokenize import Encoded
from service.metrics import Metrics

LOOKAHEAD = 4  # batches' worth of queued jobs searched for similar lengths


class QueueFull(Exception):
    """No room in the queue for these texts."""


class Closed(Exception):
    """The batcher is shutting down and takes no new texts."""


@dataclass
class Job:
    windows: list[Encoded]
    deadline: float
    future: asyncio.Future
    enqueued: float = field(default_factory=time.perf_counter)

    @cached_property
    def longest(self) -> int:  # asked many times while batches form
        return max(len(window.ids) for window in self.windows)


class Batcher:
    def __init__(
        self,
        run_batch: Callable[[list[list[Encoded]]], list[Extraction]],
        metrics: Metrics,
        max_batch_size: int = 8,
        max_batch_tokens: int = 16384,
        max_wait_s: float = 0.0,
        max_queue: int = 1024,
    ) -> None:
        self.run_batch, self.metrics = run_batch, metrics
        self.max_batch_size, self.max_batch_tokens = max_batch_size, max_batch_tokens
        self.max_wait_s, self.max_queue = max_wait_s, max_queue
        self.queue: deque[Job] = deque()
        self.arrived = asyncio.Event()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")  # one owner of the engine
        self.closing = False
        self.busy = False  # a batch is in the engine
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.loop())

    def submit(self, windows: list[list[Encoded]], deadline: float) -> list[asyncio.Future]:
        """Queue one job per text; all or none."""
        if self.closing:
            raise Closed
        if len(self.queue) + len(windows) > self.max_queue:
            raise QueueFull
        loop = asyncio.get_running_loop()
        jobs = [Job(text_windows, deadline, loop.create_future()) for text_windows in windows]
        self.queue.extend(jobs)
        self.metrics.queue_depth.set(len(self.queue))
        self.arrived.set()
        return [job.future for job in jobs]

    def fits(self, batch: list[Job], job: Job) -> bool:
        windows = sum(len(j.windows) for j in batch) + len(job.windows)
        longest = max(job.longest, *(j.longest for j in batch))
        return windows <= self.max_batch_size and windows * longest <= self.max_batch_tokens

    async def next_batch(self) -> list[Job]:
        """The oldest job, then the queued jobs nearest to it in length (padding is wasted work) while they
        fit; waits up to ``max_wait_s`` for company when the queue runs dry before the batch is full."""
        while not self.queue:
            self.arrived.clear()
            await self.arrived.wait()
        batch = [self.queue.popleft()]
        waited_until = time.perf_counter() + self.max_wait_s
        while True:
            self.take_similar(batch)
            remaining = waited_until - time.perf_counter()
            full = sum(len(j.windows) for j in batch) >= self.max_batch_size
            if self.queue or full or remaining <= 0:
                break
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), remaining)
            except TimeoutError:
                break
        self.metrics.queue_depth.set(len(self.queue))
        return batch

    def take_similar(self, batch: list[Job]) -> None:
        """Move queued jobs into ``batch``, nearest in length to its first job first, among the oldest
        ``LOOKAHEAD`` batches' worth, while they fit. The oldest job always goes first, so none starves."""
        lookahead = list(itertools.islice(self.queue, LOOKAHEAD * self.max_batch_size))
        target = batch[0].longest
        taken = set()
        for index in sorted(range(len(lookahead)), key=lambda i: (abs(lookahead[i].longest - target), i)):
            if self.fits(batch, lookahead[index]):
                batch.append(lookahead[index])
                taken.add(index)
        if taken:
            kept = [job for index, job in enumerate(lookahead) if index not in taken]
            for _ in range(len(lookahead)):
                self.queue.popleft()
            self.queue.extendleft(reversed(kept))

    def live(self, batch: list[Job]) -> list[Job]:
        """Drop texts whose client went away or whose deadline passed before they reached the engine."""
        now, kept = time.monotonic(), []
        for job in batch:
            if job.future.done():  # cancelled: the client disconnected
                self.metrics.dropped.labels("cancelled").inc()
            elif now > job.deadline:
                self.metrics.dropped.labels("deadline").inc()
                job.future.set_exception(TimeoutError())
            else:
                kept.append(job)
        return kept

    async def loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = self.live(await self.next_batch())
            if not batch:
                continue
            self.busy, started = True, time.perf_counter()
            windows = sum(len(job.windows) for job in batch)
            longest = max(job.longest for job in batch)
            tokens = sum(len(window.ids) for job in batch for window in job.windows)
            for job in batch:
                self.metrics.queue_seconds.observe(started - job.enqueued)
            try:
                results = await loop.run_in_executor(self.executor, self.run_batch, [job.windows for job in batch])
            except Exception as error:  # an engine failure fails this batch's requests, not the loop
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(error)
                self.busy = False
                continue
            self.metrics.engine_seconds.observe(time.perf_counter() - started)
            self.metrics.batch_texts.observe(len(batch))
            self.metrics.batch_windows.observe(windows)
            self.metrics.batch_tokens.observe(windows * longest)
            self.metrics.padding_ratio.observe(1 - tokens / (windows * longest))
            for job, result in zip(batch, results):
                if not job.future.done():
                    job.future.set_result(result)
            self.busy = False

    async def drain(self, timeout: float) -> None:
        """Take no new texts, let the queued ones finish (up to ``timeout``), then stop the loop."""
        self.closing = True
        deadline = time.perf_counter() + timeout
        while (self.queue or self.busy) and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        if self.task:
            self.task.cancel()
        self.executor.shutdown(wait=True)
