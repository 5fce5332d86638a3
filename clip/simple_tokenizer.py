"""CLIP's byte-level BPE tokenizer (lower-cased, ftfy-repaired text; 49408-token vocabulary).

Token ids must equal those CLIP was trained with, so the clean-up, the pre-tokenising regular
expression and the merge order follow OpenAI's tokenizer exactly; the merge table is the
`bpe_simple_vocab_16e6.txt.gz` file shipped with the `openai-clip` package.
"""

from __future__ import annotations

import gzip
import html
from functools import lru_cache
from pathlib import Path

import ftfy
import regex

SOT = "<|startoftext|>"
EOT = "<|endoftext|>"
_NUM_MERGES = 49152 - 256 - 2  # the vocabulary holds 256 bytes x 2 forms + merges + 2 specials
_END_OF_WORD = "</w>"


def default_bpe() -> str:
    return str(Path(__file__).resolve().parent / "bpe_simple_vocab_16e6.txt.gz")


@lru_cache
def bytes_to_unicode() -> dict[int, str]:
    """A reversible map from every byte to a printable character, so BPE never sees whitespace
    or control characters. Printable Latin-1 bytes map to themselves, the rest to 256 + k."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def basic_clean(text: str) -> str:
    """Repair mojibake and HTML entities (twice, for doubly escaped text)."""
    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


def whitespace_clean(text: str) -> str:
    return regex.sub(r"\s+", " ", text).strip()


class SimpleTokenizer:
    """Text <-> BPE token ids; `encode` adds no start/end tokens (see `clip.tokenize`)."""

    # Specials, English contractions, letter runs, single digits, runs of other symbols.
    _PATTERN = regex.compile(
        r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
        regex.IGNORECASE,
    )

    def __init__(self, bpe_path: str | None = None) -> None:
        bpe_path = bpe_path or default_bpe()
        with gzip.open(bpe_path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(line.split()) for line in lines[1 : _NUM_MERGES + 1]]  # line 0: header

        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        base = list(self.byte_encoder.values())
        vocab = base + [c + _END_OF_WORD for c in base] + ["".join(m) for m in merges] + [SOT, EOT]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.decoder = dict(enumerate(vocab))
        self.bpe_ranks = {merge: rank for rank, merge in enumerate(merges)}
        # Memoises word -> BPE pieces; the specials map to themselves (no end-of-word marker).
        self.cache: dict[str, list[str]] = {SOT: [SOT], EOT: [EOT]}

    def bpe(self, word: str) -> list[str]:
        """Split one pre-token into vocabulary pieces by applying merges in rank order."""
        cached = self.cache.get(word)
        if cached is not None:
            return cached
        parts = [*word[:-1], word[-1] + _END_OF_WORD]
        while len(parts) > 1:
            pairs = zip(parts, parts[1:])
            merge = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, _NUM_MERGES))
            if merge not in self.bpe_ranks:
                break
            first, second = merge
            merged: list[str] = []
            i = 0
            # Merge every non-overlapping occurrence of the pair, left to right.
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == merge:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self.cache[word] = parts
        return parts

    def encode(self, text: str) -> list[int]:
        text = whitespace_clean(basic_clean(text)).lower()
        ids: list[int] = []
        for token in self._PATTERN.findall(text):
            word = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self.bpe(word))
        return ids

    def decode(self, tokens: list[int]) -> str:
        text = "".join(self.decoder[int(t)] for t in tokens)
        raw = bytearray(self.byte_decoder[c] for c in text)
        return raw.decode("utf-8", errors="replace").replace(_END_OF_WORD, " ")
