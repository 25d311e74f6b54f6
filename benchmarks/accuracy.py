"""Accuracy on real data with the CLI's defaults: train, then evaluate the best checkpoint on dev.

    python benchmarks/accuracy.py --shared ../shared [--only webnlg duie1] [--work runs]

Figures are merged into benchmarks/results/accuracy.json (one entry per run name).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "accuracy.json"
# name: (train file, dev file, encoder, extra training flags)
RUNS = {
    "webnlg": (
        "data/webnlg_star_casrel/train_triples.json",
        "data/webnlg_star_casrel/dev_triples.json",
        "models/minilm-l6-h384-uncased",
        [],
    ),
    "duie1": (
        "data/duie1_lic2019/train_data.sample2601.json",
        "data/duie1_lic2019/dev_data.head300.json",
        "models/e5-small-multilingual-trimmed",
        [],
    ),
}


def run(name: str, shared: Path, work: Path) -> dict:
    train, dev, encoder, extra = RUNS[name]
    output = work / name
    command = [
        sys.executable,
        "-m",
        "triplex.training.cli",
        "train",
        "--train",
        str(shared / train),
        "--dev",
        str(shared / dev),
        "--encoder",
        str(shared / encoder),
        "--output",
        str(output),
        *extra,
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    train_seconds = time.perf_counter() - started
    metrics_file = work / f"{name}-dev-metrics.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "triplex.training.cli",
            "evaluate",
            "--model",
            str(output),
            "--data",
            str(shared / dev),
            "--metrics-out",
            str(metrics_file),
            "--errors",
            str(work / f"{name}-dev-errors.jsonl"),
        ],
        check=True,
    )
    metrics = json.loads(metrics_file.read_text())
    log = [json.loads(line) for line in (output / "training_log.jsonl").read_text().splitlines()]
    return {
        "train": train,
        "dev": dev,
        "encoder": encoder,
        "flags": extra,
        **{
            key: round(metrics[key], 4)
            for key in ("precision", "recall", "f1", "partial_precision", "partial_recall", "partial_f1")
        },
        "dev_sentences": metrics["sentences"],
        "epochs": len(log),
        "best_epoch": max(log, key=lambda record: record["f1"])["epoch"],
        "dev_f1_per_epoch": [round(record["f1"], 4) for record in log],
        "train_sentences_per_s_median": sorted(r["train_sentences_per_s"] for r in log)[len(log) // 2],
        "train_seconds": round(train_seconds, 1),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, CPU",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--only", nargs="*", choices=sorted(RUNS), default=sorted(RUNS))
    parser.add_argument("--work", type=Path, default=Path("runs"))
    args = parser.parse_args()
    if not (args.shared / "data").is_dir():
        sys.exit(f"{args.shared}/data not found; pass --shared")
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    for name in args.only:
        results[name] = run(name, args.shared, args.work)
        RESULTS.write_text(json.dumps(results, indent=2))
        print(json.dumps({name: results[name]}, indent=2))


if __name__ == "__main__":
    main()
