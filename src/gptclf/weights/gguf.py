"""GGUF files (llama.cpp's format) through the ``gguf`` package: architecture settings and the
tokenizer from the metadata, tensors dequantised to float32. Parsing and dequantising take
seconds, so a file is converted once: its float32 tensors, architecture and tokenizer are kept in
gptclf's folder under the file's SHA-256 (``converted/``) and read back from there.

llama.cpp's converter permutes the rows of the query and key projections so that rotary
embeddings rotate interleaved channel pairs; we undo it to get back the Hugging Face layout that
our ``RotaryEmbedding`` (which rotates the two halves of each head) expects.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import dequantize
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import Tokenizer as HFTokenizerBackend

from gptclf.assets import sha256_of
from gptclf.atomic import atomic_path
from gptclf.errors import GptclfError
from gptclf.home import home_dir
from gptclf.models import LlamaConfig, LlamaModel
from gptclf.tokenizers import HFTokenizer, byte_level_bpe_tokenizer, gemma_tokenizer
from gptclf.weights.common import Rule, empty_model, load_by_rules, rules_of, stack_rules
from gptclf.weights.huggingface import LLAMA_LIKE, WINDOWED, llama_names, phi3_fused

SUPPORTED_TYPES = {
    GGMLQuantizationType.F32,
    GGMLQuantizationType.F16,
    GGMLQuantizationType.BF16,
    GGMLQuantizationType.Q8_0,
    GGMLQuantizationType.Q4_0,
    GGMLQuantizationType.Q4_1,
    GGMLQuantizationType.Q4_K,
    GGMLQuantizationType.Q6_K,
}


class GGUFFile:
    """Metadata and float32 tensors of one GGUF file."""

    def __init__(self, path: Path):
        if not path.is_file():
            raise GptclfError(f"{path}: file not found")
        try:
            self.reader = GGUFReader(path)
        except Exception as exc:
            raise GptclfError(f"{path}: not a readable GGUF file ({exc})") from exc
        self.path = path

    def get(self, key: str, default=None):
        field = self.reader.get_field(key)
        return default if field is None else field.contents()

    def require(self, key: str):
        value = self.get(key)
        if value is None:
            raise GptclfError(f"{self.path}: metadata key {key} is missing")
        return value

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for t in self.reader.tensors:
            if t.tensor_type not in SUPPORTED_TYPES:
                raise GptclfError(
                    f"{self.path}: tensor {t.name} is {t.tensor_type.name}; supported types are "
                    + ", ".join(sorted(q.name for q in SUPPORTED_TYPES))
                )
            raw = np.asarray(t.data)  # a plain array: slicing a memmap is slow
            values = dequantize(raw, t.tensor_type).astype(np.float32, copy=False)
            if not values.flags.writeable:  # float32 data straight from the read-only memory map
                values = values.copy()
            shape = [int(n) for n in reversed(t.shape)]  # GGUF lists the innermost dimension first
            out[t.name] = torch.from_numpy(values.reshape(shape))
        return out


def unpermute_rotary_rows(n_heads: int, weight: torch.Tensor) -> torch.Tensor:
    """Undo llama.cpp's query/key permutation: per head, rows (pair, 2) back to (2, pair)."""
    rows, cols = weight.shape
    return (
        weight.reshape(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)
    )


# llama.cpp's architecture names: transformers' model_type
GGUF_ARCHITECTURES = {
    "gemma3": "gemma3_text",
    "llama": "llama",
    "olmo2": "olmo2",
    "phi3": "phi3",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
}


def llama_config(gguf: GGUFFile) -> LlamaConfig:
    arch = gguf.require("general.architecture")
    if arch not in GGUF_ARCHITECTURES:
        raise GptclfError(
            f"{gguf.path}: architecture {arch!r} is not supported ({', '.join(GGUF_ARCHITECTURES)})"
        )
    model_type = GGUF_ARCHITECTURES[arch]
    scaling = gguf.get(f"{arch}.rope.scaling.type", "none")
    unscaled = scaling == "none" or (
        scaling == "linear" and gguf.get(f"{arch}.rope.scaling.factor", 1.0) == 1.0
    )
    if not unscaled or any(t.name == "rope_freqs.weight" for t in gguf.reader.tensors):
        raise GptclfError(f"{gguf.path}: rope scaling is not supported")
    n_heads = int(gguf.require(f"{arch}.attention.head_count"))
    emb_dim = int(gguf.require(f"{arch}.embedding_length"))
    n_layers = int(gguf.require(f"{arch}.block_count"))
    head_dim = int(
        gguf.get(f"{arch}.attention.key_length", gguf.get(f"{arch}.rope.dimension_count", 0))
        or emb_dim // n_heads
    )
    family = dict(LLAMA_LIKE[model_type])
    if model_type in WINDOWED:
        family["sliding_window"] = _int_or_none(gguf.get(f"{arch}.attention.sliding_window"))
    if arch == "gemma3":
        family |= gemma3_conventions(head_dim)
    tensor_names = {t.name for t in gguf.reader.tensors}
    return LlamaConfig(
        vocab_size=len(gguf.require("tokenizer.ggml.tokens")),
        context_length=int(gguf.require(f"{arch}.context_length")),
        emb_dim=emb_dim,
        hidden_dim=int(gguf.require(f"{arch}.feed_forward_length")),
        n_heads=n_heads,
        n_kv_groups=int(gguf.get(f"{arch}.attention.head_count_kv", n_heads)),
        n_layers=n_layers,
        rope_base=float(gguf.get(f"{arch}.rope.freq_base", 10_000.0)),
        rms_norm_eps=float(gguf.require(f"{arch}.attention.layer_norm_rms_epsilon")),
        tie_embeddings="output.weight" not in tensor_names,
        head_dim=head_dim if head_dim != emb_dim // n_heads else None,
        **family,
    )


def gemma3_conventions(head_dim: int) -> dict:
    """What llama.cpp takes for granted of Gemma 3 rather than storing it: every 6th layer sees
    all keys, the windowed ones rotate at base 10,000, and scores scale by 1/√head_dim (the 4B
    to 27B files, whose rotation is scaled, are refused before)."""
    return {"global_every": 6, "rope_local_base": 10_000.0, "attention_scale": head_dim**-0.5}


def _int_or_none(value: object) -> int | None:
    return None if value is None else int(value)


def llama_rules(cfg: LlamaConfig, arch: str) -> list[Rule]:
    """The tensors of a GGUF file of ``arch``: llama.cpp stores Llama's query and key rows
    permuted for its interleaved rotation (the others' as they are), Phi-3's fused, and
    Gemma's norm weights plus one."""
    top, block = llama_names(cfg, column=2)
    if arch == "phi3":
        block |= phi3_fused(cfg, column=2)
    if arch == "gemma3":
        for names in (top, block):
            for ours, theirs in names.items():
                if theirs.endswith("norm.weight"):
                    names[ours] = (theirs, _minus_one)
    if arch == "llama":
        for name, heads in (
            ("att.W_query.weight", cfg.n_heads),
            ("att.W_key.weight", cfg.n_kv_groups),
        ):
            block[name] = (block[name], partial(unpermute_rotary_rows, heads))
    return rules_of(top) + stack_rules(cfg.n_layers, "blk.{i}", block)


def _minus_one(t: torch.Tensor) -> torch.Tensor:
    return t - 1


def gguf_tokenizer(gguf: GGUFFile) -> HFTokenizer:
    """The file's byte-level BPE vocabulary, or Gemma's SentencePiece one."""
    model = gguf.require("tokenizer.ggml.model")
    tokens = gguf.require("tokenizer.ggml.tokens")
    bos = gguf.get("tokenizer.ggml.bos_token_id")
    prefix = [bos] if gguf.get("tokenizer.ggml.add_bos_token") and bos is not None else []
    if model == "llama" and gguf.get("general.architecture") == "gemma3":
        return gemma_tokenizer(
            tokens,
            gguf.require("tokenizer.ggml.token_type"),
            unk_id=int(gguf.require("tokenizer.ggml.unknown_token_id")),
            eos_id=int(gguf.require("tokenizer.ggml.eos_token_id")),
            bos_id=bos,
            pad_id=gguf.get("tokenizer.ggml.padding_token_id"),
            prefix_ids=prefix,
        )
    if model != "gpt2":
        raise GptclfError(
            f"{gguf.path}: tokenizer model {model!r} is not supported (gpt2 BPE, and Gemma's)"
        )
    return byte_level_bpe_tokenizer(
        tokens,
        gguf.require("tokenizer.ggml.merges"),
        gguf.get("tokenizer.ggml.token_type", [1] * len(tokens)),
        gguf.get("tokenizer.ggml.pre", "default"),
        eos_id=int(gguf.require("tokenizer.ggml.eos_token_id")),
        bos_id=bos,
        pad_id=gguf.get("tokenizer.ggml.padding_token_id"),
        prefix_ids=prefix,
    )


def load_gguf_tokenizer(path: Path) -> tuple[HFTokenizer, int]:
    """The tokenizer and context length of a GGUF model, without its weights."""
    gguf = GGUFFile(path)
    return gguf_tokenizer(gguf), llama_config(gguf).context_length


CONVERTED_FORMAT = "gptclf-gguf-converted-3"


def load_gguf(path: Path) -> tuple[LlamaModel, HFTokenizer]:
    """A Llama model and its tokenizer from a GGUF file (from its conversion, once made)."""
    if not path.is_file():
        raise GptclfError(f"{path}: file not found")
    converted = home_dir("converted", f"{sha256_of(path)}.safetensors")
    loaded = read_converted(converted)
    if loaded is not None:
        return loaded
    gguf = GGUFFile(path)
    cfg = llama_config(gguf)
    tokenizer = gguf_tokenizer(gguf)
    model = empty_model(LlamaModel, cfg)
    rules = llama_rules(cfg, gguf.require("general.architecture"))
    load_by_rules(model, rules, gguf.tensors(), str(path))
    write_converted(converted, model, tokenizer)
    return model, tokenizer


def write_converted(path: Path, model: LlamaModel, tokenizer: HFTokenizer) -> None:
    """Keep a converted model: its tensors, and its architecture and tokenizer as metadata (a
    folder that cannot be written only means converting again next time)."""
    special = {"eos_id": tokenizer.eos_id, "bos_id": tokenizer.bos_id, "pad_id": tokenizer.pad_id}
    metadata = {
        "format": CONVERTED_FORMAT,
        "config": json.dumps(asdict(model.cfg)),
        "tokenizer": tokenizer.backend.to_str(),
        "special_ids": json.dumps(special),
    }
    tensors = {name: t.detach().contiguous() for name, t in model.state_dict().items()}
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)
    except OSError:
        pass


def read_converted(path: Path) -> tuple[LlamaModel, HFTokenizer] | None:
    """A model and tokenizer that ``write_converted`` kept; None where there is none (or what
    is there is damaged or of another format, to be converted again)."""
    try:
        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
            if metadata.get("format") != CONVERTED_FORMAT:
                return None
            tensors = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118
        cfg = LlamaConfig(**json.loads(metadata["config"]))
        backend = HFTokenizerBackend.from_str(metadata["tokenizer"])
        tokenizer = HFTokenizer(backend, **json.loads(metadata["special_ids"]))
        model = empty_model(LlamaModel, cfg)
        model.load_state_dict(tensors, strict=True, assign=True)
    except Exception:  # missing, damaged or foreign: whichever way it fails, convert again
        return None
    return model, tokenizer
