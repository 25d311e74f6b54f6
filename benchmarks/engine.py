"""Engine speed: PyTorch eager against ONNX Runtime fp32 and int8 on the same sentences and model.

    python benchmarks/engine.py --checkpoint runs/webnlg --shared ../shared [--sentences 200] [--repeats 3]

Exports the checkpoint (fp32, int8) into --work if not there yet, then times the whole path (tokenize,
windows, graph 1, graph 2, decode) at batch 1 and 32 on WebNLG* dev sentences, the settings' runs
interleaved. Writes
benchmarks/results/engine.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import onnxruntime as ort
import torch
from common import machine, merge_results, rate

from triplex.model.extractor import open_export
from triplex.model.runtime import is_export
from triplex.training.export import export
from triplex.training.network import torch_extractor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("runs/webnlg"))
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--work", type=Path, default=Path("runs/exports"))
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    dev = json.loads((args.shared / "data/webnlg_star_casrel/dev_triples.json").read_text())
    texts = [item["text"] for item in dev[: args.sentences]]

    extractors = {"pytorch": lambda batch: torch_extractor(args.checkpoint, batch_size=batch)}
    for precision in ("fp32", "int8"):
        folder = args.work / f"{args.checkpoint.name}-{precision}"
        if not is_export(folder):
            export(args.checkpoint, folder, precision, calibration_texts=texts)
        extractors[f"onnx-{precision}"] = lambda batch, folder=folder: open_export(folder, "cpu", batch_size=batch)

    # Runs interleave (each repeat times every setting once) so a slow spell of a shared machine
    # falls on all settings alike instead of on whichever ran then.
    runners = {f"{name}-batch{batch}": make(batch) for name, make in extractors.items() for batch in (1, 32)}
    rates: dict[str, list[float]] = {key: [] for key in runners}
    for extractor in runners.values():
        extractor.extract_all(texts[:32])  # warm-up
    for _ in range(args.repeats):
        for key, extractor in runners.items():
            rates[key].append(rate(lambda extractor=extractor: len(extractor.extract_all(texts)), 1)[0])
            print(key, round(rates[key][-1], 1), flush=True)
    figures = {
        key: {"sentences_per_s": round(statistics.median(runs), 1), "runs": [round(r, 1) for r in runs]}
        for key, runs in rates.items()
    }
    for batch in (1, 32):
        fp32, int8 = figures[f"onnx-fp32-batch{batch}"], figures[f"onnx-int8-batch{batch}"]
        figures[f"speedup-onnx-fp32-vs-pytorch-batch{batch}"] = round(
            fp32["sentences_per_s"] / figures[f"pytorch-batch{batch}"]["sentences_per_s"], 2
        )
        figures[f"speedup-int8-vs-fp32-batch{batch}"] = round(int8["sentences_per_s"] / fp32["sentences_per_s"], 2)
    result = {
        "model": str(args.checkpoint),
        "sentences": len(texts),
        "data": "WebNLG* dev (first sentences)",
        "device": f"CPU only: {machine()}",
        "provider": "CPUExecutionProvider",
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": ort.__version__,
        **figures,
    }
    merge_results("engine", {"cpu": result})
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
