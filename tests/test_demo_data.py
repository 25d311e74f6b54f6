"""The demo's generated texts: filler words in training forms only, never inside a name."""

from __future__ import annotations

import re

import pytest

from triplex.training import demo_data
from triplex.training.demo_data import FILLERS, HELD_OUT_FORMS, HELD_OUT_SEVERAL_FORMS, demo_sentences


def test_fillers_come_between_words_and_leave_every_entity_where_it_is() -> None:
    examples = demo_sentences(600, seed=1, several=0.6)
    filled = [e for e in examples if any(re.search(rf"\b{re.escape(filler)}\b", e.text) for filler in FILLERS)]
    assert 0.3 * len(examples) < len(filled) < 0.9 * len(examples)
    for example in examples:
        for triple in example.triples:
            for entity in (triple.subject, triple.object):
                assert example.text[entity.start : entity.end] == entity.text
                assert not any(f" {filler} " in f" {entity.text} " for filler in FILLERS)


def test_held_out_texts_carry_no_filler(monkeypatch: pytest.MonkeyPatch) -> None:
    held_out = [(e.text, e.triples) for e in demo_sentences(200, seed=4, held_out=True, several=1.0)]
    monkeypatch.setattr(demo_data, "FILLER_SHARE", 0.0)
    assert [(e.text, e.triples) for e in demo_sentences(200, seed=4, held_out=True, several=1.0)] == held_out
    forms = " ".join(form for form, _ in HELD_OUT_FORMS + HELD_OUT_SEVERAL_FORMS)
    assert not [filler for filler in FILLERS if re.search(rf"\b{re.escape(filler)}\b", forms, re.IGNORECASE)]
