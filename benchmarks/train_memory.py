"""Peak resident memory of training steps, by encoder, sentence length and ``max_batch_tokens``, and of
whole ``triplex train`` runs by number of sentences.

    python benchmarks/train_memory.py --encoders ../shared/models/e5-small-multilingual-trimmed \
        ../shared/models/minilm-l6-h384-uncased --lengths 64 128 256
    python benchmarks/train_memory.py --whole ENCODER TRAIN DEV SCHEMA --sizes 1000 5000 20000 --seconds 240

Each setting runs in a fresh process (peak memory is per process): the extractor with AdamW, three
training steps (forward, backward, optimizer) on a batch of 16 sentences of LENGTH tokens, each with a
subject and an object, through the training loop's own ``step_slices``; its peak resident set size
(``ru_maxrss``) goes to benchmarks/results/train_memory.json. ``--whole``: ``triplex train`` with the CLI's
defaults and one epoch on the first SIZE records of TRAIN (repeated to reach SIZE), stopped after
``--seconds``; its resident memory sampled every half second (peak, and when training starts).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from common import RESULTS, ROOT, machine, merge_results


def measure(encoder: str, length: int, max_batch_tokens: int, relations: int) -> float:
    """Peak resident MB of three training steps (run in this process)."""
    import numpy as np
    import torch

    from triplex.training.network import PointerExtractor, load_encoder
    from triplex.training.settings import TrainSettings
    from triplex.training.targets import Feature
    from triplex.training.train import step_slices

    torch.set_num_threads(1)
    model = PointerExtractor(load_encoder(encoder), relations).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    rng = np.random.default_rng(0)
    features = [Feature(rng.integers(5, 1000, length), {(1, 2): [(0, 4, 5)]}) for _ in range(16)]
    settings = TrainSettings(max_batch_tokens=max_batch_tokens, precision="fp32")
    run = SimpleNamespace(settings=settings, config=SimpleNamespace(relations=range(relations)), mask_id=None)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    for _ in range(3):
        step_slices(run, model, features, torch.device("cpu"), None, scaler, torch.Generator())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def records(path: Path, count: int) -> str:
    """The first ``count`` records of a JSON-list or JSON-lines data file, repeated to reach ``count``."""
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        items = json.loads(text)
        return json.dumps([items[i % len(items)] for i in range(count)], ensure_ascii=False)
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[i % len(lines)] for i in range(count)) + "\n"


def resident_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def whole_run(encoder: str, train: Path, dev: Path, schema: Path, size: int, seconds: float) -> dict:
    """Peak and start-of-training resident MB of ``triplex train`` on ``size`` sentences."""
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / f"train{train.suffix}"
        data.write_text(records(train, size), encoding="utf-8")
        command = [sys.executable, "-m", "triplex", "train", "--train", str(data), "--dev", str(dev), "--schema",
                   str(schema), "--encoder", encoder, "--output", f"{folder}/model", "--epochs", "1"]  # fmt: skip
        log = Path(folder) / "log"
        with open(log, "w") as handle:
            process = subprocess.Popen(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, text=True)
            started, at_start, peak = time.monotonic(), None, 0.0
            while process.poll() is None and time.monotonic() - started < seconds:
                try:
                    rss, peak = resident_mb(process.pid)
                except (FileNotFoundError, ProcessLookupError):  # it has just ended
                    break
                if at_start is None and "precision:" in log.read_text():
                    at_start = rss  # data read, model built: the first step comes next
                time.sleep(0.5)
            finished = process.poll() is not None
            if not finished:
                peak = resident_mb(process.pid)[1]
                process.kill()
            process.wait()
        output = log.read_text()
        if finished and process.returncode != 0:
            raise RuntimeError(output[-2000:])
    return {
        "sentences": size,
        "peak_mb": round(peak),
        "at_training_start_mb": round(at_start or 0),
        "seconds": round(time.monotonic() - started),
        "finished_the_epoch": finished,
        "last_line": output.strip().splitlines()[-1][:200],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="+", default=[])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--max-batch-tokens", type=int, nargs="+", default=[512, 1_000_000])
    parser.add_argument("--relations", type=int, default=50)
    parser.add_argument("--whole", nargs=4, metavar=("ENCODER", "TRAIN", "DEV", "SCHEMA"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--seconds", type=float, default=240)
    parser.add_argument("--one", nargs=3, metavar=("ENCODER", "LENGTH", "MAX_TOKENS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        encoder, length, tokens = args.one
        print(json.dumps(measure(encoder, int(length), int(tokens), args.relations)))
        return
    if args.whole:
        encoder, train, dev, schema = args.whole
        stored = RESULTS / "train_memory.json"
        whole = json.loads(stored.read_text()).get("whole_runs", {}) if stored.is_file() else {}
        for size in args.sizes:
            run = whole_run(encoder, Path(train), Path(dev), Path(schema), size, args.seconds)
            whole[f"{Path(encoder).name}, {Path(train).parent.name}, {size} sentences"] = run
            print(run, flush=True)
            merge_results("train_memory", {"whole_runs": whole, "whole_runs_seconds": args.seconds})
        return
    stored = RESULTS / "train_memory.json"
    results = json.loads(stored.read_text()) if stored.is_file() else {"peak_mb": {}}
    results |= {"machine": f"CPU only: {machine()}", "batch_size": 16, "relations": args.relations}
    for encoder in args.encoders:
        for tokens in args.max_batch_tokens:
            for length in args.lengths:
                command = [sys.executable, __file__, "--encoders", encoder, "--one", encoder, str(length), str(tokens)]
                output = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
                peak = round(json.loads(output.stdout.strip().splitlines()[-1]))
                key = f"{Path(encoder).name}, max_batch_tokens {tokens}, length {length}"
                results["peak_mb"][key] = peak
                print(key, peak, "MB", flush=True)
                merge_results("train_memory", results)


if __name__ == "__main__":
    main()
