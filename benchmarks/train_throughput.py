"""Training throughput of the real loop (forward, backward, AdamW, EMA) in sentences per second.

    python benchmarks/train_throughput.py --shared ../shared [--sentences 2000] [--batch-size 16] [--repeats 3]
    python benchmarks/train_throughput.py --shared ../shared --embeddings frozen,trained   # interleaved

Batches are padded to their longest sentence. Writes benchmarks/results/train_throughput.json (with
frozen word embeddings, or both, under keys ending in -frozen-embeddings and -trained-embeddings).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
from pathlib import Path

import torch
from common import ROOT, machine, merge_results

from triplex.training.data import ReadSummary, read_dataset, read_schema
from triplex.training.settings import TrainSettings
from triplex.training.train import LOG_FILE, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--encoder", default="models/minilm-l6-h384-uncased")
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", help="fp32 or bf16 (autocast)")
    parser.add_argument(
        "--embeddings", default="trained", help="trained, frozen, or both as frozen,trained (measured in turn)"
    )
    args = parser.parse_args()
    variants = args.embeddings.split(",")
    if not set(variants) <= {"frozen", "trained"}:
        parser.error(f"--embeddings {args.embeddings}: give frozen, trained or frozen,trained")
    data = args.shared / "data" / "webnlg_star_casrel"
    # a seeded random sample: the file's first sentences are longer than its average (39 vs 31 tokens)
    examples = random.Random(0).sample(read_dataset(data / "train_triples.json")[0], args.sentences)
    relations = read_schema(data / "rel2id.json")
    rates: dict[str, list[float]] = {variant: [] for variant in variants}
    for repeat in range(args.repeats):
        for variant in variants:
            with tempfile.TemporaryDirectory() as output:
                settings = TrainSettings(
                    epochs=1,
                    batch_size=args.batch_size,
                    device=args.device,
                    seed=repeat,
                    precision=args.precision,
                    freeze_embeddings=variant == "frozen",
                )
                encoder = str(args.shared / args.encoder)
                train(examples, examples[:32], relations, encoder, Path(output), settings, ReadSummary())
                log = json.loads((Path(output) / LOG_FILE).read_text().splitlines()[0])
                rates[variant].append(log["train_sentences_per_s"])
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    on_gpu = device.startswith("cuda")
    for variant, runs in rates.items():
        result = {
            "encoder": args.encoder,
            "precision": args.precision,
            "batch_size": args.batch_size,
            "word_embeddings": variant,
            "sentences_per_epoch": len(examples),
            "measured": "one epoch, forward + backward + AdamW + EMA, batches padded to their longest",
            "sentences_per_s_median": round(statistics.median(runs), 1),
            "sentences_per_s_runs": [round(rate, 1) for rate in runs],
            "device": torch.cuda.get_device_name() if on_gpu else f"CPU only: {machine()}",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }
        key = f"{Path(args.encoder).name}-bs{args.batch_size}-{'gpu' if on_gpu else 'cpu'}-{args.precision}"
        suffix = f"-{variant}-embeddings" if len(variants) > 1 or variant == "frozen" else ""  # trained: the default
        merge_results("train_throughput", {key + suffix: result})
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
