"""Reading tensors from a safetensors file, a sharded folder, or the Hugging Face Hub."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from gptclf.errors import GptclfError

HUB_CONFIGS = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"]
HUB_WEIGHTS = ["*.safetensors", "*.safetensors.index.json"]


def _safetensors_files(path: Path) -> list[Path]:
    """A ``.safetensors`` file, or every shard in a folder."""
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise GptclfError(f"{path}: no .safetensors file in this folder")
        return files
    if path.is_file():
        return [path]
    raise GptclfError(f"{path}: file not found")


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a ``.safetensors`` file, or of every shard in a folder."""
    tensors: dict[str, torch.Tensor] = {}
    for file in _safetensors_files(path):
        try:
            tensors.update(load_file(file))
        except (SafetensorError, OSError) as exc:
            raise GptclfError(f"{file}: not a readable safetensors file ({exc})") from exc
    return tensors


def read_tensor(path: Path, name: str) -> torch.Tensor | None:
    """The tensor ``name`` of a ``.safetensors`` file or of a folder's shards (only it is
    read), or None where none holds it."""
    for file in _safetensors_files(path):
        try:
            with safe_open(file, framework="pt") as opened:
                if name in opened.keys():  # noqa: SIM118 - safe_open has no __contains__
                    return opened.get_tensor(name)
        except (SafetensorError, OSError) as exc:
            raise GptclfError(f"{file}: not a readable safetensors file ({exc})") from exc
    return None


def read_config(folder: Path, name: str = "config.json") -> dict | None:
    """``config.json`` (or another JSON file named ``name``) beside the weights, if there is
    one."""
    path = folder / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GptclfError(f"{path}: not valid JSON ({exc})") from exc


def hub_snapshot(repo_id: str, weights: bool = True) -> Path:
    """A local folder with the repository's config and tokenizer files (and its weights, unless
    ``weights`` is False): from the Hugging Face cache, or downloaded into it when the machine
    is online (unless ``HF_HUB_OFFLINE`` is set)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import GatedRepoError

    files = HUB_CONFIGS + HUB_WEIGHTS * weights
    try:
        return Path(snapshot_download(repo_id, allow_patterns=files, local_files_only=True))
    except Exception as cached_error:
        if constants.HF_HUB_OFFLINE:
            raise GptclfError(
                f"{repo_id} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
            ) from cached_error
    try:
        return Path(snapshot_download(repo_id, allow_patterns=files))
    except GatedRepoError as exc:
        raise GptclfError(
            f"{repo_id} is gated: accept its licence on huggingface.co, then log in here "
            "(hf auth login) or set HF_TOKEN"
        ) from exc
    except Exception as exc:
        raise GptclfError(
            f"{repo_id} is not in the local Hugging Face cache and could not be downloaded "
            f"({type(exc).__name__}); pass a local path to its weights instead"
        ) from exc


def is_hub_cached(repo_id: str) -> bool:
    """Whether the local Hugging Face cache holds the repository's weights (one file or the
    index of its shards)."""
    from huggingface_hub import try_to_load_from_cache

    names = ("model.safetensors", "model.safetensors.index.json")
    return any(isinstance(try_to_load_from_cache(repo_id, name), str) for name in names)
