"""Tokenization with character offsets into the original text, windows for long texts, and padding."""

from __future__ import annotations

import json
import re
import weakref
from dataclasses import dataclass
from itertools import accumulate, chain
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, normalizers
from tokenizers.pre_tokenizers import BertPreTokenizer

TOKENIZER_FILE = "tokenizer.json"
# Han, kana, CJK punctuation and full-width forms: one token per character, as Chinese BERT does.
# Written for the tokenizers library's regex engine (Oniguruma): \x{...}; it reads "\U00020000" as
# something else, and the class then matched ASCII letters and digits too.
CJK_PATTERN = (
    r"[\x{2e80}-\x{2fdf}\x{3000}-\x{303f}\x{3040}-\x{30ff}\x{3400}-\x{4dbf}\x{4e00}-\x{9fff}"
    r"\x{f900}-\x{faff}\x{fe30}-\x{fe4f}\x{ff00}-\x{ffef}\x{20000}-\x{2fa1f}]"
)


def is_word_char(char: str) -> bool:
    """Letters and digits of alphabetic scripts; CJK characters stand alone as words."""
    return char.isalnum() and ord(char) < 0x2E80


def whole_words(text: str, start: int, end: int) -> tuple[int, int]:
    """The span ``text[start:end]`` widened to the whole words it cuts, if it cuts any."""
    while start > 0 and is_word_char(text[start - 1]) and is_word_char(text[start]):
        start -= 1
    while end < len(text) and is_word_char(text[end - 1]) and is_word_char(text[end]):
        end += 1
    return start, end


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
    """Make a SentencePiece/other tokenizer cut every CJK character and every punctuation mark on its own,
    so entity boundaries in Chinese text always fall between tokens (BERT's own pre-tokenizer already does
    this). Punctuation counts because the normalizer runs first: it turns "（" into "(", and "（1910" then
    became one piece, "(19", so the year "1910" began inside a token."""
    spec = json.loads(tokenizer.to_str())
    pre = spec.get("pre_tokenizer")
    if pre is None or pre.get("type") == "BertPreTokenizer":
        return tokenizer
    # After the encoder's own pre-tokenizer: SentencePiece's word-start marker then comes once per word,
    # as in pretraining, not before every character (which doubled the length of Chinese text).
    # A word's marker (U+2581) stays with its first character, which is what the vocabulary holds.
    piece = r"\x{2581}?(?:" + CJK_PATTERN + r"|\p{P})"
    split = {"type": "Split", "pattern": {"Regex": piece}, "behavior": "Isolated", "invert": False}
    spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [pre, split]}
    return Tokenizer.from_str(json.dumps(spec))


SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate(text: str) -> str | None:
    """Why ``text`` cannot be tokenized, or None: half of a UTF-16 pair (JSON's escaped "\\ud800", or bytes
    that were not UTF-8 on a command line) is not a character."""
    found = SURROGATE.search(text)
    if found is None:
        return None
    return f"holds a lone UTF-16 surrogate at character {found.start()} (half of a pair, or bytes that were not UTF-8)"


# The ASCII characters BERT's normalizer drops: control characters other than tab, line feed and carriage
# return, which it turns into spaces.
ASCII_CONTROLS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"


TWINS: weakref.WeakKeyDictionary[Tokenizer, Tokenizer | None] = weakref.WeakKeyDictionary()


def ascii_twin(tokenizer: Tokenizer) -> Tokenizer | None:
    """``tokenizer`` with BERT's normalizer replaced by what it does to ASCII text (control characters
    dropped, tab and line breaks made spaces, letters lowercased where it lowercases), without its Unicode
    passes: the same ids and offsets on ASCII text in about three quarters of the time (35 against 46 µs a
    WebNLG* sentence, 38 against 59 in batches of 32). None for another normalizer. Built once per tokenizer
    (35 ms for MiniLM's): an extractor at other thresholds shares its tokenizer and so its twin."""
    if tokenizer not in TWINS:
        TWINS[tokenizer] = build_ascii_twin(tokenizer)
    return TWINS[tokenizer]


def build_ascii_twin(tokenizer: Tokenizer) -> Tokenizer | None:
    normalizer = json.loads(tokenizer.to_str()).get("normalizer") or {}
    if normalizer.get("type") != "BertNormalizer":
        return None
    steps = []
    if normalizer.get("clean_text", True):
        steps += [normalizers.Replace(Regex(ASCII_CONTROLS), ""), normalizers.Replace(Regex(r"[\t\n\r]"), " ")]
    if normalizer.get("lowercase", True):
        steps.append(normalizers.Lowercase())
    twin = Tokenizer.from_str(tokenizer.to_str())
    twin.normalizer = normalizers.Sequence(steps)
    return twin


def encode_batch(tokenizer: Tokenizer, ascii_tokenizer: Tokenizer | None, texts: list[str]) -> list:
    """The tokenizer's encodings of ``texts``; ASCII texts through ``ascii_tokenizer`` (``ascii_twin``) if given."""
    plain = [text.isascii() for text in texts] if ascii_tokenizer is not None else []
    if not any(plain):
        return tokenizer.encode_batch(texts)
    if all(plain):
        return ascii_tokenizer.encode_batch(texts)
    fast = iter(ascii_tokenizer.encode_batch([text for text, is_plain in zip(texts, plain) if is_plain]))
    other = iter(tokenizer.encode_batch([text for text, is_plain in zip(texts, plain) if not is_plain]))
    return [next(fast) if is_plain else next(other) for is_plain in plain]


def load_tokenizer(directory: Path) -> Tokenizer:
    path = Path(directory) / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the model folder has no fast tokenizer file")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


SENTENCE_MARKS = ".!?。！？"


def sentence_ends(tokenizer: Tokenizer) -> list[int]:
    """The ids of the tokenizer's tokens that end a sentence: full stops, question and exclamation marks."""
    ids = (tokenizer.token_to_id(mark) for mark in SENTENCE_MARKS)
    return sorted({token for token in ids if token is not None})


# Every code point Python counts as whitespace lies below U+3001; a table lookup tells them apart.
SPACE_TABLE = np.array([chr(code).isspace() for code in range(0x3002)], dtype=bool)
SPACE_TABLE[-1] = False  # stands for every code point above the table


def strip_spaces(codes: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Token character spans without the whitespace at their edges (SentencePiece offsets include the
    space before a word; entities never start with one). ``codes``: the text's code points. An empty
    span comes back with start == end."""
    solid = np.flatnonzero(~SPACE_TABLE[np.minimum(codes, SPACE_TABLE.size - 1)])
    solid = np.append(solid, codes.size)  # a sentinel: no solid character from here on
    new_starts = solid[np.searchsorted(solid, starts)]
    before_end = np.searchsorted(solid, ends) - 1  # the last solid character before each end
    new_ends = np.where(before_end >= 0, solid[np.maximum(before_end, 0)] + 1, 0)
    return new_starts, np.maximum(new_ends, new_starts)


TEXTS_AT_ONCE = 1024


def encode_windows(
    tokenizer: Tokenizer,
    texts: list[str],
    max_length: int,
    stride: int,
    ascii_tokenizer: Tokenizer | None = None,
) -> list[list[Encoded]]:
    """Tokenize ``texts``; a text longer than ``max_length`` tokens (special tokens included) becomes
    several windows that share ``stride`` tokens with their neighbours. Offsets are into the full text.
    ``ascii_tokenizer``: the tokenizer's ``ascii_twin``, for its ASCII texts.

    A batch is converted at once: one array of ids, offsets and code points for all its windows; a larger
    call (a training set) goes in batches of ``TEXTS_AT_ONCE``, so that the tokenizer's and Python's
    passing objects stay small (20,000 DuIE 2.0 texts at once kept 355 MB resident afterwards)."""
    if not 0 <= stride < max_length - 2:
        raise ValueError(f"window stride {stride} must be at least 0 and below max length - 2 ({max_length - 2})")
    if len(texts) > TEXTS_AT_ONCE:
        return [
            text_windows
            for begin in range(0, len(texts), TEXTS_AT_ONCE)
            for text_windows in encode_windows(
                tokenizer, texts[begin : begin + TEXTS_AT_ONCE], max_length, stride, ascii_tokenizer
            )
        ]
    for each in [each for each in (tokenizer, ascii_tokenizer) if each is not None]:
        current = each.truncation
        if current is None or (current["max_length"], current["stride"]) != (max_length, stride):
            # set once, not per call: the service tokenizes in several threads with one tokenizer
            each.enable_truncation(max_length, stride=stride)
    windows = [(encoding, *encoding.overflowing) for encoding in encode_batch(tokenizer, ascii_tokenizer, texts)]
    flat = list(chain.from_iterable(windows))
    if not flat:
        return []
    ids_lists = [window.ids for window in flat]
    lengths = [len(window_ids) for window_ids in ids_lists]
    total = sum(lengths)
    ids = np.fromiter(chain.from_iterable(ids_lists), np.int64, total)
    offsets = np.fromiter(
        chain.from_iterable(chain.from_iterable([window.offsets for window in flat])), np.int64, 2 * total
    ).reshape(-1, 2)
    starts, ends = offsets[:, 0], offsets[:, 1]
    if not isinstance(tokenizer.pre_tokenizer, BertPreTokenizer):  # BERT's offsets never hold a space
        # offsets into one string of all the texts, so that one pass strips every token's spaces
        text_base = np.cumsum([0] + [len(text) for text in texts])
        window_base = np.repeat(text_base[:-1], [len(text_windows) for text_windows in windows])
        token_base = np.repeat(window_base, lengths)
        codes = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
        starts, ends = strip_spaces(codes, starts + token_base, ends + token_base)
        starts, ends = starts - token_base, ends - token_base
    empty = ends <= starts  # special tokens have empty offsets too
    starts[empty], ends[empty] = -1, -1  # fresh arrays: marked in place
    bounds = [0, *accumulate(lengths)]  # plain Python: numpy's fixed cost dominates for a request's few windows
    result, index = [], 0
    for text, text_windows in zip(texts, windows):
        result.append([])
        for _ in text_windows:
            begin, end = bounds[index], bounds[index + 1]
            result[-1].append(Encoded(text, ids[begin:end], starts[begin:end], ends[begin:end]))
            index += 1
    return result


def pad(sequences: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack token ids padded to the longest: ``input_ids`` and ``attention_mask``, both int64."""
    lengths = np.fromiter((len(ids) for ids in sequences), np.int64, len(sequences))
    attention_mask = (np.arange(lengths.max()) < lengths[:, None]).astype(np.int64)
    input_ids = np.zeros(attention_mask.shape, dtype=np.int64)
    input_ids[attention_mask.astype(bool)] = np.concatenate(sequences)
    return input_ids, attention_mask


@dataclass
class Padded:
    """Windows padded into one engine call: ``content`` marks the tokens that cover text."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    content: np.ndarray


def pad_windows(ids: list[np.ndarray], starts: list[np.ndarray]) -> Padded:
    """Windows' token ids and character starts (-1 for special tokens), padded into one batch."""
    input_ids, attention_mask = pad(ids)
    content = np.zeros(input_ids.shape, dtype=bool)
    content[attention_mask.astype(bool)] = np.concatenate(starts) >= 0
    return Padded(input_ids, attention_mask, content)
