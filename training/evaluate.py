"""P/R/F1 scoring (exact and partial match, per predicate, error lists)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from itertools import product
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..model.extractor import Extractor
from ..model.runtime import Runtime
from ..model.schema import Thresholds, Triple

# The thresholds tried on dev, on enough gold triples (APART_MIN_TRIPLES): a start and an end chosen together
# from STARTS x ENDS, first one pair for subjects and objects alike, then the subjects' own pair and the
# objects' pair in turn until neither moves, at most ROUNDS times (why: benchmarks/README.md).
STARTS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
ENDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
ROUNDS = 3
# Pairs, the subjects' own thresholds and the choice after every epoch need this many gold triples or more;
# on fewer, a start and then an end are chosen one at a time, once, for the epoch kept at the base pair.
APART_MIN_TRIPLES = 300


def ratios(correct: int, predicted: int, gold: int) -> dict[str, float]:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def score(gold: list[list[Triple]], predicted: list[list[Triple]]) -> dict:
    """Micro P/R/F1 over sets of triples per sentence, exact and partial (last word of each entity)."""
    totals = {False: Counter(), True: Counter()}
    by_predicate: dict[str, Counter] = {}
    for gold_triples, predicted_triples in zip(gold, predicted):
        for partial, counts in totals.items():
            gold_keys = {triple.key(partial) for triple in gold_triples}
            predicted_keys = {triple.key(partial) for triple in predicted_triples}
            counts.update(correct=len(gold_keys & predicted_keys), predicted=len(predicted_keys), gold=len(gold_keys))
            if partial:
                continue
            for key in gold_keys | predicted_keys:
                counts_for = by_predicate.setdefault(key[1], Counter())
                counts_for.update(  # int: a fresh Counter stores update()'s first values as they are (True)
                    correct=int(key in gold_keys and key in predicted_keys),
                    predicted=int(key in predicted_keys),
                    gold=int(key in gold_keys),
                )
    exact, partial = ratios(**totals[False]), ratios(**totals[True])
    return {
        **exact,
        **{f"partial_{name}": value for name, value in partial.items()},
        **totals[False],
        "sentences": len(gold),
        "per_predicate": {
            predicate: {**ratios(**counts), **counts} for predicate, counts in sorted(by_predicate.items())
        },
    }


def write_errors(path: Path, texts: list[str], gold: list[list[Triple]], predicted: list[list[Triple]]) -> int:
    """One JSON line per sentence with missed or spurious triples (exact match); returns how many."""
    written = 0
    with open(path, "w", encoding="utf-8") as handle:
        for text, gold_triples, predicted_triples in zip(texts, gold, predicted):
            gold_keys = {triple.key(): triple for triple in gold_triples}
            predicted_keys = {triple.key(): triple for triple in predicted_triples}
            missed = [gold_keys[key].to_dict() for key in gold_keys.keys() - predicted_keys.keys()]
            spurious = [predicted_keys[key].to_dict() for key in predicted_keys.keys() - gold_keys.keys()]
            if missed or spurious:
                handle.write(
                    json.dumps({"text": text, "missed": missed, "spurious": spurious}, ensure_ascii=False) + "\n"
                )
                written += 1
    return written


CACHE_BYTES = 2**30  # graph 1's outputs kept while thresholds are chosen; past this, computed again


class CachedRuntime:
    """A runtime whose outputs are kept, for running the same texts at many thresholds: graph 1 once per
    batch, graph 2 once per batch and set of subjects, asked at the lowest thresholds tried
    (``object_spans`` applies the real ones, so the triples are the same as without the cache)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime, self.kept = runtime, 0
        self.encoded: dict[bytes, tuple] = {}
        self.found: dict[tuple[int, bytes], tuple[np.ndarray, np.ndarray]] = {}
        self.lowest = np.array([min(STARTS), min(ENDS)], dtype=np.float32)

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple:
        key = input_ids.tobytes() + bytes(str(input_ids.shape), "ascii")
        if key in self.encoded:
            return self.encoded[key]
        outputs = self.runtime.encode(input_ids, attention_mask)
        size = sum(getattr(output, "nbytes", 0) for output in outputs)  # numpy and torch; others uncounted
        if self.kept + size <= CACHE_BYTES:
            self.encoded[key], self.kept = outputs, self.kept + size
        return outputs

    def objects(self, hidden, subjects: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if np.any(thresholds < self.lowest):
            return self.runtime.objects(hidden, subjects, thresholds)
        key = (id(hidden), subjects.tobytes())  # hidden: one kept graph-1 output, alive as long as the cache
        if key not in self.found:
            self.found[key] = self.runtime.objects(hidden, subjects, self.lowest)
        return self.found[key]


def cached(extractor: Extractor) -> Extractor:
    """The extractor on a runtime that keeps its outputs (``CachedRuntime``); one that does already is
    returned as it is."""
    if isinstance(extractor.runtime, CachedRuntime):
        return extractor
    runtime = CachedRuntime(extractor.runtime)
    return Extractor(extractor.tokenizer, extractor.config, runtime, extractor.thresholds, extractor.batch_size)


class Choice(NamedTuple):
    """The thresholds ``choose_thresholds`` chose, and every setting it tried with its figures."""

    thresholds: Thresholds
    tried: list[dict]

    def record(self, source: str) -> dict:
        """As the model card keeps it (``training.thresholds``): ``chosen on SOURCE``."""
        return {"chosen": f"on {source}", **self.thresholds.to_dict(), "tried": self.tried}

    @property
    def figures(self) -> dict:
        """The chosen setting's row of ``tried``."""
        return next(row for row in self.tried if Thresholds(**thresholds_of(row)).values == self.thresholds.values)


def choose_thresholds(
    extractor: Extractor, texts: list[str], gold: list[list[Triple]], apart_min_triples: int = APART_MIN_TRIPLES
) -> Choice:
    """The thresholds with the best F1 on ``texts``, chosen a start and end pair at a time (see ``STARTS``),
    each step keeping what it started from on a tie; on fewer than ``apart_min_triples`` gold triples one
    value at a time, the same for subjects and objects."""
    tried: dict[tuple, dict] = {}
    runs, windows = cached(extractor), extractor.windows(texts)
    gold_keys = [{triple.key() for triple in triples} for triples in gold]  # exact match, as ``score``'s F1
    gold_total = sum(map(len, gold_keys))

    def f1_at(thresholds: Thresholds) -> float:
        key = thresholds.values
        if key not in tried:
            results = runs.with_thresholds(thresholds).extract_windows(windows)
            found = [{triple.key() for triple in result.triples} for result in results]
            correct = sum(len(expected & keys) for expected, keys in zip(gold_keys, found))
            tried[key] = {**thresholds.to_dict(), **ratios(correct, sum(map(len, found)), gold_total)}
        return tried[key]["f1"]

    def best_of(chosen: Thresholds, candidates: list[Thresholds]) -> Thresholds:
        return max(candidates, key=lambda thresholds: (f1_at(thresholds), thresholds.values == chosen.values))

    def pairs(chosen: Thresholds, names: tuple[str, str]) -> list[Thresholds]:
        return [replace(chosen, **dict(zip(names, pair))) for pair in product(STARTS, ENDS)]

    chosen = Thresholds()
    if sum(map(len, gold)) < apart_min_triples:  # few triples: a start, then an end, for both
        for name, grid in (("start", STARTS), ("end", ENDS)):
            chosen = best_of(chosen, [replace(chosen, **{name: value}) for value in grid])
    else:
        chosen = best_of(chosen, pairs(chosen, ("start", "end")))
        chosen = replace(chosen, subject_start=chosen.start, subject_end=chosen.end)  # from here on, apart
        for _ in range(ROUNDS):
            before = chosen
            for names in (("subject_start", "subject_end"), ("start", "end")):
                chosen = best_of(chosen, pairs(chosen, names))
            if chosen == before:
                break
    # the subjects' own only where they differ
    return Choice(Thresholds(**chosen.to_dict()), [row for _, row in sorted(tried.items())])


def thresholds_of(row: dict) -> dict[str, float]:
    """The thresholds of a row of ``tried`` (or of the model card's record), without its figures."""
    return {key: row[key] for key in ("start", "end", "subject_start", "subject_end") if key in row}
