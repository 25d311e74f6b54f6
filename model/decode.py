"""From pointer probabilities to triples (numpy only: training, evaluation and the service share it).

The pipeline is independent of the runtime: ``run_encoder`` and ``run_objects`` may be PyTorch or ONNX.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from model.schema import VALUE_SLOT, Entity, ExtractorConfig, Relation, Thresholds, Triple
from model.tokenize import Encoded, pad

# (input_ids, attention_mask) -> (hidden states in whatever form run_objects takes, subject probs (B, L, 2))
RunEncoder = Callable[[np.ndarray, np.ndarray], tuple[Any, np.ndarray]]
# (hidden states, subjects (N, 3) as batch index/start/end) -> object probs (N, L, R, 2)
RunObjects = Callable[[Any, np.ndarray], np.ndarray]


def find_spans(
    start_probs: np.ndarray, end_probs: np.ndarray, content: np.ndarray, thresholds: Thresholds
) -> list[tuple[int, int, float]]:
    """Pair every start above threshold with the nearest end at or after it: (start, end, score)."""
    starts = np.flatnonzero((start_probs > thresholds.start) & content)
    ends = np.flatnonzero((end_probs > thresholds.end) & content)
    nearest = np.searchsorted(ends, starts)
    paired = nearest < ends.size
    starts, ends = starts[paired], ends[nearest[paired]]
    scores = (start_probs[starts] + end_probs[ends]) / 2
    return [(int(s), int(e), float(p)) for s, e, p in zip(starts, ends, scores)]


def entity(item: Encoded, start_token: int, end_token: int, entity_type: str) -> Entity:
    start, end = int(item.starts[start_token]), int(item.ends[end_token])
    return Entity(item.text[start:end], start, end, entity_type)


def merge_slots(triples: list[Triple], relations: dict[str, Relation]) -> list[Triple]:
    """Turn per-slot triples back into one triple per complex object (DuIE 2.0).

    ``triples`` carry relation labels as predicates. Each extra slot (``inWork``...) attaches to the
    main (``@value``) triples of the same subject and predicate, taking the candidate nearest to the
    main object when there are several; slots without a main triple are dropped.
    """
    main, extra = [], {}
    for triple in triples:
        relation = relations[triple.predicate]
        if relation.slot == VALUE_SLOT:
            main.append((triple, relation))
        else:
            extra.setdefault((triple.subject, relation.predicate, relation.slot), []).append(triple.object)
    by_slot = sorted(extra.items(), key=lambda item: item[0][2])
    merged = []
    for triple, relation in main:
        qualifiers = tuple(
            (slot, min(candidates, key=lambda entity: abs(entity.start - triple.object.start)))
            for (subject, predicate, slot), candidates in by_slot
            if subject == triple.subject and predicate == relation.predicate
        )
        merged.append(Triple(triple.subject, relation.predicate, triple.object, triple.score, qualifiers))
    return merged


def extract(
    encoded: list[Encoded], run_encoder: RunEncoder, run_objects: RunObjects, config: ExtractorConfig
) -> list[list[Triple]]:
    """Triples for each encoded text: one encoder call for the batch, one object call for all subjects."""
    input_ids, attention_mask = pad([item.ids for item in encoded])
    content = np.zeros(input_ids.shape, dtype=bool)
    for row, item in enumerate(encoded):
        content[row, : len(item.ids)] = item.content
    hidden, subject_probs = run_encoder(input_ids, attention_mask)

    subjects = [
        (row, start, end, score)
        for row in range(len(encoded))
        for start, end, score in find_spans(
            subject_probs[row, :, 0], subject_probs[row, :, 1], content[row], config.thresholds
        )
    ]
    found: list[list[Triple]] = [[] for _ in encoded]
    if subjects:
        subject_index = np.array([subject[:3] for subject in subjects], dtype=np.int64)
        object_probs = run_objects(hidden, subject_index)
        has_start = (object_probs[..., 0] > config.thresholds.start).any(axis=1)  # (N, R)
        for n, r in zip(*np.nonzero(has_start)):
            row, subject_start, subject_end, subject_score = subjects[n]
            relation = config.relations[r]
            item = encoded[row]
            subject = entity(item, subject_start, subject_end, relation.subject_type)
            for start, end, score in find_spans(
                object_probs[n, :, r, 0], object_probs[n, :, r, 1], content[row], config.thresholds
            ):
                obj = entity(item, start, end, relation.object_type)
                found[row].append(Triple(subject, relation.label, obj, subject_score * score))
    return [merge_slots(triples, config.relations_by_label) for triples in found]
