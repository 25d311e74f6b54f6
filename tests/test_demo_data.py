"""The demo's generated texts: filler words in training forms only, never inside a name; composed forms
that are never a held-out form."""

from __future__ import annotations

import random
import re

import pytest

from triplex.training import demo_data
from triplex.training.demo_data import (
    FILLERS,
    HELD_OUT_FORMS,
    HELD_OUT_SEVERAL_FORMS,
    TRAIN_FORMS,
    composed_form,
    demo_sentences,
)


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


def test_composed_forms_vary_and_are_never_a_held_out_form() -> None:
    rng = random.Random(0)
    drawn = [composed_form(rng) for _ in range(5000)]
    forms = {form for form, _ in drawn}
    assert len(forms) > 10 * len(TRAIN_FORMS)
    assert not forms & {form for form, _ in HELD_OUT_FORMS + HELD_OUT_SEVERAL_FORMS}
    for form, triples in drawn:  # every slot of a triple is in its form
        assert all(f"{{{slot}}}" in form for triple in triples for slot in (triple[0], triple[2]))
