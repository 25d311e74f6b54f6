"""Texts in, triples out: windows, length-sorted padded batches, spans, triples, merging of windows.

``Codec`` is the part without graphs: texts -> windows, and spans -> each text's triples. The service's
front ends use it alone; the graphs run in its engine process. ``Extractor`` adds a ``Runtime`` and the
thresholds: every other caller (the Python API, the CLI, evaluation, bulk jobs, the engine process) uses it.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar, overload

import numpy as np
from tokenizers import Tokenizer

from .decode import Spans, find_spans, to_triples
from .runtime import OnnxRuntime, Runtime, check_export_folder, choose_providers, unreadable
from .schema import ExtractorConfig, Thresholds, Triple
from .tokenize import Encoded, Padded, ascii_twin, encode_windows, load_tokenizer, lone_surrogate, pad_windows

T, R = TypeVar("T"), TypeVar("R")
OnWindows = Callable[[int], None]  # told how many windows were just done: a progress bar's update


@dataclass
class Extraction:
    """One text's triples."""

    triples: list[Triple]
    windows: int  # 1 when the text fitted in one window

    def to_dict(self) -> dict:
        """The JSON form every output shares: the service's response, the CLI's and the bulk jobs' lines."""
        return {"triples": [triple.to_dict() for triple in self.triples], "windows": self.windows}


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


class InFlight(Generic[T, R]):
    """Work items run by ``run`` in threads (ONNX Runtime and PyTorch release the GIL) while the caller
    prepares the next item and finishes earlier ones, so an accelerator always has the next batch waiting.
    On the CPU one run's graphs already use every core, and the overlap only costs (measured: 6% at batch
    1), so without ``overlap`` each item runs at once in the caller's thread. ``streams`` > 1 runs that
    many items at once (implies overlap): on the CPU, one single-threaded run per core keeps every core
    busy without the per-operator hand-offs of a thread pool. ``add`` and ``drain`` return the items
    they finished, with their results, in the order they were added."""

    def __init__(self, run: Callable[..., R], overlap: bool = True, streams: int = 1) -> None:
        self.run, self.streams = run, streams
        overlapped = overlap or streams > 1
        self.pool = ThreadPoolExecutor(streams, thread_name_prefix="accelerator") if overlapped else None
        self.queue: deque[tuple[T, Future]] = deque()

    @property
    def busy(self) -> bool:
        return bool(self.queue)

    def add(self, item: T, prepared: object) -> list[tuple[T, R]]:
        if self.pool is None:
            return [(item, self.run(prepared))]
        self.queue.append((item, self.pool.submit(self.run, prepared)))
        return self.take(len(self.queue) - self.streams)

    def drain(self) -> list[tuple[T, R]]:
        return self.take(len(self.queue))

    def take(self, count: int) -> list[tuple[T, R]]:
        done = []
        for _ in range(max(count, 0)):
            item, future = self.queue.popleft()
            done.append((item, future.result()))
        return done

    def __enter__(self) -> InFlight[T, R]:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


class Codec:
    """The steps around the graphs: texts -> windows of token ids, and token spans -> each text's triples."""

    def __init__(self, tokenizer: Tokenizer, config: ExtractorConfig) -> None:
        self.tokenizer, self.config = tokenizer, config
        self.ascii_tokenizer = ascii_twin(tokenizer)  # ASCII texts tokenized without BERT's Unicode passes

    def windows(self, texts: list[str]) -> list[list[Encoded]]:
        config = self.config
        return encode_windows(self.tokenizer, texts, config.max_length, config.window_stride, self.ascii_tokenizer)

    def triples(self, windows: list[list[Encoded]], spans: Spans) -> list[Extraction]:
        """Each text's triples, merged across its windows; ``spans``' window column counts the windows of
        all the texts in order."""
        flat = [window for text_windows in windows for window in text_windows]
        found = iter(to_triples(flat, spans, self.config))
        return [Extraction(merge_windows(ws, [next(found) for _ in ws]), len(ws)) for ws in windows]


class Extractor(Codec):
    """Texts in, triples out, through a ``Runtime``: ``extractor(text)`` or ``extractor([text, ...])``.

    ``thresholds``: instead of the model's own (chosen on dev data at training time). Batches of
    ``batch_size`` windows of similar length; ``overlap`` pipelines them (for an accelerator), ``streams``
    runs that many at once (see ``InFlight``)."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        config: ExtractorConfig,
        runtime: Runtime,
        thresholds: Thresholds | None = None,
        batch_size: int = 32,
        overlap: bool = False,
        streams: int = 1,
    ) -> None:
        super().__init__(tokenizer, config)
        self.runtime, self.thresholds = runtime, thresholds or config.thresholds
        self.batch_size, self.overlap, self.streams = batch_size, overlap, streams

    def with_thresholds(self, thresholds: Thresholds) -> Extractor:
        """The same model, tokenizer and runtime at other thresholds."""
        return Extractor(
            self.tokenizer, self.config, self.runtime, thresholds, self.batch_size, self.overlap, self.streams
        )

    def find_spans(self, batch: Padded) -> Spans:
        return find_spans(batch, self.runtime, self.thresholds, len(self.config.relations))

    @overload
    def extract(self, texts: str) -> list[Triple]: ...

    @overload
    def extract(self, texts: Sequence[str]) -> list[list[Triple]]: ...

    def extract(self, texts: str | Sequence[str]) -> list[Triple] | list[list[Triple]]:
        """The triples of one text, or a list of them for a list of texts (batched on the accelerator)."""
        if isinstance(texts, str):
            return self.extract_all([texts])[0].triples
        return [found.triples for found in self.extract_all(texts)]

    __call__ = extract

    def extract_all(self, texts: Sequence[str], on_windows: OnWindows | None = None) -> list[Extraction]:
        """Triples and window counts per text; a text that is no string, or not text, raises."""
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"text {index} is a {type(text).__name__}, not a string")
            problem = lone_surrogate(text)
            if problem:
                raise ValueError(f"text {index} {problem}")
        return self.extract_windows(self.windows(list(texts)), on_windows)

    def extract_windows(self, windows: list[list[Encoded]], on_windows: OnWindows | None = None) -> list[Extraction]:
        """Triples per text from its tokenized windows, in batches sorted by length (least padding)."""
        flat = sorted(
            ((index, position, window) for index, ws in enumerate(windows) for position, window in enumerate(ws)),
            key=lambda item: len(item[2].ids),
        )
        found: list[list[list[Triple]]] = [[[] for _ in ws] for ws in windows]
        batches = [flat[begin : begin + self.batch_size] for begin in range(0, len(flat), self.batch_size)]

        def finish(batch: list[tuple[int, int, Encoded]], spans: Spans) -> None:
            for (index, position, _), triples in zip(
                batch, to_triples([item[2] for item in batch], spans, self.config)
            ):
                found[index][position] = triples
            if on_windows is not None:
                on_windows(len(batch))

        with InFlight(self.find_spans, self.overlap, self.streams) as in_flight:
            for batch in batches:
                padded = pad_windows([item[2].ids for item in batch], [item[2].starts for item in batch])
                for done, spans in in_flight.add(batch, padded):
                    finish(done, spans)
            for done, spans in in_flight.drain():
                finish(done, spans)
        return [Extraction(merge_windows(ws, found_in), len(ws)) for ws, found_in in zip(windows, found)]

    def warm_up(self, max_batch_size: int, max_batch_tokens: int) -> None:
        """Run both graphs on every shape bucket a server will meet (lengths and batch sizes in powers of
        two up to the limits), graph 2 with a real subject in every row, so the first requests do not pay
        for kernel selection and memory arenas."""
        thresholds = np.array([self.thresholds.start, self.thresholds.end], dtype=np.float32)
        token = self.tokenizer.get_vocab_size() // 2  # any ordinary token
        for length in powers_of_two(8, self.config.max_length):
            for batch in powers_of_two(1, max(1, min(max_batch_size, max_batch_tokens // length))):
                input_ids = np.full((batch, length), token, dtype=np.int64)
                hidden, _ = self.runtime.encode(input_ids, np.ones_like(input_ids))
                subjects = np.array([[row, 1, min(2, length - 1)] for row in range(batch)], dtype=np.int64)
                self.runtime.objects(hidden, subjects, thresholds)


def powers_of_two(low: int, high: int) -> list[int]:
    """low, 2 low, 4 low ... below high, then high."""
    values = [low]
    while values[-1] * 2 < high:
        values.append(values[-1] * 2)
    return values + [high] if high > low else values


def open_export(
    folder: str | Path,
    provider: str = "auto",
    threads: int = 0,
    batch_size: int = 32,
    spinning: bool = True,
    thresholds: Thresholds | None = None,
    streams: int = 1,
) -> Extractor:
    """An ``Extractor`` over an export folder in ONNX Runtime. ``threads``: CPU threads in all (0: one per
    core), shared among ``streams`` batches run at once on the CPU (0: one single-threaded stream per
    thread); on a GPU one stream, pipelined."""
    folder = Path(folder)
    check_export_folder(folder)
    on_gpu = choose_providers(provider)[0] == "CUDAExecutionProvider"
    threads = threads or len(os.sched_getaffinity(0))
    streams = 1 if on_gpu else streams or threads
    try:
        config, tokenizer = ExtractorConfig.load(folder), load_tokenizer(folder)
    except Exception as error:  # corrupt files surface as many different json and tokenizers errors
        raise unreadable(folder, error) from None
    runtime = OnnxRuntime(folder, provider, max(1, threads // streams), spinning)
    return Extractor(tokenizer, config, runtime, thresholds, batch_size, runtime.on_gpu, streams)
