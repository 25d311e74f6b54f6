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
        """Triples per text from its tokenized windows; a triple seen in two windows keeps its best score."""
        flat = sorted(
            ((index, window) for index, text_windows in enumerate(windows) for window in text_windows),
            key=lambda pair: len(pair[1].ids),
        )
        found: list[dict[tuple, Triple]] = [{} for _ in windows]
        with tqdm(total=len(flat), desc="extract", unit="window", disable=not progress, leave=False) as bar:
            for begin in range(0, len(flat), self.batch_size):
                batch = flat[begin : begin + self.batch_size]
                decoded = extract([window for _, window in batch], self.run_encoder, self.run_objects, self.config)
                for (index, _), triples in zip(batch, decoded):
                    for triple in triples:
                        key = identity(triple)
                        if key not in found[index] or found[index][key].score < triple.score:
                            found[index][key] = triple
                bar.update(len(batch))
        return [
            Extraction(sorted(triples.values(), key=identity), len(text_windows))
            for triples, text_windows in zip(found, windows)
        ]
