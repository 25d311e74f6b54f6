"""Tokenization with character offsets into the original text (no torch: the service uses this too)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

TOKENIZER_FILE = "tokenizer.json"
# Han, kana, CJK punctuation and full-width forms: one token per character, as Chinese BERT does.
CJK_PATTERN = (
    r"[\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\ufe30-\ufe4f"
    r"\uff00-\uffef\U00020000-\U0002fa1f]"
)


@dataclass
class Encoded:
    """One tokenized text. ``starts``/``ends`` are character offsets per token, -1 for special tokens."""

    text: str
    ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray

    @property
    def content(self) -> np.ndarray:
        """True for tokens that cover text (not [CLS], [SEP] or padding)."""
        return self.starts >= 0

    def token_span(self, start: int, end: int) -> tuple[int, int] | None:
        """The tokens that begin exactly at ``start`` and end exactly at ``end``, if the boundaries align."""
        first = np.flatnonzero(self.starts == start)
        last = np.flatnonzero(self.ends == end)
        if first.size == 0:
            return None
        last = last[last >= first[0]]
        return (int(first[0]), int(last[0])) if last.size else None


def split_cjk_characters(tokenizer: Tokenizer) -> Tokenizer:
    """Make a SentencePiece/other tokenizer cut every CJK character on its own, so entity boundaries
    in Chinese text always fall between tokens (BERT's own pre-tokenizer already does this)."""
    spec = json.loads(tokenizer.to_str())
    pre = spec.get("pre_tokenizer")
    if pre is None or pre.get("type") == "BertPreTokenizer":
        return tokenizer
    if pre.get("type") == "Metaspace":  # add the word-start marker once per text, not before every character
        pre = {key: value for key, value in pre.items() if key != "add_prefix_space"} | {"prepend_scheme": "first"}
    split = {"type": "Split", "pattern": {"Regex": CJK_PATTERN}, "behavior": "Isolated", "invert": False}
    spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [split, pre]}
    return Tokenizer.from_str(json.dumps(spec))


def load_tokenizer(directory: Path) -> Tokenizer:
    path = Path(directory) / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the model folder has no fast tokenizer file")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


def to_encoded(text: str, encoding: Encoding) -> Encoded:
    special = np.asarray(encoding.special_tokens_mask, dtype=bool)
    starts = np.full(len(encoding.ids), -1, dtype=np.int64)
    ends = np.full(len(encoding.ids), -1, dtype=np.int64)
    for index, (start, end) in enumerate(encoding.offsets):
        # SentencePiece offsets include the space before a word; entities never start with one
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if not special[index] and end > start:
            starts[index], ends[index] = start, end
    return Encoded(text, np.asarray(encoding.ids, dtype=np.int64), starts, ends)


def encode_windows(tokenizer: Tokenizer, texts: list[str], max_length: int, stride: int) -> list[list[Encoded]]:
    """Tokenize ``texts``; a text longer than ``max_length`` tokens (special tokens included) becomes
    several windows that share ``stride`` tokens with their neighbours. Offsets are into the full text."""
    if not 0 <= stride < max_length - 2:
        raise ValueError(f"window stride {stride} must be at least 0 and below max length - 2 ({max_length - 2})")
    current = tokenizer.truncation
    if current is None or (current["max_length"], current["stride"]) != (max_length, stride):
        # set once, not per call: the service tokenizes in several threads with one tokenizer
        tokenizer.enable_truncation(max_length, stride=stride)
    return [
        [to_encoded(text, window) for window in (encoding, *encoding.overflowing)]
        for text, encoding in zip(texts, tokenizer.encode_batch(texts))
    ]


def encode(tokenizer: Tokenizer, texts: list[str], max_length: int) -> list[Encoded]:
    """Tokenize ``texts``, cutting each at ``max_length`` tokens (training: one window per sentence)."""
    return [windows[0] for windows in encode_windows(tokenizer, texts, max_length, 0)]


def pad(sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack token ids padded to the longest: ``input_ids`` and ``attention_mask``, both int64."""
    length = max(len(ids) for ids in sequences)
    input_ids = np.zeros((len(sequences), length), dtype=np.int64)
    attention_mask = np.zeros((len(sequences), length), dtype=np.int64)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask
