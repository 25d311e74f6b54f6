"""P/R/F1 scoring (exact and partial match, per predicate, error lists)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from triplex.model.schema import Thresholds, Triple

# The start thresholds tried on dev, then the end ones. 0.7 was the top start tried once, and WebNLG,
# WebNLG*, NYT* and CoNLL04 all chose it: precision is the weak side there, so the grid goes higher.
STARTS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
ENDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


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


def choose_thresholds(extractor, texts: list[str], gold: list[list[Triple]]) -> tuple[Thresholds, list[dict]]:
    """The start/end thresholds with the best F1 on ``texts``: the start threshold first (end at its
    default), then the end threshold at the best start; on a tie the default pair. Sets them on the
    extractor's config; returns them and every pair tried with its figures."""
    config, tried = extractor.config, {}

    def f1_at(start: float, end: float) -> float:
        if (start, end) not in tried:
            config.thresholds = Thresholds(start, end)
            found = [result.triples for result in extractor.extract(texts)]
            figures = score(gold, found)
            tried[start, end] = {key: figures[key] for key in ("precision", "recall", "f1")}
        return tried[start, end]["f1"]

    default = Thresholds()
    preference = lambda pair: (f1_at(*pair), pair == (default.start, default.end))  # noqa: E731
    start = max(((value, default.end) for value in STARTS), key=preference)[0]
    start, end = max(((start, value) for value in ENDS), key=preference)
    config.thresholds = Thresholds(start, end)
    return config.thresholds, [{"start": s, "end": e, **figures} for (s, e), figures in sorted(tried.items())]


def record_thresholds(extractor, texts: list[str], gold: list[list[Triple]], source: str) -> tuple[Thresholds, dict]:
    """``choose_thresholds``, written into the extractor's config (its model card says ``chosen on
    SOURCE``); the chosen pair and its figures."""
    chosen, tried = choose_thresholds(extractor, texts, gold)
    config = extractor.config
    config.training["thresholds"] = {"chosen": f"on {source}", "start": chosen.start, "end": chosen.end, "tried": tried}
    return chosen, next(row for row in tried if (row["start"], row["end"]) == (chosen.start, chosen.end))
