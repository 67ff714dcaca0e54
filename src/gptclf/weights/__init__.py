"""Weight loaders, one per format, and the dispatch that picks one for a local path."""

from __future__ import annotations

from pathlib import Path

from safetensors import safe_open

from gptclf.errors import GptclfError
from gptclf.models import LanguageModel
from gptclf.tokenizers import (
    HFTokenizer,
    Tokenizer,
    gpt2_tokenizer,
    read_tokenizer_json,
    set_prefix,
)
from gptclf.weights.book import load_book_gpt
from gptclf.weights.files import read_config
from gptclf.weights.gguf import load_gguf
from gptclf.weights.huggingface import LLAMA_LIKE, load_hf_gpt2, load_hf_llama


def _safetensors_keys(path: Path) -> set[str]:
    try:
        with safe_open(path, framework="pt") as f:
            return set(f.keys())
    except Exception as exc:
        raise GptclfError(f"{path}: not a readable safetensors file ({exc})") from exc


def folder_tokenizer(folder: Path) -> HFTokenizer:
    """The ``tokenizer.json`` of a Hugging Face folder, with its end, start and pad tokens from
    ``config.json``, else ``generation_config.json``, else ``tokenizer_config.json``; the start
    token put before every text where ``tokenizer.json``'s post-processor puts it, or where
    ``tokenizer_config.json`` says ``add_bos_token``."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise GptclfError(f"{folder}: no tokenizer.json beside the weights")
    backend = read_tokenizer_json(path)
    configs = [
        read_config(folder, name) or {} for name in ("config.json", "generation_config.json")
    ]
    words = read_config(folder, "tokenizer_config.json") or {}

    def special(kind: str) -> int | None:
        found = next(
            (c[f"{kind}_token_id"] for c in configs if c.get(f"{kind}_token_id") is not None), None
        )
        if isinstance(found, list):  # several end tokens: the first
            found = found[0]
        word = words.get(f"{kind}_token")
        word = word.get("content") if isinstance(word, dict) else word
        return found if found is not None or word is None else backend.token_to_id(word)

    eos, bos = special("eos"), special("bos")
    if eos is None:
        raise GptclfError(f"{folder}: no end-of-text token in its config files")
    if words.get("add_bos_token") is not None:  # it overrides tokenizer.json, as in transformers
        if words["add_bos_token"] and bos is None:
            raise GptclfError(f"{folder}/tokenizer_config.json: add_bos_token, but no bos token")
        set_prefix(backend, [bos] if words["add_bos_token"] else [])
    return HFTokenizer(backend, eos_id=eos, bos_id=bos, pad_id=special("pad"))


def _load_folder(folder: Path) -> tuple[LanguageModel, Tokenizer]:
    config = read_config(folder)
    model_type = (config or {}).get("model_type")
    if model_type == "gpt2":
        return load_hf_gpt2(folder), gpt2_tokenizer()
    if model_type in LLAMA_LIKE:
        return load_hf_llama(folder), folder_tokenizer(folder)
    ggufs = sorted(folder.glob("*.gguf"))
    if config is None and len(ggufs) == 1:
        return load_gguf(ggufs[0])
    if config is None:
        raise GptclfError(f"{folder}: no config.json (or single .gguf file) in this folder")
    raise GptclfError(
        f"{folder}/config.json: model_type {model_type!r} is not supported "
        f"(gpt2, {', '.join(LLAMA_LIKE)})"
    )


def _load_safetensors_file(path: Path) -> tuple[LanguageModel, Tokenizer]:
    keys = _safetensors_keys(path)
    if "tok_emb.weight" in keys:
        return load_book_gpt(path), gpt2_tokenizer()
    if {"wte.weight", "transformer.wte.weight"} & keys:
        return load_hf_gpt2(path), gpt2_tokenizer()
    if "model.embed_tokens.weight" in keys:
        return _load_folder(path.parent)
    raise GptclfError(
        f"{path}: tensors match no supported layout (book GPT, Hugging Face GPT-2/Llama)"
    )


def load_local(path: Path) -> tuple[LanguageModel, Tokenizer]:
    """A model and its tokenizer from a local file or folder, in whichever format it is."""
    if path.is_dir():
        return _load_folder(path)
    if not path.exists():
        raise GptclfError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".gguf":
        return load_gguf(path)
    if suffix in (".pth", ".pt"):
        return load_book_gpt(path), gpt2_tokenizer()
    if suffix == ".safetensors":
        return _load_safetensors_file(path)
    raise GptclfError(f"{path}: unknown weights format {suffix!r} (.gguf, .safetensors, .pth)")
