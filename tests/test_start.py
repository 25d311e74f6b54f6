"""Starting points (``--init-from``): which weights are taken, which are fresh, what is refused, what it buys."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from triplex import load
from triplex.model.schema import CONFIG_FILE
from triplex.training.data import ReadSummary, write_jsonl
from triplex.training.network import WEIGHTS_FILE, PointerExtractor, load_encoder
from triplex.training.start import ANY_RELATION, StartError, start_from
from triplex.training.targets import Feature, add_any_objects
from triplex.training.train import train

from .conftest import OVERFIT
from .sample import RELATIONS, generate
from .test_cli import error_in_process, train_args, triplex
from .tiny_encoder import build_encoder

LABELS = [relation.label for relation in RELATIONS]


def test_shared_relations_keep_their_object_heads_and_new_ones_start_fresh(trained, tiny_encoder: Path) -> None:
    checkpoint = trained[0]
    labels = [LABELS[2], "sponsored_by", LABELS[0]]  # two of the checkpoint's relations, in another order
    torch.manual_seed(5)
    model = PointerExtractor(load_encoder(str(tiny_encoder)), len(labels))
    fresh = model.object_head.weight.detach().clone()
    record = start_from(model, labels, checkpoint)
    source = load_file(checkpoint / "model.safetensors")
    state = model.state_dict()
    taken = [name for name in source if not name.startswith("object_head.")]
    assert taken and all(torch.equal(state[name], source[name]) for name in taken)  # encoder, subject head, CLN
    for index, label in enumerate(labels):
        rows = slice(2 * index, 2 * index + 2)
        if label in LABELS:
            theirs = slice(2 * LABELS.index(label), 2 * LABELS.index(label) + 2)
            assert torch.equal(state["object_head.weight"][rows], source["object_head.weight"][theirs])
            assert torch.equal(state["object_head.bias"][rows], source["object_head.bias"][theirs])
        else:
            assert torch.equal(state["object_head.weight"][rows], fresh[rows])
    assert (record["relations_kept"], record["relations_fresh"]) == (2, 1) and len(record["sha256"]) == 64


def test_a_start_without_subject_distances_leaves_them_at_zero(trained, tiny_encoder: Path) -> None:
    model = PointerExtractor(load_encoder(str(tiny_encoder)), len(LABELS), subject_distance=4)
    torch.nn.init.normal_(model.distance.weight)
    start_from(model, LABELS, trained[0])
    assert not model.distance.weight.any()
    assert torch.equal(model.subject_head.weight, load_file(trained[0] / WEIGHTS_FILE)["subject_head.weight"])


def test_a_start_with_other_subject_distances_is_refused_in_one_line(
    trained, tiny_encoder: Path, tmp_path: Path
) -> None:
    start = tmp_path / "start"
    shutil.copytree(trained[0], start)
    config = json.loads((start / CONFIG_FILE).read_text())
    (start / CONFIG_FILE).write_text(json.dumps(config | {"subject_distance": 4}))
    model = PointerExtractor(load_encoder(str(tiny_encoder)), len(LABELS))
    with pytest.raises(StartError, match="trained with --subject-distance 4; pass the same"):
        start_from(model, LABELS, start)


def test_a_start_learns_in_one_epoch_what_scratch_does_not(trained, tiny_encoder: Path, tmp_path: Path) -> None:
    examples = generate(40, seed=7)  # what the starting point was trained on
    one_epoch = dataclasses.replace(OVERFIT, epochs=1)
    quiet = lambda message: None  # noqa: E731
    scratch = train(examples, examples, RELATIONS, str(tiny_encoder), tmp_path / "a", one_epoch, ReadSummary(), quiet)
    started = dataclasses.replace(one_epoch, init_from=str(trained[0]))
    warm = train(examples, examples, RELATIONS, str(tiny_encoder), tmp_path / "b", started, ReadSummary(), quiet)
    print(f"one epoch: from the start F1 {warm['f1']:.3f}, from scratch {scratch['f1']:.3f}")
    assert warm["f1"] > 0.9 and scratch["f1"] < 0.5, (warm["f1"], scratch["f1"])
    facts = json.loads((tmp_path / "b" / "extractor.json").read_text())["training"]
    assert facts["init_from"]["relations_kept"] == len(RELATIONS) and facts["settings"]["init_from"] == str(trained[0])
    assert f"started from `{trained[0]}`" in (tmp_path / "b" / "README.md").read_text()


def test_a_starts_any_object_relation_trains_as_a_helper_and_is_not_saved(
    trained, tiny_encoder: Path, tmp_path: Path
) -> None:
    start = tmp_path / "start"  # the trained model with an any-object relation, as benchmarks/starts.py builds
    shutil.copytree(trained[0], start)
    config = json.loads((start / CONFIG_FILE).read_text())
    config["relations"].append({"predicate": ANY_RELATION, "subject_type": "", "object_type": "", "slot": "@value"})
    (start / CONFIG_FILE).write_text(json.dumps(config))
    weights = load_file(start / WEIGHTS_FILE)
    for name in ("object_head.weight", "object_head.bias"):
        weights[name] = torch.cat([weights[name], torch.full_like(weights[name][:2], 0.25)])
    save_file(weights, start / WEIGHTS_FILE)
    examples = generate(24, seed=7)
    settings = dataclasses.replace(OVERFIT, epochs=1, init_from=str(start))
    quiet = lambda message: None  # noqa: E731
    for any_relation, output in ((True, tmp_path / "helped"), (False, tmp_path / "alone")):
        run = dataclasses.replace(settings, any_relation=any_relation)
        train(examples, examples, RELATIONS, str(tiny_encoder), output, run, ReadSummary(), quiet)
        card = json.loads((output / "extractor.json").read_text())
        assert [r["predicate"] for r in card["relations"]] == [r.predicate for r in RELATIONS]
        assert card["training"]["init_from"]["helpers"] == ([ANY_RELATION] if any_relation else [])
        saved = load_file(output / WEIGHTS_FILE)  # an ordinary model of the schema: the helper's rows left out
        assert saved["object_head.weight"].shape[0] == saved["object_head.bias"].shape[0] == 2 * len(RELATIONS)
        found = load(output, provider="cpu")([example.text for example in examples])
        assert any(found) and not any(t.predicate == ANY_RELATION for triples in found for t in triples)


def test_the_helper_marks_every_object_of_a_subject_once() -> None:
    feature = Feature(np.arange(9), {(1, 2): [(0, 4, 5), (2, 4, 5), (1, 7, 8)], (4, 5): [(1, 1, 2)]})
    add_any_objects([feature], 3)
    assert feature.objects == {
        (1, 2): [(0, 4, 5), (2, 4, 5), (1, 7, 8), (3, 4, 5), (3, 7, 8)],
        (4, 5): [(1, 1, 2), (3, 1, 2)],
    }


def test_a_start_from_another_encoder_or_no_model_is_refused_in_one_line(trained, tmp_path: Path, capsys) -> None:
    files = {"train": tmp_path / "train.jsonl", "dev": tmp_path / "dev.jsonl"}
    write_jsonl(generate(8, seed=3), files["train"])
    write_jsonl(generate(4, seed=4), files["dev"])
    wider = build_encoder(tmp_path / "wider", [e.text for e in generate(50, seed=1)], hidden=32)
    error = error_in_process(train_args(files, wider, tmp_path / "out", "--init-from", str(trained[0])), capsys)
    assert "--init-from" in error and "hidden_size 64 against 32" in error, error
    error = error_in_process(train_args(files, wider, tmp_path / "out2", "--init-from", str(trained[1])), capsys)
    assert "not a trained model folder" in error, error  # an export
    no_encoder = ["train", "--train", str(files["train"]), "--dev", str(files["dev"]), "--output", str(tmp_path / "o")]
    assert "give --encoder" in error_in_process(no_encoder, capsys)


def test_a_model_that_finds_nothing_on_dev_is_reported(tiny_encoder: Path, tmp_path: Path) -> None:
    """One epoch of a tiny model finds no triple (F1 0, as ``test_a_start_learns...`` shows): the CLI says so."""
    files = {"train": tmp_path / "train.jsonl", "dev": tmp_path / "dev.jsonl"}
    write_jsonl(generate(16, seed=3), files["train"])
    write_jsonl(generate(8, seed=4), files["dev"])
    result = triplex(*train_args(files, tiny_encoder, tmp_path / "out", "--epochs", "1", "--precision", "fp32"))
    assert result.returncode == 0, result.stderr
    assert "warning: the model finds no triple of --dev at any threshold tried" in result.stderr
