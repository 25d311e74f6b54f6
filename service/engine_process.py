"""The one process that owns the accelerator: it forms the batches for every front end and runs them.

    python -m triplex.service.engine_process SOCKET_PATH     (started by the supervisor; settings from TRIPLEX_*)

Front ends send tokenized windows over a Unix socket (``service.wire``); this process queues them in
the fair ``Scheduler``, pads batches, runs both graphs and the vectorised decode, and sends back each
request's triples as token spans once all its windows are done. One thread does all of it, reading
every front end's socket through a selector between batches: no thread hand-off per message, and each
batch is formed from everything that has arrived. On a GPU three stages overlap
(``model.extractor.InFlight``): while the accelerator thread runs batch k, this thread pads batch k+1
and hands out the results of batch k-1.

A failing batch is retried request by request, so one poisonous text fails only its own request; an
out-of-memory error splits the batch in halves first. The process ignores SIGINT and SIGTERM: it lives
until its supervisor closes its standard input, so that front ends can drain through it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import selectors
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..model.decode import Spans
from ..model.extractor import Extractor, InFlight, open_export
from ..model.runtime import ExportError
from ..model.tokenize import Padded, pad_windows
from . import wire
from .metrics import Metrics, Tally
from .scheduler import Request, Scheduler
from .settings import ServiceSettings
from .wire import Cancel, Done, EngineInfo, Failed, Hello, Submit

READY_LINE = "engine ready"
OUT_OF_MEMORY = ("out of memory", "failed to allocate", "bad_alloc", "cudaErrorMemoryAllocation")


@dataclass
class Failure:
    status: int
    code: str
    message: str


Scheduled = list[tuple[Request, int]]  # a batch: (request, window index) pairs


class Peer:
    """One front end's connection: frames arrive in whatever pieces the socket gives."""

    def __init__(self, connection: socket.socket) -> None:
        self.connection, self.unread = connection, b""

    def send(self, *messages: wire.Message) -> None:
        """The messages in one write (one system call for a batch's answers to this front end)."""
        with contextlib.suppress(OSError):  # the front end went away; reading from it will say so
            self.connection.sendall(b"".join(map(wire.frame, messages)))

    def messages(self) -> list[wire.Message]:
        """The messages that have arrived whole, once the socket is readable (a blocking socket: answers
        are written whole); EOFError when the front end has gone."""
        try:
            data = self.connection.recv(1 << 20)
        except OSError as error:
            raise EOFError(str(error)) from None
        if not data:
            raise EOFError("connection closed")
        bodies, self.unread = wire.split_frames(self.unread + data if self.unread else data)
        return [wire.parse(body) for body in bodies]


def failure(error: Exception) -> Failure:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
    if any(sign in reason.lower() for sign in OUT_OF_MEMORY):
        return Failure(503, "out_of_memory", f"the text does not fit in the accelerator's memory: {reason}")
    return Failure(500, "engine_error", f"the engine failed on this request: {reason}")


class EngineServer:
    def __init__(self, extractor: Extractor, settings: ServiceSettings, batch_size: int, metrics: Metrics) -> None:
        self.extractor, self.metrics = extractor, metrics
        self.tally = Tally()  # the metrics' updates, written out between batches
        self.overlap = extractor.overlap  # on a GPU: the stages overlap
        self.scheduler = Scheduler(batch_size, settings.max_batch_tokens, settings.max_queue)
        self.active: dict[tuple, Request] = {}  # submitted and not yet answered
        self.peers: dict[int, Peer] = {}
        self.peer_ids = itertools.count()
        self.selector = selectors.DefaultSelector()
        self.run_cpu_s = 0.0  # CPU of the thread running ``run``, ONNX Runtime's share included
        export = extractor.config.export
        self.info = EngineInfo(
            provider=extractor.runtime.provider,
            precision=export.precision if export else "fp32",
            max_batch_size=batch_size,
            thresholds=extractor.thresholds.to_dict(),
        )

    def serve(self, path: str) -> None:
        self.listen(path)
        print(READY_LINE, flush=True)
        self.loop()

    def listen(self, path: str) -> None:
        """Front ends connect on ``path``; ``poll`` accepts them."""
        if os.path.exists(path):  # left by an engine process that died
            os.unlink(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(64)
        listener.setblocking(False)
        self.selector.register(listener, selectors.EVENT_READ)

    def poll(self, wait: float | None) -> None:
        """Take in every message that has arrived, waiting up to ``wait`` s (None: for ever) for the first."""
        for key, _ in self.selector.select(wait):
            if key.data is None:
                self.accept(key.fileobj)
                continue
            peer_id, peer = key.data
            try:
                messages = peer.messages()
            except EOFError:
                self.close(peer_id, peer)
                continue
            for message in messages:
                if isinstance(message, Submit):
                    self.submit(peer_id, peer, message)
                elif isinstance(message, Cancel):
                    self.drop((peer_id, message.request_id))

    def accept(self, listener: socket.socket) -> None:
        try:
            connection, _ = listener.accept()
        except BlockingIOError:
            return
        peer_id, peer = next(self.peer_ids), Peer(connection)
        connection.setblocking(True)  # not inherited from the listener on every platform
        peer.send(Hello(self.info))
        self.peers[peer_id] = peer
        self.selector.register(connection, selectors.EVENT_READ, (peer_id, peer))

    def close(self, peer_id: int, peer: Peer) -> None:
        self.selector.unregister(peer.connection)
        peer.connection.close()
        for key in [key for key in self.active if key[0] == peer_id]:
            self.drop(key)
        self.peers.pop(peer_id, None)

    def submit(self, peer_id: int, peer: Peer, message: Submit) -> None:
        if len(message.lengths) == 1:
            ids, starts = [message.ids], [message.starts]
        else:  # plain Python: a request has few windows
            bounds = [0, *itertools.accumulate(message.lengths)]
            ids = [message.ids[a:b] for a, b in zip(bounds, bounds[1:])]
            starts = [message.starts[a:b] for a, b in zip(bounds, bounds[1:])]
        if not self.scheduler.has_room(len(ids)):
            peer.send(Failed(message.request_id, 429, "queue_full", "the server is at capacity; retry shortly"))
            return
        request = Request((peer_id, message.request_id), ids, starts, message.deadline)
        self.active[request.key] = request
        self.scheduler.add(request)

    def drop(self, key: tuple) -> None:
        self.active.pop(key, None)
        self.scheduler.remove(key)

    def loop(self) -> None:
        """Batches as they come, in this one thread: it reads the front ends' messages, forms a batch from
        all that has arrived and runs it. On a GPU the stages overlap (pad k+1 and hand out k-1 while k
        runs); on the CPU the graphs use every core and the overlap only competes for them. When the
        queue runs dry, the batches in flight are finished before this waits for more requests."""
        with InFlight(self.run, overlap=self.overlap) as in_flight:
            while True:
                if not (self.scheduler.waiting or in_flight.busy):
                    self.tally.flush()  # idle: the metrics are up to date while nothing happens
                    self.poll(None)  # waiting for work costs no CPU
                started, in_run = time.thread_time(), self.run_cpu_s
                self.poll(0)
                batch = self.next_batch()
                finished = in_flight.add(batch, self.prepare(batch)) if batch else in_flight.drain()
                for done, outcomes in finished:
                    self.finish(done, outcomes)
                spent = time.thread_time() - started  # ``run`` counts its own host work, whichever thread runs it
                self.tally.inc(self.metrics.engine_host_cpu, spent - (0.0 if self.overlap else self.run_cpu_s - in_run))
                self.tally.flush(unless_within=self.tally.interval)

    def next_batch(self) -> Scheduled:
        """The next batch; empty when nothing waits."""
        for request in self.scheduler.expired(time.monotonic()):
            self.active.pop(request.key, None)
            self.tally.inc(self.metrics.dropped.labels("deadline"))
        batch = self.scheduler.next_batch()
        self.tally.set(self.metrics.queue_depth, self.scheduler.queued_windows)
        if batch:
            now = time.monotonic()
            firsts = {id(request): request for request, index in batch if index == 0}.values()
            self.tally.observe(self.metrics.queue_seconds, *[now - request.enqueued for request in firsts])
        return batch

    @staticmethod
    def prepare(batch: Scheduled) -> tuple[Scheduled, Padded]:
        ids = [request.ids[index] for request, index in batch]
        return batch, pad_windows(ids, [request.starts[index] for request, index in batch])

    def run(self, prepared: tuple[Scheduled, Padded]) -> list[Spans | Failure]:
        """Spans per window of the batch; on an engine error, retried in smaller groups to isolate it."""
        batch, padded = prepared
        started, cpu_started, in_runs = time.perf_counter(), time.thread_time(), self.extractor.runtime.run_cpu_s
        try:
            spans = self.extractor.find_spans(padded)
        except Exception as error:  # any onnxruntime error: isolate the windows that cause it
            return self.isolate(batch, failure(error))
        self.record(batch, time.perf_counter() - started)
        outcomes = spans.per_window(len(batch))
        # the window column, from the batch's numbering to each request's own (``outcomes`` are views)
        spans.rows[:, Spans.WINDOW] = np.array([index for _, index in batch])[spans.rows[:, Spans.WINDOW]]
        spent = time.thread_time() - cpu_started
        self.run_cpu_s += spent
        self.tally.inc(self.metrics.engine_host_cpu, spent - (self.extractor.runtime.run_cpu_s - in_runs))
        return outcomes

    def isolate(self, batch: Scheduled, found: Failure) -> list[Spans | Failure]:
        """A failed batch again in parts: halves on running out of memory, else request by request, so
        that one poisonous text fails only its own request."""
        if len(batch) == 1:
            return [found]
        if found.code == "out_of_memory":
            half = len(batch) // 2
            return self.run(self.prepare(batch[:half])) + self.run(self.prepare(batch[half:]))
        groups: dict[int, list[int]] = {}
        for position, (request, _) in enumerate(batch):
            groups.setdefault(id(request), []).append(position)
        if len(groups) == 1:  # one request: it fails alone
            return [found] * len(batch)
        outcomes: list[Spans | Failure] = [found] * len(batch)
        for positions in groups.values():
            group = [batch[p] for p in positions]
            for position, outcome in zip(positions, self.run(self.prepare(group))):
                outcomes[position] = outcome
        return outcomes

    def record(self, batch: Scheduled, seconds: float) -> None:
        padded, padding = Scheduler.padding(batch)
        metrics = self.metrics
        self.tally.observe_each(
            {
                metrics.engine_seconds: seconds,
                metrics.batch_windows: len(batch),
                metrics.batch_texts: len({id(request) for request, _ in batch}),
                metrics.batch_tokens: padded,
                metrics.padding_ratio: padding,
            }
        )

    def finish(self, batch: Scheduled, outcomes: list[Spans | Failure]) -> None:
        answers = []
        for (request, index), outcome in zip(batch, outcomes):
            if self.active.get(request.key) is not request:
                continue  # cancelled, expired or already failed
            if isinstance(outcome, Failure):
                self.active.pop(request.key)
                self.scheduler.remove(request.key)
                answers.append((request, Failed(request.key[1], outcome.status, outcome.code, outcome.message)))
                continue
            request.spans[index] = outcome
            request.remaining -= 1
            if not request.remaining:
                self.active.pop(request.key)
                answers.append((request, Done(request.key[1], Spans.concat(request.spans))))
        by_peer: dict[int, list[wire.Message]] = {}
        for request, message in answers:
            by_peer.setdefault(request.key[0], []).append(message)
        for peer_id, messages in by_peer.items():
            peer = self.peers.get(peer_id)
            if peer is not None:
                peer.send(*messages)


def exit_with_parent() -> None:
    """The supervisor holds our standard input open; when it closes it (or dies), stop."""
    sys.stdin.buffer.read()
    os._exit(0)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=exit_with_parent, daemon=True).start()
    settings = ServiceSettings()
    try:
        # No spinning: this process shares the cores with the front ends, and ONNX Runtime's threads
        # spinning between runs took them (measured on 2 cores, int8, concurrency 32: 258 -> 324 requests/s).
        extractor = open_export(
            settings.model_dir, settings.provider, settings.threads, spinning=False,
            thresholds=settings.chosen_thresholds(), streams=1,
        )  # fmt: skip
    except ExportError as error:
        print(f"triplex: error: {error}", file=sys.stderr, flush=True)
        return 2
    batch_size = settings.batch_size(extractor.runtime.on_gpu)
    extractor.warm_up(batch_size, settings.max_batch_tokens)
    EngineServer(extractor, settings, batch_size, Metrics()).serve(sys.argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
