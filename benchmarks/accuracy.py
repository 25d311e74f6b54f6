"""Accuracy on real data with the CLI's defaults: train, then evaluate the best checkpoint on dev.

    python benchmarks/accuracy.py --shared ../shared [--only webnlg_star duie1 ...] [--work runs]
    python benchmarks/accuracy.py --markdown    # the README's table
    python benchmarks/accuracy.py --only NAME --choose-thresholds   # no training: thresholds chosen again

A ``NAME_fp32`` run is NAME's with ``--precision fp32``: the default's bf16 autocast against fp32;
``webnlg_star_negative_subjects`` is WebNLG*'s with ``--negative-subjects``, ``webnlg_star_sentence_distance`` with
``--sentence-distance 2``.

Figures are merged into benchmarks/results/accuracy.json (one entry per run name).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from common import ROOT  # noqa: F401 - puts the project on the path

from triplex.training.data import find_schema

RESULTS = Path(__file__).parent / "results" / "accuracy.json"
MINILM, E5 = "models/minilm-l6-h384-uncased", "models/e5-small-multilingual-trimmed"


@dataclass
class Run:
    train: list[str]  # files under ../shared, concatenated (or split off a file: see split)
    dev: str
    encoder: str
    metric: str  # "partial" (CasRel's last-word match, WebNLG* and NYT*) or "exact"
    split: int = 0  # > 0: train on all but the last SPLIT records of ``dev``, evaluate on those
    flags: list[str] = field(default_factory=list)


RUNS = {
    "webnlg_star": Run(
        ["data/webnlg_star_casrel/train_triples.json"], "data/webnlg_star_casrel/dev_triples.json", MINILM, "partial"
    ),
    "webnlg_exact": Run(
        ["data/webnlg_exact/train_triples.json"], "data/webnlg_exact/dev_triples.json", MINILM, "exact"
    ),
    "conll04": Run(["data/conll04/conll04_train.json"], "data/conll04/conll04_dev.json", MINILM, "exact"),
    "duie1": Run(
        ["data/duie1_lic2019/train_data.sample2601.json"], "data/duie1_lic2019/dev_data.head300.json", E5, "exact"
    ),
    "duie2": Run(
        ["data/duie2/duie_train.head5000.json", "data/duie2/duie_train.sample4398.json"],
        "data/duie2/duie_dev.head1000.json",
        E5,
        "exact",
    ),
    "nyt_star": Run([], "data/nyt_star_casrel/dev_triples.json", MINILM, "partial", split=1000),
}
# A run NAME + SUFFIX is NAME's with FLAGS: suffix -> (flags, the datasets it runs on)
VARIANTS = {
    "_fp32": (["--precision", "fp32"], ("conll04", "duie1", "webnlg_star")),  # against bf16 autocast
    "_negative_subjects": (["--negative-subjects"], ("webnlg_star",)),
    "_sentence_distance": (["--sentence-distance", "2"], ("webnlg_star",)),  # texts of several sentences
}
RUNS |= {name + end: replace(RUNS[name], flags=flags) for end, (flags, names) in VARIANTS.items() for name in names}
# Published F1 (%), test splits, full training sets: (system, encoder and size, F1, source).
PUBLISHED = {
    "webnlg_star": [
        ("CasRel", "BERT-base, 110M", 91.8, "Wei et al., ACL 2020"),
        ("TPLinker", "BERT-base, 110M", 91.9, "Wang et al., COLING 2020"),
        ("PRGC", "BERT-base, 110M", 93.0, "Zheng et al., ACL 2021"),
        ("OneRel", "BERT-base, 110M", 94.3, "Shang et al., AAAI 2022"),
        ("UniRel", "BERT-base, 110M", 94.7, "Tang et al., EMNLP 2022"),
    ],
    "webnlg_exact": [
        ("TPLinker", "BERT-base, 110M", 86.7, "Wang et al., COLING 2020"),
        ("PRGC", "BERT-base, 110M", 88.5, "Zheng et al., ACL 2021"),
        ("OneRel", "BERT-base, 110M", 91.0, "Shang et al., AAAI 2022"),
    ],
    "nyt_star": [
        ("CasRel", "BERT-base, 110M", 89.6, "Wei et al., ACL 2020"),
        ("TPLinker", "BERT-base, 110M", 91.9, "Wang et al., COLING 2020"),
        ("PRGC", "BERT-base, 110M", 92.6, "Zheng et al., ACL 2021"),
        ("OneRel", "BERT-base, 110M", 92.8, "Shang et al., AAAI 2022"),
        ("UniRel", "BERT-base, 110M", 93.7, "Tang et al., EMNLP 2022"),
    ],
    "conll04": [
        ("SpERT", "BERT-base, 110M", 71.5, "Eberts and Ulges, ECAI 2020 (micro F1, strict)"),
        ("REBEL", "BART-large, 406M", 76.7, "Huguet Cabot and Navigli, Findings of EMNLP 2021 (strict)"),
    ],
    "duie1": [
        (
            "pointer + Conditional LayerNorm",
            "Chinese BERT-base, 110M; 173k sentences",
            82.2,
            "shared/data/README.md (dev)",
        ),
        ("InfoExtractor 2.0", "ERNIE 1.0, 110M; full data", 84.8, "PaddlePaddle/models, PaddleKG/DuIE_Baseline"),
    ],
    "duie2": [
        (
            "InfoExtractor 2.0 (the official baseline)",
            "ERNIE 1.0, 110M",
            55.4,
            "PaddlePaddle/models, PaddleKG/DuIE_Baseline (on its demo data)",
        ),
    ],
}


def prepare(name: str, run: Run, shared: Path, work: Path) -> tuple[Path, Path]:
    """The training and dev files of a run: as given, concatenated, or split off the dev file."""
    if run.split:
        records = json.loads((shared / run.dev).read_text())
        train, dev = work / f"{name}-train.json", work / f"{name}-dev.json"
        train.write_text(json.dumps(records[: -run.split]))
        dev.write_text(json.dumps(records[-run.split :]))
        return train, dev
    if len(run.train) == 1:
        return shared / run.train[0], shared / run.dev
    train = work / f"{name}-train{Path(run.train[0]).suffix}"
    train.write_text("".join((shared / path).read_text().rstrip("\n") + "\n" for path in run.train))
    return train, shared / run.dev


def schema_flags(run: Run, shared: Path) -> list[str]:
    """The schema file beside the run's first data file (the CLI looks only beside --train)."""
    found = find_schema(shared / (run.train or [run.dev])[0])
    return ["--schema", str(found)] if found else []


def best_tried(record: dict | None, count: int = 5) -> dict | None:
    """The card's record of the thresholds with only its ``count`` best settings tried (the model's
    extractor.json keeps them all)."""
    if not record or "tried" not in record:
        return record
    return record | {
        "settings_tried": len(record["tried"]),
        "tried": sorted(record["tried"], key=lambda row: -row["f1"])[:count],
    }


def train_model(spec: Run, shared: Path, train: Path, dev: Path, output: Path) -> float:
    """``triplex train`` with the CLI's defaults; its seconds."""
    command = [sys.executable, "-m", "triplex", "train", "--train", str(train), "--dev", str(dev)]
    command += [*schema_flags(spec, shared), "--encoder", str(shared / spec.encoder), "--output", str(output)]
    started = time.perf_counter()
    subprocess.run([*command, *spec.flags], check=True)
    return time.perf_counter() - started


def run(name: str, shared: Path, work: Path, train_seconds: float | None = None, choose: bool = False) -> dict:
    """Train with the CLI's defaults (unless ``train_seconds`` of an earlier training into the same folder
    is given), then evaluate the kept checkpoint on dev (``choose``: after choosing its thresholds on dev
    again, as training does, with today's grid)."""
    spec = RUNS[name]
    train, dev = prepare(name, spec, shared, work)
    output = work / name
    if train_seconds is None:
        train_seconds = train_model(spec, shared, train, dev, output)
    metrics_file = work / f"{name}-dev-metrics.json"
    evaluate = [sys.executable, "-m", "triplex", "evaluate", "--model", str(output), "--data", str(dev)]
    errors = ["--errors", str(work / f"{name}-dev-errors.jsonl")]
    again = ["--choose-thresholds"] if choose else []
    subprocess.run([*evaluate, "--metrics-out", str(metrics_file), *errors, *again], check=True)
    metrics = json.loads(metrics_file.read_text())
    log = [json.loads(line) for line in (output / "training_log.jsonl").read_text().splitlines()]
    card = json.loads((output / "extractor.json").read_text())["training"]
    return {
        "train": spec.train or f"{spec.dev} but its last {spec.split} records",
        "dev": spec.dev if not spec.split else f"the last {spec.split} records of {spec.dev}",
        "encoder": spec.encoder,
        "metric": spec.metric,
        "f1_reported": round(metrics["partial_f1" if spec.metric == "partial" else "f1"], 4),
        "published": [dict(zip(("system", "encoder", "f1", "source"), row)) for row in PUBLISHED[dataset(name)]],
        "flags": spec.flags,
        **{
            key: round(metrics[key], 4)
            for key in ("precision", "recall", "f1", "partial_precision", "partial_recall", "partial_f1")
        },
        "thresholds": best_tried(card.get("thresholds")),
        "dev_sentences": metrics["sentences"],
        "epochs": len(log),
        "best_epoch": card["best"]["epoch"],
        "dev_f1_per_epoch": [round(record["f1"], 4) for record in log],
        "train_sentences_per_s_median": statistics.median(r["train_sentences_per_s"] for r in log),
        "train_seconds": round(train_seconds, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, CPU",
    }


def dataset(name: str) -> str:
    """The dataset a run name stands for: the name without its variant."""
    for variant in VARIANTS:
        name = name.removesuffix(variant)
    return name


def markdown(results: dict) -> str:
    """The README's table: our figure beside the published ones."""
    lines = ["| dataset (metric) | triplex, CLI defaults | published (F1 %, encoder, source) |", "|---|---|---|"]
    for name, entry in results.items():
        if name not in RUNS:
            continue
        kind = "partial_" if entry["metric"] == "partial" else ""
        precision, recall = entry[f"{kind}precision"], entry[f"{kind}recall"]
        ours = (
            f"**{100 * entry['f1_reported']:.1f}** (P {100 * precision:.1f}, R {100 * recall:.1f}), "
            f"{entry['encoder'].split('/')[-1]}, {entry['epochs']} epochs, {entry['train_seconds'] / 60:.0f} min CPU"
        )
        published = "; ".join(
            f"{row['system']} {row['f1']} ({row['encoder']}; {row['source']})" for row in entry["published"]
        )
        label = f"{dataset(name)} ({entry['metric']})"
        if entry["flags"]:
            label += f", `{' '.join(entry['flags'])}`"
        lines.append(f"| {label} | {ours} | {published} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--only", nargs="*", choices=sorted(RUNS), default=sorted(RUNS))
    parser.add_argument("--work", type=Path, default=Path("runs"))
    parser.add_argument("--markdown", action="store_true", help="print the README table from the results file")
    parser.add_argument(
        "--trained-in", type=float, metavar="SECONDS", help="evaluate a run already trained in --work, in SECONDS"
    )
    parser.add_argument(
        "--choose-thresholds",
        action="store_true",
        help="a run already trained in --work: choose its thresholds on dev again, then evaluate",
    )
    args = parser.parse_args()
    if args.markdown:
        print(markdown(json.loads(RESULTS.read_text())))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    if not (args.shared / "data").is_dir():
        sys.exit(f"{args.shared}/data not found; pass --shared")
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    for name in args.only:
        trained_in = args.trained_in
        if args.choose_thresholds and trained_in is None:  # no training: the earlier one's time, kept
            trained_in = results[name]["train_seconds"]
        results[name] = run(name, args.shared, args.work, trained_in, args.choose_thresholds)
        RESULTS.write_text(json.dumps(results, indent=2))
        print(json.dumps({name: results[name]}, indent=2))


if __name__ == "__main__":
    main()
