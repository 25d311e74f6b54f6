"""The whole path from labels to decoded triples: a tiny random BERT must overfit a few dozen sentences."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from triplex.cli.common import load_model
from triplex.training.data import ReadSummary, read_dataset, read_schema
from triplex.training.evaluate import score
from triplex.training.settings import TrainSettings
from triplex.training.train import EMA, ResumeError, train

from .conftest import OVERFIT, shared_path
from .sample import RELATIONS, generate
from .tiny_encoder import build_encoder


def fit_and_predict(examples, relations, encoder: Path, output: Path, settings: TrainSettings = OVERFIT):
    best = train(examples, examples, relations, str(encoder), output, settings, ReadSummary(), log=lambda message: None)
    return best, [found.triples for found in load_model(str(output), "cpu").extract_all([e.text for e in examples])]


def assert_offsets_slice_text(examples, predicted) -> None:
    for example, triples in zip(examples, predicted):
        for triple in triples:
            for entity in (triple.subject, triple.object):
                assert example.text[entity.start : entity.end] == entity.text


def test_overfits_sample_sentences(tiny_encoder: Path, tmp_path: Path) -> None:
    examples = generate(40, seed=7)
    best, predicted = fit_and_predict(examples, RELATIONS, tiny_encoder, tmp_path / "model")
    metrics = score([e.triples for e in examples], predicted)
    assert metrics["f1"] == 1.0, metrics
    assert best["f1"] == 1.0
    assert_offsets_slice_text(examples, predicted)
    # entity types come from the schema
    assert {t.subject.type for triples in predicted for t in triples} <= {r.subject_type for r in RELATIONS}
    log = [json.loads(line) for line in (tmp_path / "model" / "training_log.jsonl").read_text().splitlines()]
    assert len(log) == OVERFIT.epochs and log[-1]["loss"] < log[0]["loss"]


def test_bf16_training_still_overfits(tiny_encoder: Path, tmp_path: Path) -> None:
    examples = generate(40, seed=7)
    bf16 = dataclasses.replace(OVERFIT, precision="bf16", thresholds="0.5,0.5")  # choosing them: the fp32 test
    best, predicted = fit_and_predict(examples, RELATIONS, tiny_encoder, tmp_path / "model", bf16)
    assert score([e.triples for e in examples], predicted)["f1"] == 1.0 and best["f1"] == 1.0


@pytest.mark.parametrize("freeze", [True, False])
def test_word_embeddings_are_kept_only_when_frozen(tiny_encoder: Path, tmp_path: Path, freeze: bool) -> None:
    examples = generate(16, seed=5)
    settings = dataclasses.replace(OVERFIT, epochs=2, freeze_embeddings=freeze)
    train(examples, examples, RELATIONS, str(tiny_encoder), tmp_path, settings, ReadSummary(), log=lambda m: None)
    before, after = load_file(tiny_encoder / "model.safetensors"), load_file(tmp_path / "model.safetensors")
    words, positions = "embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight"
    assert torch.equal(after[f"encoder.{words}"], before[words]) == freeze
    assert not torch.equal(after[f"encoder.{positions}"], before[positions])  # the rest of the encoder learns


def test_overfits_real_webnlg_sentences(tmp_path: Path) -> None:
    folder = shared_path("data/webnlg_star_casrel")
    examples = read_dataset(folder / "train_triples.json")[0][:30]
    relations = read_schema(folder / "rel2id.json")
    encoder = build_encoder(tmp_path / "encoder", [example.text for example in examples])
    best, predicted = fit_and_predict(examples, relations, encoder, tmp_path / "model")
    assert score([e.triples for e in examples], predicted)["f1"] == 1.0
    assert_offsets_slice_text(examples, predicted)


def test_resume_continues_from_saved_state(tiny_encoder: Path, tmp_path: Path) -> None:
    examples = generate(16, seed=3)
    settings = TrainSettings(epochs=2, batch_size=8, ema_decay=0.9, mask_rate=0.1)  # masks drawn per epoch
    carded: dict[int, list[int]] = {}  # the checkpoint's model card as each epoch's line is logged

    def card_epochs(message: str) -> None:
        if message.startswith("epoch ") and ":" in message.split()[1]:
            facts = json.loads((tmp_path / "extractor.json").read_text())["training"]
            carded[int(message.split()[1].rstrip(":"))] = [record["epoch"] for record in facts["epochs"]]

    train(examples, examples, RELATIONS, str(tiny_encoder), tmp_path, settings, ReadSummary(), log=card_epochs)
    assert carded[1] == [1]  # a checkpoint saved at its epoch lists that epoch (a run stopped there keeps it)
    messages: list[str] = []
    resumed = TrainSettings(epochs=3, batch_size=8, ema_decay=0.9, mask_rate=0.1, resume=True)
    train(examples, examples, RELATIONS, str(tiny_encoder), tmp_path, resumed, ReadSummary(), log=messages.append)
    assert any("resumed" in message and "epoch 3" in message for message in messages)
    assert any(message.startswith("warning: resumed with other settings (epochs 2 -> 3)") for message in messages)
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "training_log.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]
    facts = json.loads((tmp_path / "extractor.json").read_text())["training"]
    assert [record["epoch"] for record in facts["epochs"]] == [1, 2, 3]  # the card keeps the epochs before --resume


def test_resume_into_a_model_of_another_shape_says_why(tiny_encoder: Path, tmp_path: Path) -> None:
    examples = generate(8, seed=3)
    settings = TrainSettings(epochs=1, batch_size=8)
    train(examples, examples, RELATIONS, str(tiny_encoder), tmp_path, settings, ReadSummary(), log=lambda _: None)
    other = TrainSettings(epochs=2, batch_size=8, subject_distance=8, resume=True)  # adds the distance embedding
    with pytest.raises(
        ResumeError, match=r"another shape \(settings that differ: epochs 1 -> 2, subject_distance 0 -> 8"
    ):
        train(examples, examples, RELATIONS, str(tiny_encoder), tmp_path, other, ReadSummary(), log=lambda _: None)


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_text_gives_no_triples(tiny_encoder: Path, tmp_path: Path, text: str) -> None:
    examples = generate(8, seed=1)
    train(
        examples,
        examples,
        RELATIONS,
        str(tiny_encoder),
        tmp_path,
        TrainSettings(epochs=1),
        ReadSummary(),
        lambda m: None,
    )
    found = load_model(str(tmp_path), "cpu").extract_all([text])
    assert found[0].triples == [] and found[0].windows == 1


def test_averaged_weights_are_swapped_in_for_evaluation_and_back() -> None:
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, 0.9)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    weight, trained = model.weight, {name: p.detach().clone() for name, p in model.named_parameters()}
    averaged = {name: value.clone() for name, value in ema.shadow.items()}
    assert not torch.equal(averaged["weight"], trained["weight"])
    with ema.applied(model):
        assert all(torch.equal(p, averaged[name]) for name, p in model.named_parameters())
    assert model.weight is weight  # the optimizer's parameters stay the same objects
    assert all(torch.equal(p, trained[name]) for name, p in model.named_parameters())
    assert all(torch.equal(ema.shadow[name], value) for name, value in averaged.items())
