"""Build the demo model with no download: a small BERT trained from scratch on generated sentences.

    python -m triplex.training.demo --output demo

Writes demo/encoder (the blank encoder and its WordPiece vocabulary), demo/data (train/dev JSONL and
schema), demo/checkpoint, demo/export (fp32 ONNX) and demo/fresh_metrics.json: the F1 on sentences
generated with another seed, which the model has never seen.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from tokenizers import BertWordPieceTokenizer
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer
from tokenizers.processors import BertProcessing
from transformers import BertConfig, BertModel

from triplex.training.data import Summary
from triplex.training.sample import RELATIONS, generate, write_jsonl, write_schema

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def word_piece_vocabulary(texts: list[str], size: int) -> dict[str, int]:
    """Every character (alone and as a ``##`` continuation), then the most frequent words: the same
    vocabulary every run (the tokenizers library's trainer breaks ties differently in each process)."""
    normalizer, pre_tokenizer = BertNormalizer(lowercase=True), BertPreTokenizer()
    words = Counter(
        word for text in texts for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
    )
    characters = sorted({character for word in words for character in word})
    tokens = SPECIAL_TOKENS + characters + [f"##{character}" for character in characters]
    frequent = [word for word, _ in sorted(words.items(), key=lambda item: (-item[1], item[0])) if len(word) > 1]
    tokens += frequent[: max(0, size - len(tokens))]
    return {token: index for index, token in enumerate(dict.fromkeys(tokens))}


def build_encoder(
    folder: Path,
    texts: list[str],
    hidden: int = 64,
    layers: int = 2,
    heads: int = 2,
    vocab_size: int = 1500,
    max_positions: int = 128,
    seed: int = 0,
) -> Path:
    """A randomly initialised BERT with a WordPiece vocabulary learnt from ``texts``: a Hugging Face
    folder that ``--encoder`` accepts like any other."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = BertWordPieceTokenizer(word_piece_vocabulary(texts, vocab_size), lowercase=True)
    tokenizer.post_processor = BertProcessing(
        ("[SEP]", tokenizer.token_to_id("[SEP]")), ("[CLS]", tokenizer.token_to_id("[CLS]"))
    )
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True})
    )
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 4,
        max_position_embeddings=max_positions,
    )
    torch.manual_seed(seed)
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    return folder


def build_demo(output: Path, sentences: int = 3000, epochs: int = 6, log=print) -> dict:
    from triplex.model.export import export
    from triplex.training.cli import load_model
    from triplex.training.evaluate import score
    from triplex.training.settings import TrainSettings
    from triplex.training.train import train

    started = time.perf_counter()
    train_examples, dev_examples = generate(sentences, seed=1), generate(200, seed=2)
    fresh = generate(500, seed=3)  # never seen: for the figure reported at the end
    data = output / "data"
    data.mkdir(parents=True, exist_ok=True)
    write_jsonl(train_examples, data / "train.jsonl")
    write_jsonl(dev_examples, data / "dev.jsonl")
    write_jsonl(fresh, data / "fresh.jsonl")
    write_schema(data / "schema.jsonl")
    log(f"1/4 sample data: {sentences} training sentences in {data}")
    encoder = build_encoder(output / "encoder", [e.text for e in train_examples], hidden=128, layers=2, heads=4)
    log("2/4 training a 2-layer, 128-wide BERT from scratch")
    settings = TrainSettings(
        epochs=epochs, batch_size=32, learning_rate=1e-3, head_learning_rate=2e-3, ema_decay=0.99, max_length=128
    )
    train(train_examples, dev_examples, RELATIONS, str(encoder), output / "checkpoint", settings, Summary(), log)
    log("3/4 exporting to ONNX")
    export(output / "checkpoint", output / "export", "fp32", log=lambda message: None)
    log("4/4 checking on freshly generated sentences")
    found = load_model(str(output / "export"), "cpu").extract([e.text for e in fresh])
    metrics = score([e.triples for e in fresh], [f.triples for f in found])
    figures = {key: round(metrics[key], 4) for key in ("precision", "recall", "f1")} | {
        "fresh_sentences": len(fresh),
        "build_seconds": round(time.perf_counter() - started, 1),
    }
    (output / "fresh_metrics.json").write_text(json.dumps(figures, indent=2))
    log(f"demo model ready in {output / 'export'}: F1 {figures['f1']:.4f} on {len(fresh)} unseen sentences")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("demo"))
    parser.add_argument("--sentences", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    build_demo(args.output, args.sentences, args.epochs, lambda message: print(message, file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
