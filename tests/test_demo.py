"""The demo model that `make demo` builds must be right on sentences it has never seen."""

import json
from pathlib import Path

from triplex.training.demo import build_demo


def test_demo_model_extracts_unseen_sentences(tmp_path: Path) -> None:
    figures = build_demo(tmp_path, log=lambda message: None)
    assert figures["f1"] >= 0.95, figures
    assert json.loads((tmp_path / "fresh_metrics.json").read_text()) == figures
    assert (tmp_path / "export" / "encoder.onnx").is_file() and (tmp_path / "export" / "tokenizer.json").is_file()
