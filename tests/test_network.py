import shutil
from pathlib import Path

import torch
from transformers import BertConfig

from triplex.model.extractor import open_export
from triplex.model.schema import ExtractorConfig, Thresholds
from triplex.model.tokenize import TOKENIZER_FILE, load_tokenizer, sentence_ends
from triplex.training.export import check_triples, export
from triplex.training.network import ConditionalLayerNorm, PointerExtractor, load_encoder, save_extractor

from .sample import RELATIONS


def tiny_model(num_relations: int = 3) -> PointerExtractor:
    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    return PointerExtractor(load_encoder("", config), num_relations).eval()


def test_conditional_layer_norm_starts_as_plain_layer_norm() -> None:
    norm = ConditionalLayerNorm(8, 16, 1e-12)
    hidden, condition = torch.randn(3, 5, 8), torch.randn(3, 16)
    expected = torch.nn.functional.layer_norm(hidden, (8,), eps=1e-12)
    assert torch.allclose(norm(hidden, condition), expected, atol=1e-5)
    torch.nn.init.normal_(norm.weight_shift.weight)
    assert not torch.allclose(norm(hidden, condition), expected, atol=1e-3)


def test_padding_does_not_change_outputs() -> None:
    model = tiny_model()
    ids = torch.randint(5, 50, (1, 7))
    padded = torch.cat([ids, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1] * 7 + [0] * 5])
    with torch.no_grad():
        hidden, logits = model.encode(ids, torch.ones(1, 7, dtype=torch.long))
        hidden_padded, logits_padded = model.encode(padded, mask)
    assert torch.allclose(logits, logits_padded[:, :7], atol=1e-5)
    subjects = torch.tensor([[0, 1, 2]])
    with torch.no_grad():
        objects, objects_padded = model.object_logits(hidden, subjects), model.object_logits(hidden_padded, subjects)
    assert objects.shape == (1, 7, 3, 2)
    assert torch.allclose(objects, objects_padded[:, :7], atol=1e-5)


def test_each_subject_conditions_its_own_row() -> None:
    model = tiny_model()
    torch.nn.init.normal_(model.conditional_norm.weight_shift.weight)
    hidden = torch.randn(2, 6, 32)
    both = model.object_logits(hidden, torch.tensor([[0, 1, 2], [1, 3, 4]]))
    alone = model.object_logits(hidden, torch.tensor([[1, 3, 4]]))
    assert torch.allclose(both[1], alone[0], atol=1e-6)
    assert not torch.allclose(both[0], both[1])


def test_object_rows_see_where_their_subject_stands() -> None:
    """Two mentions with the same hidden vectors: Conditional LayerNorm alone gives them the same object
    row (it knows what the subject is, not where); the subject distances, once trained, tell them apart."""
    hidden = torch.randn(1, 9, 32)
    hidden[0, 6] = hidden[0, 2]  # the same "name" at tokens 2 and 6
    subjects = torch.tensor([[0, 2, 2], [0, 6, 6]])
    model = PointerExtractor(tiny_model().encoder, 3, subject_distance=4).eval()
    torch.nn.init.normal_(model.conditional_norm.weight_shift.weight)
    rows = model.object_logits(hidden, subjects)
    assert torch.allclose(rows[0], rows[1], atol=1e-6)  # the distances start at zero: no change at first
    torch.nn.init.normal_(model.distance.weight)
    rows = model.object_logits(hidden, subjects)
    assert not torch.allclose(rows[0], rows[1], atol=1e-3)


def test_object_rows_see_which_sentence_each_token_is_in() -> None:
    """Token 9 (id 7) ends the subject's sentence: graph 1 numbers the sentences in one more column of the
    hidden states, and the trained sentence distances change the object rows of the other sentences only."""
    ids = torch.tensor([[2, 5, 6, 8, 9, 10, 11, 12, 13, 7, 14, 15, 16, 7, 17, 3]])
    model = PointerExtractor(tiny_model().encoder, 3, sentence_distance=2, sentence_end_ids=[7, 40]).eval()
    torch.nn.init.normal_(model.conditional_norm.weight_shift.weight)
    with torch.no_grad():
        hidden, _ = model.encode(ids, torch.ones_like(ids))
        assert hidden.shape == (1, 16, 33)
        assert hidden[0, :, -1].tolist() == [0] * 10 + [1] * 4 + [2] * 2
        subjects = torch.tensor([[0, 1, 2]])
        before = model.object_logits(hidden, subjects)
        torch.nn.init.normal_(model.sentences.weight)
        model.sentences.weight[2] = 0  # the subject's own sentence
        after = model.object_logits(hidden, subjects)
    assert torch.allclose(before[0, :10], after[0, :10], atol=1e-6)
    assert not torch.allclose(before[0, 10:], after[0, 10:], atol=1e-3)


def test_sentence_numbers_travel_through_the_exported_graphs(tiny_encoder: Path, tmp_path: Path) -> None:
    """A model with trained-looking sentence distances exports within the fp32 tolerance (``export`` checks
    it at several shapes) and gives PyTorch's triples on texts of several sentences."""
    model = PointerExtractor(
        load_encoder(str(tiny_encoder)), len(RELATIONS), 4, 0, 2, sentence_ends(load_tokenizer(tiny_encoder))
    ).eval()
    for weights in (model.sentences.weight, model.distance.weight, model.conditional_norm.weight_shift.weight):
        torch.nn.init.normal_(weights, std=0.5)
    checkpoint = tmp_path / "checkpoint"
    low = Thresholds(0.02, 0.02)  # random weights: low thresholds, so that there are triples to compare
    save_extractor(
        model,
        ExtractorConfig(RELATIONS, 64, low, window_stride=16, subject_distance=4, sentence_distance=2),
        checkpoint,
    )
    shutil.copy(tiny_encoder / TOKENIZER_FILE, checkpoint / TOKENIZER_FILE)
    export(checkpoint, tmp_path / "export", "fp32", log=lambda m: None)
    texts = ["Alice Moreau was born in Lyon. She works for Kestrel Foods! Zhang Wei? Osaka.", "Tom Grant. Bergen."]
    assert open_export(tmp_path / "export", "cpu").config.sentence_distance == 2
    check = check_triples(checkpoint, tmp_path / "export", texts, "cpu")
    assert check["pytorch_triples"] > 5 and check["identical_sentences"] == len(texts)
    export(checkpoint, tmp_path / "int8", "int8", log=lambda m: None, calibration_texts=texts)  # quantizes
    assert len(open_export(tmp_path / "int8", "cpu").extract_all(texts)) == len(texts)


def test_pointer_loss_is_finite_when_probabilities_saturate() -> None:
    from triplex.training.targets import pointer_bce

    logits = torch.tensor([-200.0, -20.0, 0.0, 20.0, 200.0], requires_grad=True)
    for targets in (torch.zeros(5), torch.ones(5)):
        for power in (2, 4):
            loss = pointer_bce(logits, targets, power).sum()
            (gradient,) = torch.autograd.grad(loss, logits)
            assert torch.isfinite(loss) and torch.isfinite(gradient).all()
    # a confident right answer costs almost nothing, a confident wrong one a lot
    assert pointer_bce(torch.tensor([200.0]), torch.ones(1), 4).item() < 1e-6
    assert pointer_bce(torch.tensor([200.0]), torch.zeros(1), 4).item() > 10


def test_fresh_pointers_start_at_their_base_rates() -> None:
    """Not at 0.5 ** power: from there the first steps only pulled every output down, through every encoder
    weight, and e5-small on a few hundred DuIE 1.0 sentences collapsed (benchmarks/README.md)."""
    from triplex.training.network import OBJECT_POWER, OBJECT_PRIOR, SUBJECT_POWER, SUBJECT_PRIOR, probabilities

    model = tiny_model(num_relations=5)
    torch.nn.init.zeros_(model.subject_head.weight)  # the heads' biases alone: what every token starts at
    torch.nn.init.zeros_(model.object_head.weight)
    ids = torch.randint(5, 50, (4, 9))
    with torch.no_grad():
        hidden, subject_logits = model.encode(ids, torch.ones_like(ids))
        object_logits = model.object_logits(hidden, torch.tensor([[0, 1, 2], [3, 4, 4]]))
    subjects, objects = probabilities(subject_logits, SUBJECT_POWER), probabilities(object_logits, OBJECT_POWER)
    assert torch.allclose(subjects, torch.full_like(subjects, SUBJECT_PRIOR))
    assert torch.allclose(objects, torch.full_like(objects, OBJECT_PRIOR))
