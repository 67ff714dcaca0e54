"""Texts to token ids, once: cached on disk by tokenizer and text hash, truncated on demand."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
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
PAIR_SLOT = "{pair}"  # where a template puts the second text of a pair
DEFAULT_PAIR_TEMPLATE = "{text}\n\n{pair}"  # how a pair is joined when no template says


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


def is_template(template: str) -> bool:
    """``{text}`` once, and at most one ``{pair}``, after it."""
    return template.count(TEXT_SLOT) == 1 and (
        PAIR_SLOT not in template
        or (
            template.count(PAIR_SLOT) == 1 and template.index(TEXT_SLOT) < template.index(PAIR_SLOT)
        )
    )


def template_parts(template: str) -> tuple[str, str | None, str]:
    """The template's text before ``{text}``, between ``{text}`` and ``{pair}`` (None: it
    joins no pair), and after its last slot."""
    if not is_template(template):
        raise GptclfError(
            f"--template must contain {TEXT_SLOT} once, and {PAIR_SLOT} at most once after it: "
            f"{template!r}"
        )
    before, rest = template.split(TEXT_SLOT)
    if PAIR_SLOT not in rest:
        return before, None, rest
    between, after = rest.split(PAIR_SLOT)
    return before, between, after


def joins_pairs(template: str | None) -> bool:
    """Whether texts read with ``template`` are pairs."""
    return template is not None and template_parts(template)[1] is not None


def template_ids(tokenizer: Tokenizer, template: str | None) -> tuple[list[int], list[int]]:
    """Token ids put before and after each text (or pair): the tokenizer's start tokens, then
    the template's text before its ``{text}`` slot; the template's text after its last slot."""
    if template is None:
        return list(tokenizer.prefix_ids), []
    before, _, after = template_parts(template)
    return tokenizer.prefix_ids + tokenizer.encode(before), tokenizer.encode(after)


def between_ids(tokenizer: Tokenizer, template: str) -> list[int]:
    """Token ids of the template's text between a pair's two texts."""
    between = template_parts(template)[1]
    if between is None:
        raise GptclfError(f"--template {template!r} has no {PAIR_SLOT} slot for the second text")
    return tokenizer.encode(between)


def frame_pairs(
    ids: list[list[int]],
    pair_ids: list[list[int]],
    max_length: int,
    side: str,
    around: tuple[list[int], list[int]],
    between: list[int],
) -> TokenizedTexts:
    """Each text, the template's tokens ``between``, then its pair, framed as :func:`frame`
    frames one text; where they do not fit, each is cut (on the side ``side`` names) to its
    share of the room by :func:`pair_lengths`."""
    room = max_length - len(around[0]) - len(around[1]) - len(between)
    if room < 2:
        raise GptclfError(
            f"a maximum length of {max_length} tokens leaves no room for two texts (the start "
            f"and template tokens take {max_length - room})"
        )
    joined = []
    for first, second in zip(ids, pair_ids, strict=True):
        kept_first, kept_second = pair_lengths(len(first), len(second), room)
        joined.append(_cut(first, kept_first, side) + between + _cut(second, kept_second, side))
    framed = frame(joined, max_length, side, around)
    lengths = [len(a) + len(between) + len(b) for a, b in zip(ids, pair_ids, strict=True)]
    return replace(framed, text_lengths=np.array(lengths, dtype=np.int64))


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


def pair_lengths(first: int, second: int, room: int) -> tuple[int, int]:
    """How many tokens of a pair's two texts fit ``room``, cut longest first as the tokenizers
    library does: the shorter keeps all it has up to half the room, the longer the rest (of
    two longer than half, the longer, or on a tie the second, keeps the odd token)."""
    if first + second <= room:
        return first, second
    shorter = min(first, second)
    longer = room - shorter if shorter <= room // 2 else (room + 1) // 2
    return (longer, room - longer) if first > second else (room - longer, longer)


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
    pairs: Sequence[str] | None = None,
) -> TokenizedTexts:
    """Cached tokenization, truncation to ``max_length`` (or chunks of it) and the optional
    template; with ``pairs``, each text and its pair joined as the template says."""
    ids = encode_cached(tokenizer, texts, cache_folder)
    around = template_ids(tokenizer, template)
    if pairs is None:
        if joins_pairs(template):
            raise GptclfError(
                f"--template {template!r} joins two texts: give each its pair (--text-pair-column)"
            )
        return frame(ids, max_length, side, around, chunks)
    if chunks:
        raise GptclfError("--chunks reads one long text in pieces, not pairs of texts")
    pair_ids = encode_cached(tokenizer, pairs, cache_folder)
    between = between_ids(tokenizer, template or DEFAULT_PAIR_TEMPLATE)
    return frame_pairs(ids, pair_ids, max_length, side, around, between)
