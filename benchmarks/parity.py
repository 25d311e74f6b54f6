"""Exported models against PyTorch on real dev sets: identical triples (fp32) and F1 per precision.

    python benchmarks/parity.py --shared ../shared --run webnlg runs/webnlg [--run duie1 runs/duie1]

For each trained checkpoint: exports fp32 and int8, extracts every dev sentence with PyTorch and
with each export, counts sentences whose triples (spans, predicates) differ, and scores each against
the gold triples. Writes benchmarks/results/parity.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import machine, merge_results

from triplex.model.extractor import identity, open_export
from triplex.model.runtime import is_export
from triplex.training.data import read_dataset
from triplex.training.evaluate import score
from triplex.training.export import export
from triplex.training.network import torch_extractor

DEV = {
    "webnlg": "data/webnlg_star_casrel/dev_triples.json",
    "duie1": "data/duie1_lic2019/dev_data.head300.json",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--run", nargs=2, action="append", metavar=("NAME", "CHECKPOINT"), required=True)
    parser.add_argument("--work", type=Path, default=Path("runs/exports"))
    args = parser.parse_args()
    for name, checkpoint in args.run:
        checkpoint = Path(checkpoint)
        examples = read_dataset(args.shared / DEV[name])[0]
        texts, gold = [e.text for e in examples], [e.triples for e in examples]
        reference = torch_extractor(checkpoint).extract_all(texts)
        entry = {"dev": DEV[name], "sentences": len(texts), "machine": f"CPU only: {machine()}"}
        entry["pytorch"] = {
            key: round(score(gold, [r.triples for r in reference])[key], 4) for key in ("f1", "partial_f1")
        }
        for precision in ("fp32", "int8"):
            folder = args.work / f"{checkpoint.name}-{precision}"
            if not is_export(folder):
                export(checkpoint, folder, precision)
            found = open_export(folder, "cpu").extract_all(texts)
            differing = sum(
                [identity(t) for t in r.triples] != [identity(t) for t in f.triples] for r, f in zip(reference, found)
            )
            metrics = score(gold, [f.triples for f in found])
            entry[precision] = {
                "sentences_with_different_triples": differing,
                "f1": round(metrics["f1"], 4),
                "partial_f1": round(metrics["partial_f1"], 4),
                "f1_points_vs_pytorch": round(100 * (metrics["f1"] - entry["pytorch"]["f1"]), 2),
            }
            print(name, precision, entry[precision], flush=True)
        merge_results("parity", {name: entry})


if __name__ == "__main__":
    main()
