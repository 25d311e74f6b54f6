"""Training reads a long sentence as inference does: overlapping windows, each with the triples inside it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from tokenizers import Tokenizer

from triplex.model.schema import Entity, Triple
from triplex.model.tokenize import encode_windows
from triplex.training.data import Example, ReadSummary
from triplex.training.network import OBJECT_POWER, SUBJECT_POWER, PointerExtractor, load_encoder
from triplex.training.settings import TrainSettings, auto_epochs
from triplex.training.targets import (
    Feature,
    collate,
    make_features,
    mask_tokens,
    pointer_bce,
    pointer_loss,
    slices,
)
from triplex.training.train import step_slices

from .sample import RELATIONS, generate


def long_example() -> Example:
    """Thirty generated sentences as one text, their triples moved to its offsets, and one triple whose
    subject and object lie far apart (longer than a window)."""
    text, triples = "", []
    for example in generate(30, seed=21):
        shift = len(text)
        for t in example.triples:
            moved = [Entity(e.text, e.start + shift, e.end + shift, e.type) for e in (t.subject, t.object)]
            triples.append(Triple(moved[0], t.predicate, moved[1]))
        text += example.text + " "
    far = Triple(triples[0].subject, "works_for", triples[-1].object)
    return Example(text, [*triples, far])


def test_long_sentence_trains_on_windows_with_exactly_their_triples(tiny_encoder: Path) -> None:
    tokenizer = Tokenizer.from_file(str(tiny_encoder / "tokenizer.json"))
    example = long_example()
    windows = encode_windows(tokenizer, [example.text], 48, 12)[0]
    labels = [relation.label for relation in RELATIONS]
    summary = ReadSummary()
    features = make_features([example], [windows], labels, summary)
    assert len(windows) > 5 and len(features) == len(windows) and summary.counts["windows"] == len(windows)
    placed = set()
    for window, feature in zip(windows, features):
        content = window.starts >= 0
        low, high = window.starts[content].min(), window.ends[content].max()
        # the window's targets, read back as character offsets of the whole text
        starts, ends = window.starts.tolist(), window.ends.tolist()
        found = {
            (labels[relation], (starts[s], ends[e]), (starts[os], ends[oe]))
            for (s, e), objects in feature.objects.items()
            for relation, os, oe in objects
        }
        inside = {
            (t.predicate, (t.subject.start, t.subject.end), (t.object.start, t.object.end))
            for t in example.triples
            if low <= min(t.subject.start, t.object.start) and max(t.subject.end, t.object.end) <= high
        }
        assert found == inside
        for _, subject, obj in found:
            assert example.text[slice(*subject)] in {t.subject.text for t in example.triples}
            assert example.text[slice(*obj)] in {t.object.text for t in example.triples}
        placed |= found
    assert len(placed) == len(example.triples) - 1  # every triple but the far one is trained somewhere
    assert summary.counts["fits_no_window"] == 1 and summary.counts["not_token_aligned"] == 0


def test_auto_epochs_fit_the_budget_between_the_bounds() -> None:
    # token counts of the real training files with their encoders (see training/settings.py)
    assert auto_epochs(153_948, 6, 384) == 20  # WebNLG*, MiniLM-L6
    assert auto_epochs(142_842, 12, 384) == 10  # DuIE 1.0 sample, e5-small
    assert auto_epochs(1_000_000, 12, 768) == 3  # large data through BERT-base: the floor
    assert auto_epochs(500, 2, 32) == 20  # tiny data: the cap


def test_negative_subjects_add_empty_object_rows_for_objects_that_are_no_subject() -> None:
    # subject (1, 2) has objects (4, 5) and (6, 6); subject (4, 5) has object (1, 2): (6, 6) is only an object
    feature = Feature(np.arange(8), {(1, 2): [(0, 4, 5), (1, 6, 6)], (4, 5): [(2, 1, 2)]})
    plain, negative = collate([feature], 3), collate([feature], 3, negative_subjects=True)
    assert plain.subjects.tolist() == [[0, 1, 2], [0, 4, 5]]
    assert negative.subjects.tolist() == [[0, 1, 2], [0, 4, 5], [0, 6, 6]]
    assert negative.object_targets[:2].equal(plain.object_targets) and negative.object_targets[2].sum() == 0
    assert negative.subject_targets.equal(plain.subject_targets)  # the subject head's targets are unchanged
    assert negative.object_weight.tolist() == [1.0, 1.0, 1.0]


def test_the_loss_is_the_weighted_subject_loss_plus_the_object_loss() -> None:
    feature = Feature(np.arange(6), {(1, 2): [(0, 4, 4)], (4, 4): [(1, 1, 2)]})
    batch = collate([feature], 2)
    generator = torch.Generator().manual_seed(0)
    subject_logits, object_logits = (
        torch.randn(1, 6, 2, generator=generator),
        torch.randn(2, 6, 2, 2, generator=generator),
    )
    subjects = pointer_bce(subject_logits, batch.subject_targets, SUBJECT_POWER).mean()  # every token is text
    objects = pointer_bce(object_logits, batch.object_targets, OBJECT_POWER).mean(-1).sum(-1).mean()
    for weight in (1.0, 2.0, 3.0):
        loss = pointer_loss(subject_logits, object_logits, batch, weight)
        assert torch.isclose(loss, weight * subjects + objects)
    assert not torch.isclose(subjects, torch.zeros(()))  # the weight shows


def test_masking_hides_only_tokens_between_the_special_ones_at_about_the_rate() -> None:
    lengths = [40, 25, 3]
    features = [Feature(np.arange(100, 100 + length)) for length in lengths]
    batch = collate(features, len(RELATIONS))
    masked = mask_tokens(batch, 0.3, 7, torch.Generator().manual_seed(0))
    hidden = masked == 7
    for row, length in enumerate(lengths):
        assert not hidden[row, 0] and not hidden[row, length - 1 :].any()  # [CLS], [SEP] and padding stay
        kept = ~hidden[row, :length]
        assert torch.equal(masked[row, :length][kept], batch.input_ids[row, :length][kept])
    inside = sum(length - 2 for length in lengths)
    assert 0.15 < hidden.sum().item() / inside < 0.45
    again = mask_tokens(batch, 0.3, 7, torch.Generator().manual_seed(0))
    assert torch.equal(again, masked)  # drawn from the epoch's generator: the same after --resume
    assert torch.equal(mask_tokens(batch, 0.0, 7, torch.Generator()), batch.input_ids)


def test_a_long_batch_in_slices_gives_the_whole_batchs_loss_and_gradients(tiny_encoder: Path) -> None:
    torch.manual_seed(0)
    model = PointerExtractor(load_encoder(tiny_encoder), len(RELATIONS)).eval()  # eval: no dropout to differ
    tokenizer = Tokenizer.from_file(str(tiny_encoder / "tokenizer.json"))
    examples = generate(12, seed=5)
    windows = encode_windows(tokenizer, [e.text for e in examples], 64, 16)
    features = make_features(examples, windows, [r.label for r in RELATIONS], ReadSummary())

    def step(max_tokens: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad()
        settings = TrainSettings(max_batch_tokens=max_tokens, precision="fp32")
        run = SimpleNamespace(settings=settings, config=SimpleNamespace(relations=RELATIONS), mask_id=None, model=model)
        scaler = torch.amp.GradScaler("cuda", enabled=False)
        loss = step_slices(run, model, features, torch.device("cpu"), None, scaler, torch.Generator())
        return loss, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    assert len(slices(features, 10**6)) == 1 and len(slices(features, 60)) >= 4
    (whole_loss, whole), (sliced_loss, sliced) = step(10**6), step(60)
    assert torch.allclose(whole_loss, sliced_loss, atol=1e-6) and whole.keys() == sliced.keys()
    for name, gradient in whole.items():
        assert torch.allclose(gradient, sliced[name], rtol=1e-4, atol=1e-7), name
