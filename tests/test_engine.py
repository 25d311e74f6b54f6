"""The exported model and the ONNX Runtime engine: same triples as PyTorch, long texts, bad input."""

import dataclasses
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from triplex.model import decode
from triplex.model.extractor import Extractor, InFlight, open_export, ownerships
from triplex.model.runtime import ExportError
from triplex.model.schema import Entity, ExtractorConfig, Thresholds, Triple
from triplex.model.tokenize import Encoded, encode_windows, load_tokenizer
from triplex.training.data import Example, ReadSummary
from triplex.training.evaluate import choose_thresholds, score, thresholds_of
from triplex.training.export import export
from triplex.training.network import load_extractor, save_extractor, torch_extractor
from triplex.training.train import train

from .conftest import OVERFIT
from .sample import RELATIONS, generate


def test_onnx_gives_the_same_triples_as_pytorch(trained: tuple[Path, Path]) -> None:
    checkpoint, exported = trained
    texts = [example.text for example in generate(60, seed=99)]  # unseen sentences, mixed lengths
    expected = torch_extractor(checkpoint).extract_all(texts)
    extractor = open_export(exported, provider="cpu", batch_size=7)  # odd batches: ragged padding
    got = extractor.extract_all(texts)
    assert [[t.key() for t in e.triples] for e in expected] == [[t.key() for t in g.triples] for g in got]
    spans = [[(t.subject.start, t.object.start) for t in e.triples] for e in expected]
    assert spans == [[(t.subject.start, t.object.start) for t in g.triples] for g in got]
    for e, g in zip(expected, got):
        assert all(abs(a.score - b.score) < 1e-4 for a, b in zip(e.triples, g.triples))
    info = json.loads((exported / "extractor.json").read_text())["export"]
    assert info["precision"] == "fp32" and info["fp32_max_difference"] <= 1e-4
    assert info["fusions"].get("SkipLayerNormalization", 0) > 0 and info["fusions"].get("Attention", 0) == 2


def test_subjects_in_several_object_calls_give_the_same_triples(
    trained: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Graph 2 runs on a batch's subjects in chunks when they are many: the chunks' subjects are
    renumbered into one list, so the triples are those of one call."""
    _, exported = trained
    texts = [example.text for example in generate(40, seed=98)]
    extractor = open_export(exported, provider="cpu", batch_size=16)
    whole = extractor.extract(texts)
    monkeypatch.setattr(decode, "SUBJECT_TOKENS_PER_CALL", 1)  # one subject a call
    chunked = extractor.extract(texts)
    assert sum(map(len, whole)) > 10 and chunked == whole


def test_int8_export_runs_and_stays_accurate(trained: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, _ = trained
    examples = generate(40, seed=7)
    texts = [e.text for e in examples]
    with pytest.raises(ValueError, match="calibration-data"):
        export(checkpoint, tmp_path / "uncalibrated", "int8", log=lambda m: None)
    calibration = [e.text for e in generate(100, seed=3)]
    info = export(checkpoint, tmp_path, "int8", log=lambda m: None, check_texts=texts, calibration_texts=calibration)
    # judged by its decisions on real sentences, recorded with the export
    recorded = json.loads((tmp_path / "extractor.json").read_text())["export"]
    check = recorded["triples_check"]
    assert check == info.triples_check and check["sentences"] == 40 and recorded["calibration"]["sentences"] == 100
    assert check["shared_triples"] >= 0.9 * check["pytorch_triples"] > 0
    found = open_export(tmp_path, provider="cpu").extract_all([e.text for e in examples])
    assert score([e.triples for e in examples], [f.triples for f in found])["f1"] > 0.9


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_an_answer_does_not_depend_on_its_batch(trained: tuple[Path, Path], tmp_path: Path, precision: str) -> None:
    """Alone, in batches with other neighbours, in other orders: the same triples and scores (the
    precisions the README recommends; dynamic int8, with one activation scale per batch, failed this)."""
    checkpoint, exported = trained
    if precision == "int8":
        calibration = [e.text for e in generate(100, seed=3)]
        export(checkpoint, tmp_path, "int8", log=lambda m: None, calibration_texts=calibration)
        exported = tmp_path
    texts = [e.text for e in generate(60, seed=11)] + ["x " * 300]  # a long text pads its batch far out
    alone = [open_export(exported, "cpu", batch_size=1)([text])[0] for text in texts]
    assert sum(map(len, alone)) >= 60
    order = list(range(len(texts)))
    for seed, batch_size in ((1, 64), (2, 7), (3, 16)):
        random.Random(seed).shuffle(order)
        found = open_export(exported, "cpu", batch_size=batch_size)([texts[i] for i in order])
        for position, index in enumerate(order):
            got, expected = found[position], alone[index]
            assert [t.key() for t in got] == [t.key() for t in expected]
            assert max((abs(a.score - b.score) for a, b in zip(got, expected)), default=0) <= 1e-6


def window_examples(text: str, gold: list[Triple], windows: list[Encoded]) -> list[Example]:
    """Each window's slice of the text with the gold triples that lie wholly inside it."""
    examples = []
    for window in windows:
        start, end = int(window.starts[window.content].min()), int(window.ends[window.content].max())
        inside = [
            t for t in gold if min(t.subject.start, t.object.start) >= start and max(t.subject.end, t.object.end) <= end
        ]
        examples.append(Example(text[start:end], [shifted(t, -start) for t in inside]))
    return examples


def shifted(triple: Triple, offset: int) -> Triple:
    def move(entity: Entity) -> Entity:
        return dataclasses.replace(entity, start=entity.start + offset, end=entity.end + offset)

    return dataclasses.replace(triple, subject=move(triple.subject), object=move(triple.object))


def test_long_text_finds_triples_across_windows_once(tiny_encoder: Path, tmp_path: Path) -> None:
    text, gold, previous = "", [], set()
    for example in generate(300, seed=21):  # neighbours share no name, or a memorising model mixes them up
        names = {e.text for t in example.triples for e in (t.subject, t.object)}
        if names & previous:
            continue
        gold += [shifted(t, len(text)) for t in example.triples]
        text += example.text + " "
        previous = names
        if len(text) > 2500:
            break
    assert len(text) > 2500
    max_length, stride = 64, 32
    windows = encode_windows(load_tokenizer(tiny_encoder), [text], max_length, stride)[0]
    # A tiny random model memorises positions rather than reading, so it learns the windows the
    # engine will cut; what is tested is the cutting, the offsets and the merging.
    examples = window_examples(text, gold, windows)
    # thresholds given: choosing them after each of 150 epochs would take most of the time
    settings = dataclasses.replace(OVERFIT, max_length=max_length, epochs=150, thresholds="0.5,0.5")
    train(examples, examples, RELATIONS, str(tiny_encoder), tmp_path / "model", settings, ReadSummary(), lambda m: None)
    export(tmp_path / "model", tmp_path / "export", "fp32", log=lambda m: None)
    config = ExtractorConfig.load(tmp_path / "export")
    dataclasses.replace(config, window_stride=stride).save(tmp_path / "export")

    found = open_export(tmp_path / "export", provider="cpu").extract_all([text])[0]
    assert found.windows == len(windows) > 10
    near_boundaries = [t for t in gold if sum(1 for e in examples for g in e.triples if g.key() == t.key()) > 1]
    assert near_boundaries, "some triples must fall in the overlap of two windows"
    got = [(t.subject.start, t.predicate, t.object.start) for t in found.triples]
    assert len(got) == len(set(got))  # found in two windows, reported once
    expected = {(t.subject.start, t.predicate, t.object.start) for t in gold}
    assert sorted(got) == sorted(expected)
    for triple in found.triples:
        for entity in (triple.subject, triple.object):
            assert text[entity.start : entity.end] == entity.text


def test_windows_split_the_text_between_them() -> None:
    windows = [
        Encoded("", np.zeros(3), np.array([-1, a, b]), np.array([-1, a + 4, b + 4]))
        for a, b in ((0, 10), (8, 20), (18, 30))
    ]
    owners = ownerships(windows)
    assert [(o.start, o.end) for o in owners] == [(float("-inf"), 11.0), (11.0, 21.0), (21.0, float("inf"))]
    triple = Triple(Entity("a", 9, 10), "p", Entity("b", 12, 13))
    assert [o.keeps(triple) for o in owners] == [True, False, False]
    # starts in window 0's part but ends past window 0's text (14): only windows 1 and 2 can see it
    long = Triple(Entity("a", 9, 10), "p", Entity("b", 20, 24))
    assert [o.keeps(long) for o in owners[1:]] == [True, False]


@pytest.mark.parametrize(
    "text",
    ["", "   \n\t ", "\u2603\u2604\U0001f600\U0001f680", "e\u0301e\u0301 n\u0303", "a\x00b\x07c\x1b[0m", "\ufffd" * 50],
)
def test_odd_texts_give_results_not_errors(trained: tuple[Path, Path], text: str) -> None:
    found = open_export(trained[1], provider="cpu").extract_all([text, "Mei Tanaka was born in Osaka."])
    assert len(found) == 2
    for triple in found[0].triples:
        assert text[triple.subject.start : triple.subject.end] == triple.subject.text


def test_missing_or_corrupt_export_folder(trained: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="not an export folder"):
        open_export(tmp_path / "nothing")
    broken = tmp_path / "broken"
    shutil.copytree(trained[1], broken)
    (broken / "encoder.onnx").write_bytes(b"not a model")
    with pytest.raises(ExportError, match="cannot load the export"):
        open_export(broken)
    with pytest.raises(ExportError, match="unknown provider"):
        open_export(trained[1], provider="quantum")


def test_parity_check_refuses_nan_probabilities(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """A NaN among the object probabilities must fail the export, wherever it falls among the differences."""
    model, config = load_extractor(trained[0])
    with torch.no_grad():
        model.object_head.bias[3] = float("nan")
    save_extractor(model, config, tmp_path / "broken")
    with pytest.raises(ValueError, match="not finite"):
        export(tmp_path / "broken", tmp_path / "export", "fp32", log=lambda m: None)


def test_overlapping_stages_keep_the_order_and_prepare_ahead() -> None:
    events: list[str] = []

    def prepare(item: int) -> int:
        events.append(f"prepare {item}")
        return item * 10

    def run(prepared: int) -> int:
        return prepared + 1

    def through(in_flight: InFlight, items: list[int | None]) -> None:
        """Each item prepared and added; None: the source has nothing for now, so what is in flight is finished."""
        for item in items:
            finished = in_flight.drain() if item is None else in_flight.add(item, prepare(item))
            for done, result in finished:
                events.append(f"finish {done}")
                assert result == done * 10 + 1
        for done, _ in in_flight.drain():
            events.append(f"finish {done}")

    with InFlight(run, overlap=True) as in_flight:
        through(in_flight, [0, 1, 2])
    # batch k+1 is prepared (and queued for the accelerator) before batch k is finished
    assert events == ["prepare 0", "prepare 1", "finish 0", "prepare 2", "finish 1", "finish 2"]
    events.clear()
    with InFlight(run, overlap=False) as in_flight:
        through(in_flight, [0, 1, 2])
    assert events == ["prepare 0", "finish 0", "prepare 1", "finish 1", "prepare 2", "finish 2"]
    events.clear()
    with InFlight(run, overlap=True) as in_flight:
        through(in_flight, [0, 1, None, 2])
    assert events == ["prepare 0", "prepare 1", "finish 0", "finish 1", "prepare 2", "finish 2"]
    events.clear()  # two streams: two items run while a third is prepared, and they finish in order
    with InFlight(run, overlap=False, streams=2) as in_flight:
        through(in_flight, [0, 1, 2, 3])
    assert events == [
        "prepare 0",
        "prepare 1",
        "prepare 2",
        "finish 0",
        "prepare 3",
        "finish 1",
        "finish 2",
        "finish 3",
    ]


def test_the_overlapping_extractor_gives_the_same_triples(trained: tuple[Path, Path]) -> None:
    extractor = open_export(trained[1], provider="cpu", batch_size=5)
    texts = [example.text for example in generate(40, seed=31)]
    sequential = extractor.extract_all(texts)
    overlapped = Extractor(extractor.tokenizer, extractor.config, extractor.runtime, batch_size=5, overlap=True)
    assert overlapped.extract_all(texts) == sequential and any(found.triples for found in sequential)
    streams = open_export(trained[1], provider="cpu", batch_size=5, threads=2, streams=2)  # two batches at once
    assert streams.streams == 2 and streams.runtime.encoder.get_session_options().intra_op_num_threads == 1
    assert streams.extract_all(texts) == sequential


def test_subjects_thresholds_are_chosen_apart_on_enough_triples(trained: tuple[Path, Path]) -> None:
    extractor = torch_extractor(trained[0])
    own = extractor.thresholds
    examples = generate(30, seed=41)
    texts, gold = [example.text for example in examples], [example.triples for example in examples]
    chosen, tried = choose_thresholds(extractor, texts, gold, apart_min_triples=0)
    assert any("subject_start" in row and row["subject_start"] != row["start"] for row in tried)
    best = max(row["f1"] for row in tried)
    assert next(row for row in tried if Thresholds(**thresholds_of(row)) == chosen)["f1"] == best
    assert 0 < chosen.subjects[0] < 1
    assert extractor.thresholds == own == extractor.config.thresholds  # the search changes nobody's thresholds
    for row in tried[:: max(1, len(tried) // 4)]:  # the graphs' kept outputs give the figures of a fresh run
        at_row = extractor.with_thresholds(Thresholds(**thresholds_of(row)))
        assert score(gold, [found.triples for found in at_row.extract_all(texts)])["f1"] == row["f1"]
    _, few = choose_thresholds(extractor, texts, gold, apart_min_triples=10_000)  # too few triples: one pair
    assert not any("subject_start" in row for row in few)
