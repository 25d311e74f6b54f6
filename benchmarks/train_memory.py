"""Peak resident memory of training steps, by encoder, sentence length and ``max_batch_tokens``.

    python benchmarks/train_memory.py --encoders ../shared/models/e5-small-multilingual-trimmed \
        ../shared/models/minilm-l6-h384-uncased --lengths 64 128 256

Each setting runs in a fresh process (peak memory is per process): the extractor with AdamW, three
training steps (forward, backward, optimizer) on a batch of 16 sentences of LENGTH tokens, each with a
subject and an object, through the training loop's own ``step_slices``; its peak resident set size
(``ru_maxrss``) goes to benchmarks/results/train_memory.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="+", required=True)
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--max-batch-tokens", type=int, nargs="+", default=[512, 1_000_000])
    parser.add_argument("--relations", type=int, default=50)
    parser.add_argument("--one", nargs=3, metavar=("ENCODER", "LENGTH", "MAX_TOKENS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        encoder, length, tokens = args.one
        print(json.dumps(measure(encoder, int(length), int(tokens), args.relations)))
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
