"""From pointer probabilities to triples (numpy only: training, evaluation and the service share it).

Two steps, both vectorised over the whole batch:

1. ``find_spans``: graph 1's subject probabilities -> subjects; graph 2 (run on every subject of the
   batch, in chunks) thresholds its own object probabilities and returns only the candidate positions;
   those pair into objects. The result is ``Spans``: one row per triple, in token positions.
2. ``to_triples``: the rows -> ``Triple`` objects with character offsets into each window's text.

The graphs run in whatever ``Runtime`` is given: ONNX Runtime, or PyTorch during training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .runtime import Runtime
from .schema import VALUE_SLOT, Entity, ExtractorConfig, Relation, Thresholds, Triple
from .tokenize import Encoded, Padded, whole_words

SUBJECT_TOKENS_PER_CALL = 32768  # subjects x tokens per graph-2 call: bounds its memory on texts with many subjects


def pair(starts: np.ndarray, ends: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Pair every start with the nearest end at or after it in the same group.

    ``starts``/``ends`` are sorted flat positions ``group * length + token``; returns indices into each."""
    nearest = np.searchsorted(ends, starts)
    found = np.flatnonzero(nearest < ends.size)
    nearest = nearest[found]
    same_group = ends[nearest] // length == starts[found] // length
    return found[same_group], nearest[same_group]


@dataclass
class Spans:
    """Triples of a batch in token positions, one row each, sorted by window.

    ``rows`` columns: window, subject start, subject end, relation, object start, object end."""

    rows: np.ndarray  # (T, 6) int64
    scores: np.ndarray  # (T,) float64: subject score x object score

    WINDOW, SUBJECT_START, SUBJECT_END, RELATION, OBJECT_START, OBJECT_END = range(6)

    @classmethod
    def empty(cls) -> Spans:
        return cls(np.zeros((0, 6), dtype=np.int64), np.zeros(0))

    def windows_between(self, begin: int, end: int) -> Spans:
        """The rows of windows ``begin`` to ``end - 1``, their window column counted from ``begin``."""
        first, last = np.searchsorted(self.rows[:, self.WINDOW], [begin, end]).tolist()
        rows = self.rows[first:last].copy()
        rows[:, self.WINDOW] -= begin
        return Spans(rows, self.scores[first:last])

    @classmethod
    def concat(cls, parts: list[Spans]) -> Spans:
        """Parts whose window columns already count in one numbering, one after the other."""
        if len(parts) == 1:
            return parts[0]
        return cls(np.concatenate([p.rows for p in parts]), np.concatenate([p.scores for p in parts]))

    def per_window(self, windows: int) -> list[Spans]:
        bounds = np.searchsorted(self.rows[:, self.WINDOW], np.arange(windows + 1)).tolist()
        return [Spans(self.rows[a:b], self.scores[a:b]) for a, b in zip(bounds, bounds[1:])]

    def __len__(self) -> int:
        return len(self.scores)


def subject_spans(
    subject_probs: np.ndarray, content: np.ndarray, thresholds: Thresholds
) -> tuple[np.ndarray, np.ndarray]:
    """Subjects (N, 3) as batch index/start/end, ordered by window and start, and their scores (N,)."""
    length = content.shape[1]
    start_probs, end_probs = subject_probs[..., 0].ravel(), subject_probs[..., 1].ravel()
    start_threshold, end_threshold = thresholds.subjects
    inside = content.ravel()
    starts = np.flatnonzero((start_probs > start_threshold) & inside)
    ends = np.flatnonzero((end_probs > end_threshold) & inside)
    first, last = pair(starts, ends, length)
    starts, ends = starts[first], ends[last]
    window, start = np.divmod(starts, length)
    subjects = np.stack([window, start, ends % length], axis=1)
    return subjects, (start_probs[starts] + end_probs[ends]) / 2


def object_spans(
    positions: np.ndarray,
    probs: np.ndarray,
    subjects: np.ndarray,
    subject_scores: np.ndarray,
    content: np.ndarray,
    relations: int,
    thresholds: Thresholds,
) -> Spans:
    """Pair the candidate object positions from graph 2 into objects, per subject and relation."""
    length = content.shape[1]
    subject, token, relation = positions[:, 0], positions[:, 1], positions[:, 2]
    keys = (subject * relations + relation) * length + token
    order = np.argsort(keys, kind="stable")
    keys, probs = keys[order], probs[order]
    inside = content[subjects[subject[order], 0], token[order]]
    start_rows = np.flatnonzero(inside & (probs[:, 0] > thresholds.start))
    end_rows = np.flatnonzero(inside & (probs[:, 1] > thresholds.end))
    first, last = pair(keys[start_rows], keys[end_rows], length)
    start_rows, end_rows = start_rows[first], end_rows[last]
    group = keys[start_rows] // length
    subject, relation = group // relations, group % relations
    rows = np.stack(
        [
            subjects[subject, 0],
            subjects[subject, 1],
            subjects[subject, 2],
            relation,
            keys[start_rows] % length,
            keys[end_rows] % length,
        ],
        axis=1,
    )
    object_scores = (probs[start_rows, 0] + probs[end_rows, 1]) / 2
    return Spans(rows, subject_scores[subject].astype(np.float64) * object_scores.astype(np.float64))


def find_spans(batch: Padded, runtime: Runtime, thresholds: Thresholds, relations: int) -> Spans:
    """Graph 1 on the batch, graph 2 on every subject found (in chunks), decoded to token spans."""
    hidden, subject_probs = runtime.encode(batch.input_ids, batch.attention_mask)
    subjects, subject_scores = subject_spans(subject_probs, batch.content, thresholds)
    if not len(subjects):
        return Spans.empty()
    object_thresholds = np.array([thresholds.start, thresholds.end], dtype=np.float32)
    chunk = max(1, SUBJECT_TOKENS_PER_CALL // batch.input_ids.shape[1])
    found = []
    for begin in range(0, len(subjects), chunk):
        positions, probs = runtime.objects(hidden, subjects[begin : begin + chunk], object_thresholds)
        found.append((positions + [begin, 0, 0] if begin else positions, probs))  # subjects counted from 0
    # most batches take one call: its arrays as they are, without copies
    positions, probs = found[0] if len(found) == 1 else map(np.concatenate, zip(*found))
    return object_spans(positions, probs, subjects, subject_scores, batch.content, relations, thresholds)


def to_triples(windows: list[Encoded], spans: Spans, config: ExtractorConfig) -> list[list[Triple]]:
    """Each window's triples with character offsets into its text; ``spans``' window column indexes
    ``windows``. The offsets of all windows are looked up at once: with a few triples per window,
    numpy's cost per call would otherwise dominate."""
    found: list[list[Triple]] = [[] for _ in windows]
    if not len(spans):
        return found
    rows = spans.rows
    window, relation = rows[:, Spans.WINDOW], rows[:, Spans.RELATION]
    first_token = np.cumsum([0] + [len(w.ids) for w in windows[:-1]])[window]  # of each row's window
    starts = np.concatenate([w.starts for w in windows])
    ends = np.concatenate([w.ends for w in windows])
    subject_start = starts[rows[:, Spans.SUBJECT_START] + first_token]
    subject_end = ends[rows[:, Spans.SUBJECT_END] + first_token]
    object_start = starts[rows[:, Spans.OBJECT_START] + first_token]
    object_end = ends[rows[:, Spans.OBJECT_END] + first_token]
    texts, scores = [w.text for w in windows], spans.scores
    columns = np.stack([window, subject_start, subject_end, relation, object_start, object_end], axis=1)
    widened = widen_to_words(columns, texts)
    # listed as ``model.extractor.identity`` orders them: by subject, predicate, object (lexsort's last key first)
    if widened is None:
        order = np.lexsort((object_end, object_start, config.label_ranks[relation], subject_end, subject_start, window))
    else:  # the same triple twice (two pieces of one word) once, with its better score
        columns = widened
        window, subject_start, subject_end, relation, object_start, object_end = columns.T
        ranks = config.label_ranks[relation]
        order = np.lexsort((-scores, object_end, object_start, ranks, subject_end, subject_start, window))
        repeated = np.all(columns[order][1:] == columns[order][:-1], axis=1)
        order = order[np.concatenate([[True], ~repeated])]
    relations, labels = config.relations, config.labels
    for (w, s_start, s_end, r, o_start, o_end), score in zip(columns[order].tolist(), scores[order].tolist()):
        relation_r, text = relations[r], texts[w]
        subject = Entity(text[s_start:s_end], s_start, s_end, relation_r.subject_type)
        obj = Entity(text[o_start:o_end], o_start, o_end, relation_r.object_type)
        found[w].append(Triple(subject, labels[r], obj, score))
    if config.has_slots:
        found = [merge_slots(triples, config.relations_by_label) for triples in found]
    return found


def widen_to_words(columns: np.ndarray, texts: list[str]) -> np.ndarray | None:
    """The rows (window, subject start/end, relation, object start/end in characters) with their entities
    widened to the whole words they cut, or None when none cuts a word: a tokenizer's piece of a word
    (``##hul`` of "Rahul") stands for the word, as entities in training data always are whole words."""
    rows, widened = columns.tolist(), False
    for row in rows:
        text = texts[row[0]]
        subject, obj = whole_words(text, row[1], row[2]), whole_words(text, row[4], row[5])
        if subject != (row[1], row[2]) or obj != (row[4], row[5]):
            row[1], row[2], row[4], row[5], widened = *subject, *obj, True
    return np.array(rows, dtype=columns.dtype) if widened else None


def merge_slots(triples: list[Triple], relations: dict[str, Relation]) -> list[Triple]:
    """Turn per-slot triples back into one triple per complex object (DuIE 2.0).

    ``triples`` carry relation labels as predicates. Each extra slot (``inWork``...) attaches to the
    main (``@value``) triples of the same subject span and predicate, taking the candidate nearest to
    the main object when there are several; slots without a main triple are dropped. Subjects are
    compared by span, not by type: a schema derived from data may give a slot no subject type.
    """
    main, extra = [], {}
    for triple in triples:
        relation = relations[triple.predicate]
        if relation.slot == VALUE_SLOT:
            main.append((triple, relation))
        else:
            key = (triple.subject.start, triple.subject.end, relation.predicate)
            extra.setdefault(key, {}).setdefault(relation.slot, []).append(triple.object)
    merged = []
    for triple, relation in main:
        slots = extra.get((triple.subject.start, triple.subject.end, relation.predicate), {})
        qualifiers = tuple(
            (slot, min(candidates, key=lambda entity: abs(entity.start - triple.object.start)))
            for slot, candidates in sorted(slots.items())
        )
        merged.append(Triple(triple.subject, relation.predicate, triple.object, triple.score, qualifiers))
    return merged
