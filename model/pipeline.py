"""Texts in, triples out: windows, length-sorted batches, decode, and merging of windows.

The runtime is whatever ``run_encoder``/``run_objects`` wrap: PyTorch for a training checkpoint, ONNX
Runtime for an export (``service.engine``). Evaluation and the service both go through here.
"""

from __future__ import annotations

from dataclasses import dataclass

from tokenizers import Tokenizer
from tqdm import tqdm

from model.decode import RunEncoder, RunObjects, extract
from model.schema import ExtractorConfig, Triple
from model.tokenize import Encoded, encode_windows


@dataclass
class Extraction:
    triples: list[Triple]
    windows: int  # 1 when the text fitted in one window


def identity(triple: Triple) -> tuple:
    """Where a triple stands in the text: the same triple found in two windows has the same identity."""
    spans = tuple((slot, entity.start, entity.end) for slot, entity in triple.qualifiers)
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


class Extractor:
    def __init__(
        self,
        tokenizer: Tokenizer,
        config: ExtractorConfig,
        run_encoder: RunEncoder,
        run_objects: RunObjects,
        batch_size: int = 32,
    ) -> None:
        self.tokenizer, self.config, self.batch_size = tokenizer, config, batch_size
        self.run_encoder, self.run_objects = run_encoder, run_objects

    def windows(self, texts: list[str]) -> list[list[Encoded]]:
        return encode_windows(self.tokenizer, texts, self.config.max_length, self.config.window_stride)

    def extract(self, texts: list[str], progress: bool = False) -> list[Extraction]:
        return self.extract_windows(self.windows(texts), progress)

    def extract_windows(self, windows: list[list[Encoded]], progress: bool = False) -> list[Extraction]:
        """Triples per text from its tokenized windows; each triple is taken from the window that owns it."""
        flat = sorted(
            (
                (index, window, owner)
                for index, text_windows in enumerate(windows)
                for window, owner in zip(text_windows, ownerships(text_windows))
            ),
            key=lambda item: len(item[1].ids),
        )
        found: list[dict[tuple, Triple]] = [{} for _ in windows]
        with tqdm(total=len(flat), desc="extract", unit="window", disable=not progress, leave=False) as bar:
            for begin in range(0, len(flat), self.batch_size):
                batch = flat[begin : begin + self.batch_size]
                decoded = extract([window for _, window, _ in batch], self.run_encoder, self.run_objects, self.config)
                for (index, _, owner), triples in zip(batch, decoded):
                    for triple in triples:
                        if not owner.keeps(triple):
                            continue
                        key = identity(triple)
                        if key not in found[index] or found[index][key].score < triple.score:
                            found[index][key] = triple
                bar.update(len(batch))
        return [
            Extraction(sorted(triples.values(), key=identity), len(text_windows))
            for triples, text_windows in zip(found, windows)
        ]
