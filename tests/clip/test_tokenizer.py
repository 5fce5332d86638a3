"""Token ids must equal OpenAI's, or pretrained text embeddings are meaningless."""

from __future__ import annotations

from types import ModuleType

import pytest
import torch

from clip import clip
from clip.simple_tokenizer import SimpleTokenizer

LONG_TEXT = "a very long caption about a photo of a small dog " * 12

CORPUS = [
    "a photo of a cat.",
    "A PHOTO OF A DOG, Sitting On The Grass",
    "",
    "café crème brûlée, naïve façade, Ångström, jalapeño",
    "東京タワーの写真",
    "Ελληνικά και русский текст",
    "I ❤️ 🍕 and 🐈‍⬛! 👩🏽‍🔬",
    "hello!!! what?? ... (parentheses) [brackets] {braces} #hash @at $5 100%",
    "it's, we're, they'll, I'd, you've, I'm, don't, O'Neil's",
    "1234567 3.14159 1,000,000 2nd 42x",
    "  leading\ttabs\nand   newlines\r\n  ",
    "&amp;lt;b&amp;gt; Tom &amp; Jerry &quot;quoted&quot;",
    "cafÃ© mojibake â€” fixed by ftfy",
    "<|startoftext|> literal special tokens <|endoftext|>",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a_b-c/d\\e|f~g`h^i",
    LONG_TEXT,
]


@pytest.mark.parametrize("context_length", [77, 16])
def test_token_ids_match_reference(oracle: ModuleType, context_length: int) -> None:
    ours = clip.tokenize(CORPUS, context_length=context_length, truncate=True)
    reference = oracle.tokenize(CORPUS, context_length=context_length, truncate=True)
    assert ours.dtype == torch.long
    assert ours.shape == (len(CORPUS), context_length)
    mismatched = [
        text for text, a, b in zip(CORPUS, ours, reference.long()) if not torch.equal(a, b)
    ]
    assert not mismatched


def test_decode_matches_reference(oracle: ModuleType) -> None:
    ours, reference = SimpleTokenizer(), oracle.simple_tokenizer.SimpleTokenizer()
    for text in CORPUS:
        ids = reference.encode(text)
        assert ours.decode(ids) == reference.decode(ids)


def test_vocabulary_is_clip_sized() -> None:
    tokenizer = SimpleTokenizer()
    assert len(tokenizer.encoder) == 49408
    assert tokenizer.encoder["<|startoftext|>"] == 49406
    assert tokenizer.encoder["<|endoftext|>"] == 49407


def test_layout_start_ids_end_then_zeros() -> None:
    tokens = clip.tokenize("a photo")
    body = SimpleTokenizer().encode("a photo")
    n = len(body) + 2
    assert tokens[0, :n].tolist() == [49406, *body, 49407]
    assert tokens[0, n:].eq(0).all()


def test_truncation_keeps_end_token_last() -> None:
    tokens = clip.tokenize(LONG_TEXT, truncate=True)
    assert tokens.shape == (1, 77)
    assert tokens[0, -1].item() == 49407
    assert tokens[0].argmax().item() == 76  # encode_text finds the end token by argmax


def test_too_long_text_names_the_fix() -> None:
    with pytest.raises(clip.ContextLengthError, match="truncate=True") as info:
        clip.tokenize(["short", LONG_TEXT])
    assert "text 1" in str(info.value)
    assert isinstance(info.value, RuntimeError)  # upstream raises RuntimeError; callers catch it


def test_non_string_input_is_refused() -> None:
    with pytest.raises(TypeError, match="item 1 is a int"):
        clip.tokenize(["fine", 3])


def test_context_too_short_for_special_tokens() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        clip.tokenize("x", context_length=1)
