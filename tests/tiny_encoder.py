"""The tiny randomly initialised BERTs the tests train: a Hugging Face folder built on the spot."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import torch
from tokenizers import BertWordPieceTokenizer
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer
from tokenizers.processors import BertProcessing
from transformers import BertConfig, BertModel

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
