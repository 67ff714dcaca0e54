"""Weight loaders, one per format, and the dispatch that picks one for a local path."""

from __future__ import annotations

from pathlib import Path

from safetensors import safe_open

from gptclf.errors import GptclfError
from gptclf.models import LanguageModel
from gptclf.tokenizers import HFTokenizer, Tokenizer, gpt2_tokenizer
from gptclf.weights.book import load_book_gpt
from gptclf.weights.files import read_config
from gptclf.weights.gguf import load_gguf
from gptclf.weights.huggingface import load_hf_gpt2, load_hf_llama


def _safetensors_keys(path: Path) -> set[str]:
    try:
        with safe_open(path, framework="pt") as f:
            return set(f.keys())
    except Exception as exc:
        raise GptclfError(f"{path}: not a readable safetensors file ({exc})") from exc


def _folder_tokenizer(folder: Path) -> HFTokenizer:
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise GptclfError(f"{folder}: no tokenizer.json beside the weights")
    config = read_config(folder) or {}
    eos = config.get("eos_token_id")
    eos = eos[0] if isinstance(eos, list) else eos
    if eos is None:
        raise GptclfError(f"{folder}/config.json: eos_token_id is missing")
    return HFTokenizer.from_file(
        path, eos_id=eos, bos_id=config.get("bos_token_id"), pad_id=config.get("pad_token_id")
    )


def _load_folder(folder: Path) -> tuple[LanguageModel, Tokenizer]:
    config = read_config(folder)
    model_type = (config or {}).get("model_type")
    if model_type == "gpt2":
        return load_hf_gpt2(folder), gpt2_tokenizer()
    if model_type == "llama":
        return load_hf_llama(folder), _folder_tokenizer(folder)
    ggufs = sorted(folder.glob("*.gguf"))
    if config is None and len(ggufs) == 1:
        return load_gguf(ggufs[0])
    if config is None:
        raise GptclfError(f"{folder}: no config.json (or single .gguf file) in this folder")
    raise GptclfError(
        f"{folder}/config.json: model_type {model_type!r} is not supported (gpt2, llama)"
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
