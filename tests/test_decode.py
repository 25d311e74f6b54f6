"""Decoding pointer probabilities: span pairing, thresholds and reassembly of complex objects."""

import numpy as np

from model.decode import find_spans, merge_slots
from model.schema import Entity, Relation, Thresholds, Triple


def test_each_start_takes_the_nearest_end_at_or_after_it() -> None:
    start = np.array([0.0, 0.9, 0.0, 0.7, 0.0, 0.61, 0.0])
    end = np.array([0.0, 0.0, 0.8, 0.6, 0.0, 0.0, 0.0])
    content = np.ones(7, dtype=bool)
    spans = find_spans(start, end, content, Thresholds())
    # 1 -> 2, 3 -> 3 (single token), 5 has no end after it
    assert [(s, e) for s, e, _ in spans] == [(1, 2), (3, 3)]
    assert abs(spans[0][2] - 0.85) < 1e-9


def test_thresholds_and_special_tokens_are_respected() -> None:
    start = np.array([0.95, 0.59, 0.9, 0.0])
    end = np.array([0.95, 0.9, 0.49, 0.9])
    content = np.array([False, True, True, True])
    assert [(s, e) for s, e, _ in find_spans(start, end, content, Thresholds())] == [(2, 3)]
    assert [(s, e) for s, e, _ in find_spans(start, end, content, Thresholds(0.5, 0.4))] == [(1, 1), (2, 2)]


def test_complex_object_slots_are_reassembled() -> None:
    relations = {
        r.label: r
        for r in [Relation("配音", "娱乐人物", "人物"), Relation("配音", "", "影视作品", "inWork"), Relation("作者")]
    }
    actor, role_a, role_b = Entity("周星驰", 0, 3), Entity("至尊宝", 12, 15), Entity("唐僧", 30, 32)
    work_a, work_b = Entity("大话西游", 5, 9), Entity("西游降魔", 25, 29)
    triples = [
        Triple(actor, "配音", role_a, 0.9),
        Triple(actor, "配音", role_b, 0.8),
        Triple(actor, "配音|inWork", work_a, 0.9),
        Triple(actor, "配音|inWork", work_b, 0.9),
        Triple(Entity("x", 40, 41), "配音|inWork", work_b, 0.9),  # no main triple: dropped
        Triple(actor, "作者", work_a, 0.7),
    ]
    merged = merge_slots(triples, relations)
    assert [(t.predicate, t.object.text, t.qualifiers) for t in merged] == [
        ("配音", "至尊宝", (("inWork", work_a),)),  # nearest work to each role
        ("配音", "唐僧", (("inWork", work_b),)),
        ("作者", "大话西游", ()),
    ]


def test_partial_key_uses_last_word() -> None:
    a = Triple(Entity("Alan Bean", 0, 9), "r", Entity("Apollo 12", 20, 29))
    b = Triple(Entity("Bean", 5, 9), "r", Entity("12", 27, 29))
    assert a.key() != b.key() and a.key(partial=True) == b.key(partial=True)
