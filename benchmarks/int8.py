"""int8 on the CPU: F1, speed, and whether a text's answer depends on the texts batched beside it.

    python benchmarks/int8.py --model runs/small/conll04_922_init_42 --dev ../shared/data/conll04/conll04_dev.json \
        --calibration ../shared/data/conll04/conll04_train.json --name conll04

Exports the checkpoint as fp32, as the earlier dynamic int8 (one activation scale per batch), and as
``triplex export``'s int8 (static: activation scales calibrated once on ``--calibration`` sentences), then for
each: dev F1 at the model's thresholds, sentences/s at batch 32 (median of 3, one thread per core), and
each dev text extracted alone against inside shuffled batches of 64: the texts whose triples differ and
the largest score difference. Results go to benchmarks/results/int8.json under ``--name``.
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from pathlib import Path

import onnx
from common import ROOT, machine, merge_results, rate

from triplex.model.extractor import identity, open_export
from triplex.model.schema import ENCODER_FILE, OBJECTS_FILE
from triplex.training.data import read_dataset
from triplex.training.evaluate import score
from triplex.training.export import export


def quantize_dynamic(path: Path) -> None:
    """The int8 the project shipped before: dynamic quantization of the matrix multiplications and the fused
    attention (one activation scale per batch, computed as the batch runs)."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as quantize

    target = path.with_suffix(".int8.onnx")
    quantize(str(path), str(target), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Attention"],
             per_channel=True, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})  # fmt: skip
    target.replace(path)


def batch_dependence(folder: Path, texts: list[str], seed: int = 0) -> dict:
    """Each text alone against the same text in shuffled batches of 64."""
    alone = [open_export(folder, "cpu", batch_size=1)([text])[0] for text in texts]
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    batched = open_export(folder, "cpu", batch_size=64)([texts[i] for i in order])
    together = [None] * len(texts)
    for position, index in enumerate(order):
        together[index] = batched[position]
    differing, worst = 0, 0.0
    for one, other in zip(alone, together):
        ids_one, ids_other = {identity(t): t.score for t in one}, {identity(t): t.score for t in other}
        differing += ids_one.keys() != ids_other.keys()
        shared = ids_one.keys() & ids_other.keys()
        worst = max([worst, *(abs(ids_one[k] - ids_other[k]) for k in shared)])
    return {"texts_with_other_triples": differing, "largest_score_difference": float(worst)}


def speed(folder: Path, texts: list[str], repeats: int = 3) -> float:
    extractor = open_export(folder, "cpu", batch_size=32)
    extractor(texts[:64])  # warm-up
    return rate(lambda: len(extractor(texts)), repeats)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--dev", required=True)
    parser.add_argument("--calibration", required=True, help="sentences whose activations set the static scales")
    parser.add_argument("--calibration-size", type=int, default=512)
    parser.add_argument("--name", required=True)
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "int8")
    parser.add_argument("--variants", nargs="+", default=["fp32", "int8-dynamic", "int8"])
    args = parser.parse_args()
    dev = read_dataset(args.dev)[0]
    texts = [example.text for example in dev]
    calibration = [example.text for example in read_dataset(args.calibration)[0]][: args.calibration_size]
    results = {"machine": f"CPU only: {machine()}", "model": str(args.model), "dev_sentences": len(texts)}
    for variant in args.variants:
        folder = args.work / f"{args.name}-{variant}"
        shutil.rmtree(folder, ignore_errors=True)
        started = time.perf_counter()
        if variant == "int8-dynamic":
            export(args.model, folder, "fp32", log=lambda message: None)
            quantize_dynamic(folder / ENCODER_FILE)
            quantize_dynamic(folder / OBJECTS_FILE)
        else:
            export(args.model, folder, variant, log=lambda message: None, calibration_texts=calibration)
        seconds = time.perf_counter() - started
        found = open_export(folder, "cpu", batch_size=32)(texts)
        figures = score([e.triples for e in dev], found)
        row = {
            "f1": round(figures["f1"], 4),
            "precision": round(figures["precision"], 4),
            "recall": round(figures["recall"], 4),
            "sentences_per_s": round(speed(folder, texts), 1),
            "export_seconds": round(seconds, 1),
            **batch_dependence(folder, texts),
        }
        results[variant] = row
        print(variant, row, flush=True)
    merge_results("int8", {args.name: results})


if __name__ == "__main__":
    main()
