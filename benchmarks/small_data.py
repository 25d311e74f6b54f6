"""Learning curves on a user's few sentences: trained from scratch, and from a starting point (``--init-from``).

    python benchmarks/small_data.py --set duie1 --start runs/starts/zh-duie2 --sizes 200 500 1000 2601 --epochs 10

For each size, the first N training sentences of the set (the same N for both runs), one ``triplex train``
from the plain encoder and one from the starting point, with the same settings and epochs (the budget),
one after the other; the kept epoch's dev F1 (at the thresholds chosen on dev) goes into
benchmarks/results/small_data.json as ``{SET: {"scratch": {N: F1}, "init": {N: F1}, "init_from": ...}}``,
with each run's minutes beside it. The starting point must not have seen the set; its model card says
what it was trained on.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS, ROOT, machine, merge_results

from triplex.model.schema import ExtractorConfig
from triplex.training.start import helper_labels

# the `triplex train` flags a run may set beside the curve's own (--lr, --head-lr, ...); recorded as MODE@NAME=VALUE
RATES = ("lr", "head_lr", "subject_distance", "mask_rate", "batch_size")
EPOCHS = 10  # the curves' budget: every run of a curve trains this many epochs

SETS = {  # training file, dev file, schema, encoder (under ../shared)
    "duie1": (
        "data/duie1_lic2019/train_data.sample2601.json",
        "data/duie1_lic2019/dev_data.head300.json",
        "data/duie1_lic2019/all_50_schemas",
        "models/e5-small-multilingual-trimmed",
    ),
    "conll04": (
        "data/conll04/conll04_train.json",
        "data/conll04/conll04_dev.json",
        "data/conll04/conll04_types.json",
        "models/minilm-l6-h384-uncased",
    ),
    "webnlg_star": (
        "data/webnlg_star_casrel/train_triples.json",
        "data/webnlg_star_casrel/dev_triples.json",
        "data/webnlg_star_casrel/rel2id.json",
        "models/minilm-l6-h384-uncased",
    ),
}


def subset(source: Path, count: int, target: Path) -> Path:
    """The first ``count`` sentences of a JSON lines or JSON list file, in the same layout."""
    text = source.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        target.write_text(json.dumps(json.loads(text)[:count], ensure_ascii=False), encoding="utf-8")
    else:
        target.write_text("".join(line + "\n" for line in text.splitlines()[:count]), encoding="utf-8")
    return target


def train(args: argparse.Namespace, train_file: Path, output: Path, start: Path | None, seed: int) -> dict:
    data, dev, schema, encoder = SETS[args.set]
    command = [sys.executable, "-m", "triplex", "train", "--train", str(train_file), "--dev", str(args.shared / dev),
               "--schema", str(args.shared / schema), "--encoder", str(args.shared / encoder), "--output", str(output),
               "--epochs", str(args.epochs), "--seed", str(seed), "--overwrite", "--quiet"]  # fmt: skip
    if start is not None:
        command += ["--init-from", str(start)] + ([] if args.any_relation else ["--no-any-relation"])
    for name in RATES:
        if getattr(args, name) is not None:
            command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    training = json.loads((output / "extractor.json").read_text())["training"]
    return {"f1": f1(training["best"]), "epoch": training["best"]["epoch"],
            "minutes": round((time.perf_counter() - started) / 60, 1),
            "per_epoch": [f1(epoch) for epoch in training["epochs"]]}  # fmt: skip


def f1(record: dict) -> float:
    """An epoch's dev F1 at the thresholds chosen on dev."""
    return round(record.get("f1_at_chosen_thresholds", record["f1"]), 4)


def suffix(args: argparse.Namespace, mode: str) -> str:
    """What sets a run apart from the curve's own runs (the curve's start, the CLI's learning rates, EPOCHS
    epochs)."""
    parts = [f"start={args.start_name}"] if args.start_name and mode == "init" else []
    any_relation = mode == "init" and args.any_relation and helper_labels(ExtractorConfig.load(args.start), [])
    parts += ["any"] if any_relation else []
    parts += [f"{name}={getattr(args, name):g}" for name in RATES if getattr(args, name) is not None]
    parts += [f"epochs={args.epochs}"] if args.epochs != EPOCHS else []
    return "".join(f"@{part}" for part in parts)


def trained_on(start: Path, card: dict) -> list[str]:
    """The public files a starting point was trained on: benchmarks/starts.py lists them beside its
    combined training file; a start trained on one file names it in its model card."""
    sources = start.with_name(start.name + ".data") / "sources.json"
    if sources.is_file():
        return json.loads(sources.read_text())
    return [f["path"] for f in card["files"] if f["role"] == "train"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=SETS, required=True)
    parser.add_argument("--start", type=Path, required=True, help="a trained model folder that did not see --set")
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 500, 1000])
    parser.add_argument(
        "--epochs",
        type=int,
        default=EPOCHS,
        help=f"the same for every run: the budget; other than {EPOCHS}: recorded as MODE@epochs=N",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--lr", type=float, help="encoder learning rate (default: the CLI's); recorded as MODE@lr=LR")
    parser.add_argument(
        "--head-lr", type=float, help="heads' learning rate (default: the CLI's); recorded as MODE@head_lr=LR"
    )
    parser.add_argument(
        "--subject-distance", type=int, help="triplex train's (default 0); recorded as MODE@subject_distance=N"
    )
    parser.add_argument("--mask-rate", type=float, help="triplex train's (default 0); recorded as MODE@mask_rate=R")
    parser.add_argument("--batch-size", type=int, help="triplex train's (default 16); recorded as MODE@batch_size=N")
    parser.add_argument(
        "--no-any-relation",
        dest="any_relation",
        action="store_false",
        help="triplex train's: the start's any-object relation not trained beside the set's; else recorded as init@any",
    )
    parser.add_argument("--start-name", help="another start than the curve's: its runs are recorded as init@start=NAME")
    parser.add_argument("--modes", nargs="+", choices=("scratch", "init"), default=["scratch", "init"])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "small")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    card = json.loads((args.start / "extractor.json").read_text())["training"]
    stored = RESULTS / "small_data.json"
    results = (json.loads(stored.read_text()) if stored.is_file() else {}).get(args.set, {})
    # the last epoch's number: a start taken on with --resume from a state without records lists only its new epochs
    epochs = max((record["epoch"] for record in card["epochs"]), default=0)
    start = {"path": str(args.start), "trained_on": trained_on(args.start, card), "epochs": epochs,
             "dev_f1": f1(card["best"])}  # fmt: skip
    records = results.setdefault("starts", {}) if args.start_name else results
    name = args.start_name or "init_from"
    earlier = records.get(name, {})
    if earlier.get("path") == start["path"]:  # what the start was trained on, once known, stays (its files may be gone)
        start["trained_on"] = earlier.get("trained_on", start["trained_on"])
    records[name] = {**earlier, **start}  # a note written beside the record stays
    results |= {
        "epochs": EPOCHS,
        "machine": f"CPU only: {machine()}",
    }
    for size in args.sizes:
        train_file = subset(args.shared / SETS[args.set][0], size, args.work / f"{args.set}_{size}.json")
        for mode in args.modes:
            for seed in args.seeds:
                key = mode + suffix(args, mode)
                output = args.work / f"{args.set}_{size}_{key}_{seed}"
                run = train(args, train_file, output, args.start if mode == "init" else None, seed)
                results.setdefault(f"{key}_runs", {}).setdefault(str(size), {})[str(seed)] = run
                runs = results[f"{key}_runs"][str(size)].values()
                results.setdefault(key, {})[str(size)] = round(statistics.median(r["f1"] for r in runs), 4)
                print(args.set, size, key, seed, run, flush=True)
                merge_results("small_data", {args.set: results})


if __name__ == "__main__":
    main()
