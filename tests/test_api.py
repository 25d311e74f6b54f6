"""The Python API: ``triplex.load(path)`` over an export or a checkpoint, then ``extractor(text)``."""

from __future__ import annotations

from pathlib import Path

import pytest

import triplex

from .test_service import TEXTS


def test_load_an_export_and_a_checkpoint(trained: tuple[Path, Path], tmp_path: Path) -> None:
    checkpoint, export = trained
    extractor = triplex.load(export, provider="cpu")
    one = extractor(TEXTS[0])
    assert one and all(isinstance(triple, triplex.Triple) for triple in one)
    several = extractor.extract(TEXTS[:6])
    assert several[0] == one and len(several) == 6
    for triple in one:
        entity = triple.to_dict()["subject"]
        assert TEXTS[0][entity["start"] : entity["end"]] == entity["text"]
    from_checkpoint = triplex.load(str(checkpoint), provider="cpu")(TEXTS[:6])  # PyTorch, same triples
    assert [[t.key() for t in found] for found in from_checkpoint] == [[t.key() for t in found] for found in several]
    assert extractor([]) == [] and extractor("") == []


def test_load_and_extract_refuse_in_one_sentence(trained: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(triplex.ModelError, match="neither an export folder nor a trained model folder"):
        triplex.load(tmp_path)
    with pytest.raises(triplex.ModelError, match="unknown provider"):
        triplex.load(trained[1], provider="tpu")
    extractor = triplex.load(trained[1], provider="cpu")
    with pytest.raises(ValueError, match="lone UTF-16 surrogate"):
        extractor(["fine", "half \ud800 a pair"])
    with pytest.raises(TypeError, match="not a string"):
        extractor(["fine", 5])
