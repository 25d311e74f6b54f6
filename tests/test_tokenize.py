"""Character offsets must slice the original text, whatever the tokenizer does to it."""

from itertools import chain
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from triplex.model.tokenize import TEXTS_AT_ONCE, Encoded, ascii_twin, encode_windows, pad, split_cjk_characters

from .conftest import shared_path

TEXTS = [
    "Alan Bean , who was part of Apollo 12 , was born in Wheeler , Texas on March 15th , 1932 .",
    "Café ÉCOLE, Ｆｕｌｌ-width ＡＢＣ！ don't stop — naïve coöperation.",
    "内容简介《宜兴紫砂图典》由故宫出版社出版，2007年出版 in Beijing",
    "  leading and trailing spaces  ",
    "杨维桢（1296—1370），身高：186cm，另记 1,87 m",  # full-width marks become ASCII before pre-tokenizing
]


def tokenizers() -> list[Tokenizer]:
    found = []
    for name in ("minilm-l6-h384-uncased", "e5-small-multilingual-trimmed"):
        try:
            path = shared_path(f"models/{name}/tokenizer.json")
        except pytest.skip.Exception:
            continue
        found.append(split_cjk_characters(Tokenizer.from_file(str(path))))
    return found


@pytest.fixture(params=["tiny", "minilm", "e5"])
def tokenizer(request, tiny_encoder: Path) -> Tokenizer:
    if request.param == "tiny":
        return Tokenizer.from_file(str(tiny_encoder / "tokenizer.json"))
    name = {"minilm": "minilm-l6-h384-uncased", "e5": "e5-small-multilingual-trimmed"}[request.param]
    return split_cjk_characters(Tokenizer.from_file(str(shared_path(f"models/{name}/tokenizer.json"))))


def test_offsets_slice_original_text(tokenizer: Tokenizer) -> None:
    for item in encode(tokenizer, TEXTS, 512):
        content = item.content
        assert not content[0] and not content[-1]  # [CLS]/<s> and [SEP]/</s>
        for start, end in zip(item.starts[content], item.ends[content]):
            piece = item.text[start:end]
            assert piece and piece == piece.strip()


@pytest.mark.parametrize(
    ("text", "entity"),
    [
        (TEXTS[0], "Wheeler"),
        (TEXTS[0], "Apollo 12"),
        (TEXTS[1], "ÉCOLE"),
        (TEXTS[1], "ＡＢＣ"),
        (TEXTS[2], "故宫出版社"),
        (TEXTS[2], "宜兴紫砂图典"),
        (TEXTS[2], "Beijing"),
        (TEXTS[4], "1296"),
        (TEXTS[4], "186cm"),
        (TEXTS[4], "1,87 m"),
    ],
)
def test_entities_map_to_tokens_and_back(tokenizer: Tokenizer, text: str, entity: str) -> None:
    item = encode(tokenizer, [text], 512)[0]
    start = text.index(entity)
    span = item.token_span(start, start + len(entity))
    assert span is not None
    assert text[item.starts[span[0]] : item.ends[span[1]]] == entity


def test_chinese_is_split_per_character() -> None:
    path = shared_path("models/e5-small-multilingual-trimmed/tokenizer.json")
    tokenizer = split_cjk_characters(Tokenizer.from_file(str(path)))
    item = encode(tokenizer, ["由故宫出版社出版"], 64)[0]
    pieces = [item.text[s:e] for s, e in zip(item.starts[item.content], item.ends[item.content])]
    assert "".join(pieces) == "由故宫出版社出版"
    assert all(len(piece) == 1 for piece in pieces)


def encode(tokenizer: Tokenizer, texts: list[str], max_length: int) -> list[Encoded]:
    """Each text's first window."""
    return [windows[0] for windows in encode_windows(tokenizer, texts, max_length, 0)]


def test_truncation_and_padding(tiny_encoder: Path) -> None:
    tokenizer = Tokenizer.from_file(str(tiny_encoder / "tokenizer.json"))
    long, short = encode(tokenizer, ["word " * 100, "a"], 16)
    assert len(long.ids) == 16 and len(short.ids) == 3
    input_ids, attention_mask = pad([long.ids, short.ids])
    assert input_ids.shape == (2, 16) and attention_mask[1].tolist() == [1, 1, 1] + [0] * 13


def test_batched_offsets_equal_a_token_by_token_reading(tokenizer: Tokenizer) -> None:
    """The array conversion of a whole batch against the plain reading of each token's offsets."""
    texts = [*TEXTS, " \u3000 spaced\u2003words\u00a0here ", "", "x" * 700, "短 文本 with  double  spaces"]
    windows = encode_windows(tokenizer, texts, 24, 6)
    for text, text_windows, encoding in zip(texts, windows, tokenizer.encode_batch(texts)):
        assert len(text_windows) == 1 + len(encoding.overflowing)
        for window, expected in zip(text_windows, (encoding, *encoding.overflowing)):
            spans = []
            for special, (start, end) in zip(expected.special_tokens_mask, expected.offsets):
                while start < end and text[start].isspace():
                    start += 1
                while end > start and text[end - 1].isspace():
                    end -= 1
                spans.append((start, end) if not special and end > start else (-1, -1))
            assert window.ids.tolist() == expected.ids
            assert list(zip(window.starts.tolist(), window.ends.tolist())) == spans


def test_a_large_call_equals_its_texts_one_by_one(tokenizer: Tokenizer) -> None:
    """A training set's worth of texts is tokenized in parts (TEXTS_AT_ONCE): the same windows as alone."""
    texts = [f"{text} {index}" for index in range(TEXTS_AT_ONCE * 2 + 7) for text in TEXTS[index % len(TEXTS) :][:1]]
    windows = encode_windows(tokenizer, texts, 24, 6)
    assert len(windows) == len(texts)
    for index in (0, TEXTS_AT_ONCE - 1, TEXTS_AT_ONCE, len(texts) - 1):
        alone = encode_windows(tokenizer, [texts[index]], 24, 6)[0]
        assert [w.text for w in windows[index]] == [texts[index]] * len(alone)
        for window, expected in zip(windows[index], alone, strict=True):
            assert window.ids.tolist() == expected.ids.tolist()
            assert (window.starts.tolist(), window.ends.tolist()) == (expected.starts.tolist(), expected.ends.tolist())


ASCII = st.text(alphabet=st.characters(max_codepoint=127), max_size=80)


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(ASCII | st.sampled_from(TEXTS), min_size=1, max_size=6))
def test_ascii_texts_tokenize_alike_without_berts_unicode_passes(tiny_encoder: Path, texts: list[str]) -> None:
    """Every ASCII character (controls, tabs, line breaks, capitals), in batches that mix ASCII and other
    texts: the twin gives the windows BERT's own normalizer gives."""
    tokenizer = Tokenizer.from_file(str(tiny_encoder / "tokenizer.json"))
    twin = ascii_twin(tokenizer)
    assert twin is not None
    alike, fast = encode_windows(tokenizer, texts, 24, 6), encode_windows(tokenizer, texts, 24, 6, twin)
    assert [len(windows) for windows in fast] == [len(windows) for windows in alike]
    for ours, theirs in zip(chain.from_iterable(fast), chain.from_iterable(alike)):
        assert ours.text == theirs.text
        assert ours.ids.tolist() == theirs.ids.tolist()
        assert ours.starts.tolist() == theirs.starts.tolist() and ours.ends.tolist() == theirs.ends.tolist()


def test_a_tokenizer_without_berts_normalizer_has_no_ascii_twin() -> None:
    path = shared_path("models/e5-small-multilingual-trimmed/tokenizer.json")
    assert ascii_twin(Tokenizer.from_file(str(path))) is None
