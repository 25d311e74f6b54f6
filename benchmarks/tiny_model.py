"""A small, fast WebNLG* extractor for measuring what surrounds the model (front ends, messages, decode).

    python benchmarks/tiny_model.py --shared ../shared --output runs/tiny-webnlg [--epochs 3]

A randomly initialised BERT of 2 layers and hidden size 128 with a WordPiece vocabulary learnt from the
WebNLG* training texts (the tests' ``build_encoder``), trained with ``triplex train`` for a few epochs and
exported fp32 to OUTPUT/export. Its graphs take a small share of a CPU core per sentence, so a server
around it is limited by its host work, as a server around a GPU is; its triples are real, if fewer.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from common import ROOT

from tests.tiny_encoder import build_encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "tiny-webnlg")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    data = args.shared / "data" / "webnlg_star_casrel"
    texts = [record["text"] for record in json.loads((data / "train_triples.json").read_text())]
    encoder = build_encoder(args.output / "encoder", texts, hidden=128, layers=2, vocab_size=8000, max_positions=256)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    triplex = [sys.executable, "-m", "triplex"]
    model, export = args.output / "model", args.output / "export"
    files = ["--train", str(data / "train_triples.json"), "--dev", str(data / "dev_triples.json"),
             "--schema", str(data / "rel2id.json")]  # fmt: skip
    settings = ["--encoder", str(encoder), "--epochs", str(args.epochs), "--lr", "1e-3", "--overwrite", "--quiet"]
    subprocess.run([*triplex, "train", *files, *settings, "--output", str(model)], check=True, env=env)
    exporting = ["export", "--model", str(model), "--output", str(export), "--precision", "fp32"]
    subprocess.run([*triplex, *exporting], check=True, env=env)


if __name__ == "__main__":
    main()
