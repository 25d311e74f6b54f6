"""Texts in, triples out: windows, length-sorted padded batches, spans, triples, merging of windows.

The runtime is whatever ``run_encoder``/``run_objects`` wrap: PyTorch for a training checkpoint, ONNX
Runtime for an export (``model.engine``). Evaluation, the CLI and batch jobs go through here; the
service runs the same steps split between its front ends and its engine process.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from tokenizers import Tokenizer

from triplex.model.decode import RunEncoder, RunObjects, Spans, find_spans, to_triples
from triplex.model.progress import progress as progress_bar
from triplex.model.schema import ExtractorConfig, Triple
from triplex.model.tokenize import Batch, Encoded, encode_windows, pad_windows

T, P, R = TypeVar("T"), TypeVar("P"), TypeVar("R")


@dataclass
class Extraction:
    triples: list[Triple]
    windows: int  # 1 when the text fitted in one window


def identity(triple: Triple) -> tuple:
    """Where a triple stands in the text: the same triple found in two windows has the same identity."""
    spans = tuple((slot, entity.start, entity.end) for slot, entity in triple.qualifiers) if triple.qualifiers else ()
    return triple.subject.start, triple.subject.end, triple.predicate, triple.object.start, triple.object.end, spans


@dataclass(frozen=True)
class Ownership:
    """The characters a window answers for: from the middle of its overlap with the previous window
    to the middle of the overlap with the next. A triple is taken from the window that owns its first
    character, where it has context on both sides, or else from the next window when it runs past the
    end of the owner (so only triples longer than the whole overlap can be lost)."""

    start: float
    end: float
    previous_end: float  # where the previous window's text stops

    def keeps(self, triple: Triple) -> bool:
        first = min(triple.subject.start, triple.object.start)
        last = max(triple.subject.end, triple.object.end)
        return self.start <= first < self.end or (first < self.start and last > self.previous_end)


def ownerships(windows: list[Encoded]) -> list[Ownership]:
    starts = [float(w.starts[w.content].min()) if w.content.any() else 0.0 for w in windows]
    ends = [float(w.ends[w.content].max()) if w.content.any() else 0.0 for w in windows]
    cuts = [(end + start) / 2 for end, start in zip(ends, starts[1:])]
    bounds = [float("-inf"), *cuts, float("inf")]
    previous_ends = [float("inf"), *ends[:-1]]
    return [Ownership(bounds[i], bounds[i + 1], previous_ends[i]) for i in range(len(windows))]


def merge_windows(windows: list[Encoded], found: list[list[Triple]]) -> list[Triple]:
    """One text's triples from its windows' triples: each taken from the window that owns it, once."""
    if len(windows) == 1:
        return found[0]  # ``to_triples`` lists them in this order already
    kept: dict[tuple, Triple] = {}
    for owner, triples in zip(ownerships(windows), found):
        for triple in triples:
            if not owner.keeps(triple):
                continue
            key = identity(triple)
            if key not in kept or kept[key].score < triple.score:
                kept[key] = triple
    return sorted(kept.values(), key=identity)


def pipelined(
    items: Iterable[T | None],
    prepare: Callable[[T], P],
    run: Callable[[P], R],
    finish: Callable[[T, R], None],
    overlap: bool = True,
    streams: int = 1,
) -> None:
    """``finish(item, run(prepare(item)))`` for every item, finished in order. With ``overlap`` the stages
    overlap: while ``run`` works on item k (in its own thread: ONNX Runtime and PyTorch release the GIL),
    this thread prepares item k+1 and finishes item k-1, so an accelerator always has the next batch
    waiting. On the CPU one run's graphs already use every core, and the overlap only costs (measured:
    6% at batch 1). ``streams`` > 1 runs that many items at once (implies ``overlap``): on the CPU, one
    single-threaded run per core keeps every core busy without the per-operator hand-offs of a thread
    pool. An item ``None`` finishes everything in flight before the next item is asked for."""
    if not overlap and streams == 1:
        for item in items:
            if item is not None:
                finish(item, run(prepare(item)))
        return
    with ThreadPoolExecutor(max_workers=streams, thread_name_prefix="accelerator") as accelerator:
        in_flight: deque[tuple[T, Future]] = deque()
        for item in items:
            if item is None:  # nothing more for now (a server's queue ran dry): finish what is in flight
                while in_flight:
                    done, future = in_flight.popleft()
                    finish(done, future.result())
                continue
            in_flight.append((item, accelerator.submit(run, prepare(item))))
            if len(in_flight) > streams:
                done, future = in_flight.popleft()
                finish(done, future.result())
        while in_flight:
            done, future = in_flight.popleft()
            finish(done, future.result())


class Extractor:
    """Texts in, triples out, through ``run_encoder``/``run_objects`` (PyTorch or ONNX Runtime);
    ``overlap`` pipelines the batches (for an accelerator), ``streams`` runs that many at once (see
    ``pipelined``)."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        config: ExtractorConfig,
        run_encoder: RunEncoder,
        run_objects: RunObjects,
        batch_size: int = 32,
        overlap: bool = False,
        streams: int = 1,
    ) -> None:
        self.tokenizer, self.config, self.batch_size, self.overlap = tokenizer, config, batch_size, overlap
        self.streams = streams
        self.run_encoder, self.run_objects = run_encoder, run_objects

    def windows(self, texts: list[str]) -> list[list[Encoded]]:
        return encode_windows(self.tokenizer, texts, self.config.max_length, self.config.window_stride)

    def find_spans(self, batch: Batch) -> Spans:
        return find_spans(batch, self.run_encoder, self.run_objects, self.config)

    def extract(self, texts: list[str], progress: bool = False) -> list[Extraction]:
        return self.extract_windows(self.windows(texts), progress)

    def extract_windows(self, windows: list[list[Encoded]], progress: bool = False) -> list[Extraction]:
        """Triples per text from its tokenized windows, batches sorted by length (least padding)."""
        flat = sorted(
            (
                (index, position, window)
                for index, text_windows in enumerate(windows)
                for position, window in enumerate(text_windows)
            ),
            key=lambda item: len(item[2].ids),
        )
        found: list[list[list[Triple]]] = [[[] for _ in text_windows] for text_windows in windows]
        batches = [flat[begin : begin + self.batch_size] for begin in range(0, len(flat), self.batch_size)]

        def finish(batch: list[tuple[int, int, Encoded]], spans: Spans) -> None:
            for (index, position, _), triples in zip(
                batch, to_triples([item[2] for item in batch], spans, self.config)
            ):
                found[index][position] = triples
            bar.update(len(batch))

        with progress_bar(len(flat), "extract", "window", enabled=progress, leave=False) as bar:
            prepare = lambda batch: pad_windows([item[2] for item in batch])  # noqa: E731
            pipelined(batches, prepare, self.find_spans, finish, self.overlap, self.streams)
        return [
            Extraction(merge_windows(text_windows, text_found), len(text_windows))
            for text_windows, text_found in zip(windows, found)
        ]
