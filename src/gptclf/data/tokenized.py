"""Texts to token ids, once: cached on disk by tokenizer and text hash, truncated on demand."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from gptclf.atomic import atomic_path
from gptclf.errors import GptclfError
from gptclf.home import home_dir
from gptclf.tokenizers import Tokenizer

TRUNCATE_SIDES = ("head", "tail", "head+tail")
CHUNK_OVERLAP = 0.25  # the share of a chunk that the next chunk reads again
TEXT_SLOT = "{text}"


@dataclass
class TokenizedTexts:
    """The sequences the model reads, each at most ``max_length`` tokens: one per text, or with
    chunks several per text, in text order (``owners``)."""

    ids: list[list[int]]
    text_lengths: np.ndarray  # token count of each text alone, before truncation
    max_length: int
    overhead: int = 0  # start and template tokens put around every text
    owners: np.ndarray | None = None  # the text each sequence reads (None: sequence i, text i)

    @property
    def full_lengths(self) -> np.ndarray:
        return self.text_lengths + self.overhead

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(x) for x in self.ids], dtype=np.int64)

    @property
    def n_truncated(self) -> int:
        """Texts cut short (none when they are read in chunks)."""
        if self.owners is not None:
            return 0
        return int((self.full_lengths > self.max_length).sum())


def texts_fingerprint(tokenizer: Tokenizer, texts: Sequence[str]) -> str:
    """SHA-256 over the tokenizer's identity and every text (length-prefixed, so unambiguous)."""
    digest = hashlib.sha256(tokenizer.name.encode())
    for text in texts:
        data = text.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _save_ids(path: Path, ids: list[list[int]]) -> None:
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    flat = np.fromiter((t for x in ids for t in x), dtype=np.int32, count=int(lengths.sum()))
    with atomic_path(path) as tmp:
        save_file({"flat": flat, "lengths": lengths}, str(tmp))


def _load_ids(path: Path) -> list[list[int]]:
    arrays = load_file(str(path))
    offsets = np.concatenate([[0], np.cumsum(arrays["lengths"])])
    flat = arrays["flat"].tolist()
    return [flat[a:b] for a, b in itertools.pairwise(offsets)]


def encode_cached(
    tokenizer: Tokenizer, texts: Sequence[str], folder: Path | None = None
) -> list[list[int]]:
    """Token ids of ``texts``, read from the token cache when this tokenizer saw them before."""
    folder = folder or home_dir("tokens")
    path = folder / f"{texts_fingerprint(tokenizer, texts)}.safetensors"
    if path.is_file():
        return _load_ids(path)
    ids = tokenizer.encode_batch(texts)
    _save_ids(path, ids)
    return ids


def template_ids(tokenizer: Tokenizer, template: str | None) -> tuple[list[int], list[int]]:
    """Token ids put before and after each text: the tokenizer's start tokens, then the
    template's text before its ``{text}`` slot; the template's text after it."""
    if template is None:
        return list(tokenizer.prefix_ids), []
    if template.count(TEXT_SLOT) != 1:
        raise GptclfError(f"--template must contain {TEXT_SLOT} exactly once: {template!r}")
    before, after = template.split(TEXT_SLOT)
    return tokenizer.prefix_ids + tokenizer.encode(before), tokenizer.encode(after)


def frame(
    ids: list[list[int]],
    max_length: int,
    side: str = "head",
    around: tuple[list[int], list[int]] = ([], []),
    chunks: bool = False,
) -> TokenizedTexts:
    """Cut each text to fit ``max_length`` with the template's tokens ``around`` it, keeping its
    first (``head``), last (``tail``) or first and last (``head+tail``, half each) tokens, then
    put the template around it. With ``chunks``, a longer text is read whole instead, in
    overlapping chunks that each fit and each have the template around them."""
    if side not in TRUNCATE_SIDES:
        raise GptclfError(f"--truncate must be one of {', '.join(TRUNCATE_SIDES)}, not {side!r}")
    before, after = around
    room = max_length - len(before) - len(after)
    if room < 1:
        raise GptclfError(
            f"a maximum length of {max_length} tokens leaves no room for the text "
            f"(the start and template tokens around it take {len(before) + len(after)})"
        )
    text_lengths = np.array([len(x) for x in ids], dtype=np.int64)
    owners = None
    if chunks:
        pieces = [_chunks(x, room) for x in ids]
        owners = np.repeat(np.arange(len(ids)), [len(p) for p in pieces])
        cut = [chunk for p in pieces for chunk in p]
    else:
        cut = [_cut(x, room, side) for x in ids]
    framed = [before + x + after for x in cut] if before or after else cut
    return TokenizedTexts(framed, text_lengths, max_length, len(before) + len(after), owners)


def _chunks(ids: list[int], room: int) -> list[list[int]]:
    """``ids`` in windows of ``room`` tokens, each reading the last ``CHUNK_OVERLAP`` of the one
    before again, the last ending with the text (a text that fits: itself alone)."""
    if len(ids) <= room:
        return [ids]
    stride = max(1, room - int(room * CHUNK_OVERLAP))
    starts = [*range(0, len(ids) - room, stride), len(ids) - room]
    return [ids[start : start + room] for start in starts]


def _cut(ids: list[int], room: int, side: str) -> list[int]:
    """At most ``room`` of ``ids``, from the side(s) ``side`` names."""
    if len(ids) <= room:
        return ids
    if side == "head":
        return ids[:room]
    if side == "tail":
        return ids[-room:]
    head = (room + 1) // 2
    return ids[:head] + ids[len(ids) - (room - head) :]


def tokenize(
    tokenizer: Tokenizer,
    texts: Sequence[str],
    max_length: int,
    side: str = "head",
    template: str | None = None,
    cache_folder: Path | None = None,
    chunks: bool = False,
) -> TokenizedTexts:
    """Cached tokenization, truncation to ``max_length`` (or chunks of it) and the optional
    template."""
    ids = encode_cached(tokenizer, texts, cache_folder)
    return frame(ids, max_length, side, template_ids(tokenizer, template), chunks)
