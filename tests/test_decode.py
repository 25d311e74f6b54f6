"""Decoding pointer probabilities: span pairing, thresholds and reassembly of complex objects."""

import numpy as np

from triplex.model.decode import Spans, merge_slots, object_spans, subject_spans, to_triples
from triplex.model.schema import Entity, ExtractorConfig, Relation, Thresholds, Triple
from triplex.model.tokenize import Encoded


def spans_of(start: list[float], end: list[float], content: list[bool], thresholds: Thresholds) -> list[tuple]:
    """Subject spans of one window, through the batched decoder, with a second (empty) window beside it."""
    probs = np.zeros((2, len(start), 2), dtype=np.float32)
    probs[0, :, 0], probs[0, :, 1] = start, end
    mask = np.array([content, [True] * len(start)])
    subjects, scores = subject_spans(probs, mask, thresholds)
    return [(int(row), int(s), int(e), round(float(p), 4)) for (row, s, e), p in zip(subjects, scores)]


def test_each_start_takes_the_nearest_end_at_or_after_it() -> None:
    start = [0.0, 0.9, 0.0, 0.7, 0.0, 0.61, 0.0]
    end = [0.0, 0.0, 0.8, 0.6, 0.0, 0.0, 0.0]
    # 1 -> 2, 3 -> 3 (single token), 5 has no end after it in its window (nor may it take one from the next)
    assert spans_of(start, end, [True] * 7, Thresholds()) == [(0, 1, 2, 0.85), (0, 3, 3, 0.65)]


def test_thresholds_and_special_tokens_are_respected() -> None:
    start, end = [0.95, 0.59, 0.9, 0.0], [0.95, 0.9, 0.49, 0.9]
    content = [False, True, True, True]
    assert [s[1:3] for s in spans_of(start, end, content, Thresholds())] == [(2, 3)]
    assert [s[1:3] for s in spans_of(start, end, content, Thresholds(0.5, 0.4))] == [(1, 1), (2, 2)]


def test_objects_pair_within_their_subject_and_relation() -> None:
    subjects = np.array([[0, 1, 1], [1, 2, 3]])
    content = np.array([[False, True, True, True, True, False], [False, True, True, True, True, True]])
    # (subject, token, relation) candidates from graph 2, in its row-major order, and their start/end probs
    positions = np.array([[0, 2, 1], [0, 3, 0], [0, 4, 1], [0, 5, 1], [1, 1, 0], [1, 2, 2], [1, 4, 2]])
    probs = np.array([[0.9, 0.0], [0.8, 0.0], [0.0, 0.7], [0.0, 0.9], [0.7, 0.0], [0.65, 0.0], [0.0, 0.8]])
    spans = object_spans(positions, probs, subjects, np.array([1.0, 0.5]), content, 3, Thresholds())
    # relation 1 of subject 0: 2 -> 4 (token 5 is outside the text); relation 0 has a start and no end;
    # subject 1, relation 2: 2 -> 4 (its start at 1 is in relation 0)
    assert spans.rows.tolist() == [[0, 1, 1, 1, 2, 4], [1, 2, 3, 2, 2, 4]]
    assert np.allclose(spans.scores, [0.8, 0.5 * 0.725])
    assert [len(s) for s in spans.per_window(3)] == [1, 1, 0]
    assert len(Spans.empty()) == 0


def test_a_piece_of_a_word_stands_for_the_word() -> None:
    """A span that starts or ends inside a word (a tokenizer's piece: "##hul" of "Rahul") is widened to the
    word; two pieces of one word that name the same triple give it once, with the better score. CJK
    characters are words of their own, and punctuation ends a word."""
    text = "Rahul Jensen, born in Mumbai-2. 张伟出生于上海"
    # tokens: ra ##hul jensen , born in mumbai - 2 . 张 伟 出 生 于 上 海
    starts = [0, 2, 6, 12, 14, 19, 22, 28, 29, 30, 32, 33, 34, 35, 36, 37, 38]
    ends = [2, 5, 12, 13, 18, 21, 28, 29, 30, 31, 33, 34, 35, 36, 37, 38, 39]
    window = Encoded(text, np.zeros(len(starts), dtype=np.int64), np.array(starts), np.array(ends))
    rows = [
        [0, 1, 2, 0, 6, 6, 0.9],  # "hul Jensen" born in "Mumbai"
        [0, 0, 2, 0, 6, 6, 0.7],  # "Rahul Jensen" born in "Mumbai": the same triple
        [0, 2, 2, 1, 8, 8, 0.6],  # "Jensen" age "2": "-" ends "Mumbai", so "2" stands alone
        [0, 11, 11, 0, 16, 16, 0.8],  # "伟" born in "海": each character a word
    ]
    spans = Spans(np.array([row[:6] for row in rows], dtype=np.int64), np.array([row[6] for row in rows]))
    config = ExtractorConfig([Relation("born_in"), Relation("age")])
    found = [(t.subject.text, t.predicate, t.object.text, t.score) for t in to_triples([window], spans, config)[0]]
    assert found == [
        ("Rahul Jensen", "born_in", "Mumbai", 0.9),
        ("Jensen", "age", "2", 0.6),
        ("伟", "born_in", "海", 0.8),
    ]


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


def test_slots_attach_when_the_schema_gives_them_no_subject_type() -> None:
    """A schema derived from the data gives a slot relation subject type "", the main relation the real one."""
    relations = {r.label: r for r in [Relation("配音", "娱乐人物", "人物"), Relation("配音", "", "影视作品", "inWork")]}
    main = Triple(Entity("周星驰", 0, 3, "娱乐人物"), "配音", Entity("至尊宝", 12, 15, "人物"), 0.9)
    slot = Triple(Entity("周星驰", 0, 3, ""), "配音|inWork", Entity("大话西游", 5, 9, "影视作品"), 0.9)
    merged = merge_slots([main, slot], relations)
    assert merged[0].qualifiers == (("inWork", slot.object),)


def test_partial_key_uses_last_word() -> None:
    a = Triple(Entity("Alan Bean", 0, 9), "r", Entity("Apollo 12", 20, 29))
    b = Triple(Entity("Bean", 5, 9), "r", Entity("12", 27, 29))
    assert a.key() != b.key() and a.key(partial=True) == b.key(partial=True)
