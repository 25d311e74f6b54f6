"""Host cost per sentence: everything the service does besides the ONNX Runtime calls, by stage, on one core.

    python benchmarks/host_cost.py --export runs/exports/webnlg-fp32 --checkpoint runs/webnlg [--repeats 5]

WebNLG* dev sentences in batches of 64 through the WebNLG* MiniLM model. The graphs run once per batch
and their outputs are recorded; the timed stages then replay them, so no ONNX Runtime time is counted:
tokenization (against the bare ``tokenizers`` ``encode_batch`` on the same texts), padding, decoding
(subject and object spans), triples with window merging, and the JSON response. The stages of every
repeat run one after the other (interleaved), and each figure is the median over repeats. Then the same
for random-weight exports with 171 and 1,000 relations: decoding, and graph 2 itself (which now
thresholds inside). Like the server's front ends after start-up, the process moves its long-lived
objects out of the garbage collector's way (``gc.freeze``) before timing; PyTorch is imported only for
the large-schema exports, after the WebNLG* figures. Writes benchmarks/results/host_cost.json.
"""

from __future__ import annotations

import os

os.environ["RAYON_NUM_THREADS"] = "1"  # tokenizers' thread pool: one core, like everything else here
os.sched_setaffinity(0, {0})

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import orjson  # noqa: E402
from common import ROOT, Recorder, Replay, machine, merge_results  # noqa: E402

from triplex.model.decode import find_spans  # noqa: E402
from triplex.model.extractor import Extractor, open_export  # noqa: E402
from triplex.model.schema import Relation  # noqa: E402
from triplex.model.tokenize import TOKENIZER_FILE, pad_windows  # noqa: E402

BATCH = 64


def stages(extractor: Extractor, texts: list[str], recorder: Recorder) -> dict[str, float]:
    """Seconds per stage for all ``texts``, in batches of BATCH."""
    tokenizer, config, thresholds = extractor.tokenizer, extractor.config, extractor.thresholds
    replay = Replay(recorder)
    seconds = dict.fromkeys(("bare_encode_batch", "tokenize", "pad", "decode", "triples", "response"), 0.0)
    clock = [time.perf_counter()]

    def lap(stage: str) -> None:
        clock.append(time.perf_counter())
        seconds[stage] += clock[-1] - clock[-2]

    for begin in range(0, len(texts), BATCH):
        chunk = texts[begin : begin + BATCH]
        clock.append(time.perf_counter())
        tokenizer.encode_batch(chunk)
        lap("bare_encode_batch")
        windows = extractor.windows(chunk)
        lap("tokenize")
        flat = [window for text_windows in windows for window in text_windows]
        batch = pad_windows([window.ids for window in flat], [window.starts for window in flat])
        lap("pad")
        spans = find_spans(batch, replay, thresholds, len(config.relations))
        lap("decode")
        found = extractor.triples(windows, spans)
        lap("triples")
        b",".join(orjson.dumps(extraction.to_dict()) for extraction in found)  # as the service's front ends do
        lap("response")
    return seconds


def record(extractor: Extractor, texts: list[str]) -> Recorder:
    recorder = Recorder(extractor.runtime)
    for begin in range(0, len(texts), BATCH):
        flat = [window for text_windows in extractor.windows(texts[begin : begin + BATCH]) for window in text_windows]
        batch = pad_windows([window.ids for window in flat], [window.starts for window in flat])
        find_spans(batch, recorder, extractor.thresholds, len(extractor.config.relations))
    return recorder


def measure(extractor: Extractor, texts: list[str], repeats: int) -> dict:
    recorder = record(extractor, texts)
    gc.freeze()
    runs = [stages(extractor, texts, recorder) for _ in range(repeats)]
    per_sentence = {
        stage: round(1e6 * statistics.median(run[stage] for run in runs) / len(texts), 2) for stage in runs[0]
    }
    per_sentence["after_tokenization"] = round(
        sum(per_sentence[stage] for stage in ("pad", "decode", "triples", "response")), 2
    )
    per_sentence["tokenize_vs_bare"] = round(per_sentence["tokenize"] / per_sentence["bare_encode_batch"], 3)
    return per_sentence


def large_schema(checkpoint: Path, relations: int, folder: Path) -> Path:
    """The checkpoint's encoder with a random object head of ``relations`` relations, exported (fp32)."""
    from torch import nn

    from triplex.training.export import export
    from triplex.training.network import load_extractor, save_extractor

    model, config = load_extractor(checkpoint)
    model.object_head = nn.Linear(model.object_head.in_features, 2 * relations)
    nn.init.normal_(model.object_head.weight, std=0.02)  # BERT's initialisation: an untrained but sane head
    nn.init.zeros_(model.object_head.bias)
    model.num_relations = relations
    config.relations = [Relation(f"relation_{index}") for index in range(relations)]
    save_extractor(model, config, folder / "checkpoint")
    shutil.copy(checkpoint / TOKENIZER_FILE, folder / "checkpoint" / TOKENIZER_FILE)
    export(folder / "checkpoint", folder / "export", "fp32", log=lambda message: None)
    return folder / "export"


def graph2_seconds(extractor: Extractor, texts: list[str]) -> tuple[float, int, int]:
    """Seconds in graph 2 for all texts, the candidate positions it returned, and its calls."""
    recorder = record(extractor, texts)
    candidates = sum(len(positions) for positions, _ in recorder.object_outputs)
    return recorder.object_seconds, candidates, len(recorder.object_outputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, default=ROOT / "runs/exports/webnlg-fp32")
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "runs/webnlg", help="for the large schemas")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--relations", type=int, nargs="*", default=[171, 1000], help="random-weight schemas")
    args = parser.parse_args()
    texts = [
        item["text"] for item in json.loads((args.shared / "data/webnlg_star_casrel/dev_triples.json").read_text())
    ]
    result: dict = {
        "machine": f"CPU only, pinned to one core: {machine()}",
        "data": f"WebNLG* dev, {len(texts)} sentences, batches of {BATCH}",
        "repeats": args.repeats,
        "unit": "microseconds per sentence (median of the repeats)",
    }
    with tempfile.TemporaryDirectory() as scratch:
        result["webnlg_minilm"] = measure(open_export(args.export, "cpu", threads=1), texts, args.repeats)
        print("webnlg", result["webnlg_minilm"], flush=True)
        for relations in args.relations:
            export = large_schema(args.checkpoint, relations, Path(scratch) / str(relations))
            extractor = open_export(export, "cpu", threads=1)
            figures = measure(extractor, texts, args.repeats)
            seconds, candidates, calls = graph2_seconds(extractor, texts)
            result[f"random_{relations}_relations"] = {
                "decode_us": figures["decode"],
                "triples_us": figures["triples"],
                "graph2_onnxruntime_us": round(1e6 * seconds / len(texts), 1),
                "graph2_candidates_returned": candidates,
                "graph2_calls": calls,
            }
            print(relations, result[f"random_{relations}_relations"], flush=True)
    merge_results("host_cost", {"cpu": result})
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
