"""The exported model and the ONNX Runtime engine: same triples as PyTorch, long texts, bad input."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from model.export import export
from model.network import load_extractor, torch_runners
from model.pipeline import Extractor, identity, owned_ranges
from model.schema import ExtractorConfig
from model.tokenize import encode_windows, load_tokenizer
from service.engine import Engine, ExportError
from training.data import Summary
from training.evaluate import score
from training.sample import RELATIONS, generate
from training.train import TrainSettings, train

SETTINGS = TrainSettings(
    epochs=60, batch_size=8, learning_rate=2e-3, head_learning_rate=5e-3, warmup=0.05, ema_decay=0.9
)


@pytest.fixture(scope="module")
def trained(tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny model that has learnt the sample sentences, and its fp32 export."""
    checkpoint, exported = tmp_path_factory.mktemp("checkpoint"), tmp_path_factory.mktemp("export")
    examples = generate(40, seed=7)
    train(examples, examples, RELATIONS, str(tiny_encoder), checkpoint, SETTINGS, Summary(), log=lambda m: None)
    export(checkpoint, exported, "fp32", log=lambda m: None)
    return checkpoint, exported


def torch_extractor(checkpoint: Path) -> Extractor:
    model, config = load_extractor(checkpoint)
    return Extractor(load_tokenizer(checkpoint), config, *torch_runners(model))


def test_onnx_gives_the_same_triples_as_pytorch(trained: tuple[Path, Path]) -> None:
    checkpoint, exported = trained
    texts = [example.text for example in generate(60, seed=99)]  # unseen sentences, mixed lengths
    expected = torch_extractor(checkpoint).extract(texts)
    engine = Engine(exported, provider="cpu", batch_size=7)  # odd batches: ragged padding
    got = engine.extract(texts)
    assert [[t.key() for t in e.triples] for e in expected] == [[t.key() for t in g.triples] for g in got]
    spans = [[(t.subject.start, t.object.start) for t in e.triples] for e in expected]
    assert spans == [[(t.subject.start, t.object.start) for t in g.triples] for g in got]
    for e, g in zip(expected, got):
        assert all(abs(a.score - b.score) < 1e-4 for a, b in zip(e.triples, g.triples))
    info = json.loads((exported / "extractor.json").read_text())["export"]
    assert info["precision"] == "fp32" and info["fp32_max_difference"] <= 1e-4
    assert info["fusions"].get("SkipLayerNormalization", 0) > 0


def test_int8_export_runs_and_stays_accurate(trained: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, _ = trained
    export(checkpoint, tmp_path, "int8", log=lambda m: None)
    examples = generate(40, seed=7)
    found = Engine(tmp_path, provider="cpu").extract([e.text for e in examples])
    assert score([e.triples for e in examples], [f.triples for f in found])["f1"] > 0.9


def test_long_text_uses_windows_and_keeps_offsets(trained: tuple[Path, Path], tmp_path: Path) -> None:
    # A tiny random model memorises absolute positions, so it cannot be held to finding every triple
    # once windows shift the sentences; that is measured with a real encoder in the benchmarks. Here:
    # many windows, offsets into the whole text, and each triple reported once.
    folder = tmp_path / "windowed"
    shutil.copytree(trained[1], folder)
    config = ExtractorConfig.load(folder)
    dataclasses.replace(config, max_length=48, window_stride=24).save(folder)
    text = " ".join(example.text for example in generate(120, seed=7))
    assert len(text) > 5000
    found = Engine(folder, provider="cpu").extract([text])[0]
    assert found.windows > 50 and found.triples
    identities = [identity(triple) for triple in found.triples]
    assert len(identities) == len(set(identities))
    for triple in found.triples:
        for entity in (triple.subject, triple.object):
            assert text[entity.start : entity.end] == entity.text


def test_each_window_owns_the_middle_of_its_overlaps(trained: tuple[Path, Path]) -> None:
    tokenizer = load_tokenizer(trained[1])
    text = " ".join(f"word{i}" for i in range(60))
    windows = encode_windows(tokenizer, [text], 16, 6)[0]
    ranges = owned_ranges(windows)
    assert ranges[0][0] == float("-inf") and ranges[-1][1] == float("inf")
    for (_, end), (start, _), left, right in zip(ranges, ranges[1:], windows, windows[1:]):
        assert end == start  # no gap, no overlap: every character belongs to one window
        assert right.starts[right.content].min() < end < left.ends[left.content].max()


@pytest.mark.parametrize(
    "text",
    ["", "   \n\t ", "\u2603\u2604\U0001f600\U0001f680", "e\u0301e\u0301 n\u0303", "a\x00b\x07c\x1b[0m", "\ufffd" * 50],
)
def test_odd_texts_give_results_not_errors(trained: tuple[Path, Path], text: str) -> None:
    found = Engine(trained[1], provider="cpu").extract([text, "Mei Tanaka was born in Osaka."])
    assert len(found) == 2
    for triple in found[0].triples:
        assert text[triple.subject.start : triple.subject.end] == triple.subject.text


def test_missing_or_corrupt_export_folder(trained: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="not an export folder"):
        Engine(tmp_path / "nothing")
    broken = tmp_path / "broken"
    shutil.copytree(trained[1], broken)
    (broken / "encoder.onnx").write_bytes(b"not a model")
    with pytest.raises(ExportError, match="cannot load the export"):
        Engine(broken)
    with pytest.raises(ExportError, match="unknown provider"):
        Engine(trained[1], provider="quantum")
