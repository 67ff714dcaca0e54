"""A loaded run is verified before it is trusted: every field of ``config.json`` has the type and
range training writes, and the weights file is the very one training wrote (its SHA-256, and
every tensor's name and shape) and holds every tensor the recipe trains."""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from gptclf.assets import sha256_of
from gptclf.data.labels import LabelMap
from gptclf.errors import GptclfError
from gptclf.models import FAMILIES, Family

SPECIAL_IDS = ("eos_id", "bos_id", "pad_id")
SHA256 = re.compile(r"[0-9a-f]{64}")
CAN_BE_ZERO = {"drop_rate"}  # architecture numbers that may be 0; all others must be positive


def checked_family(name: object) -> Family:
    if name not in FAMILIES:
        raise GptclfError(f"family {name!r} is not one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


def check_architecture(family: Family, architecture: object) -> None:
    """Every field of the family's config present (but those added since a run could be
    written, whose defaults apply), of its type, and in range."""
    if not isinstance(architecture, dict):
        raise GptclfError(f"architecture must be a mapping, not {architecture!r}")
    hints = typing.get_type_hints(family.config)
    unknown = sorted(set(architecture) - set(hints))
    missing = sorted(set(hints) - set(architecture) - set(family.added_fields))
    if unknown or missing:
        raise GptclfError(
            f"architecture does not fit {family.name}: unknown {unknown}, missing {missing}"
        )
    for name, value in architecture.items():
        if not _fits(value, hints[name]) or _out_of_range(name, value):
            raise GptclfError(f"architecture: {name} = {value!r} is not a valid value")


def _fits(value: object, hint: object) -> bool:
    allowed = typing.get_args(hint) or (hint,)
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int) and float in allowed:
        return True
    return isinstance(value, allowed)


def _out_of_range(name: str, value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return value < 0 if name in CAN_BE_ZERO else value <= 0


def checked_labels(stored: object) -> LabelMap:
    """The label map, which must be one training writes: two or more distinct labels (integers
    or text) in gptclf's order, each with a distinct name."""
    labels = LabelMap.from_json(stored if isinstance(stored, dict) else {})
    plain = all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in labels.values)
    if plain and all(isinstance(name, str) for name in labels.names):
        names = dict(zip(labels.values, labels.names, strict=True))
        rebuilt = LabelMap.from_labels(labels.values, names, source="labels")
        if replace(rebuilt, multi_label=labels.multi_label) == labels:
            return labels
    raise GptclfError(f"labels are damaged: {stored!r}")


def check_lengths(max_length: object, pad_to: object, context_length: int) -> None:
    if not _is_count(max_length) or max_length > context_length:
        raise GptclfError(f"max_length = {max_length!r} is not a length from 1 to {context_length}")
    if pad_to is not None and (not _is_count(pad_to) or pad_to > max_length):
        raise GptclfError(f"pad_to = {pad_to!r} is not a length from 1 to max_length")


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_base(base_model: object, base_sha256: object, standalone: object) -> None:
    if not isinstance(base_model, str) or not isinstance(standalone, bool):
        raise GptclfError("base_model must be text and standalone true or false")
    if base_sha256 is None and not standalone:
        raise GptclfError("base_sha256 is missing, and the model is not standalone")
    if base_sha256 is not None and not SHA256.fullmatch(str(base_sha256)):
        raise GptclfError(f"base_sha256 = {base_sha256!r} is not a SHA-256")


def check_ensemble(record: object, n_classes: int) -> None:
    """None, or the record of a blended baseline: its weight, classes and files' SHA-256."""
    if record is None:
        return
    if not isinstance(record, dict) or set(record) != {"weight", "n_classes", "sha256"}:
        raise GptclfError("ensemble must hold weight, n_classes and sha256")
    weight, sha256 = record["weight"], record["sha256"]
    if not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
        raise GptclfError(f"ensemble weight = {weight!r} is not in [0, 1]")
    if record["n_classes"] != n_classes:
        raise GptclfError(f"ensemble n_classes = {record['n_classes']!r}, labels {n_classes}")
    if not isinstance(sha256, dict) or not all(isinstance(v, str) for v in sha256.values()):
        raise GptclfError("ensemble sha256 must map file names to digests")


def check_tokenizer(tokenizer: object, special_ids: object, vocab_size: int) -> None:
    if not isinstance(tokenizer, str) or not tokenizer:
        raise GptclfError(f"tokenizer = {tokenizer!r} is not a tokenizer name")
    if not isinstance(special_ids, dict) or set(special_ids) != set(SPECIAL_IDS):
        raise GptclfError(f"special_ids must name exactly {', '.join(SPECIAL_IDS)}")
    for name, value in special_ids.items():
        if value is not None and not _is_token_id(value, vocab_size):
            raise GptclfError(f"special_ids: {name} = {value!r} is not a token id")


def check_prefix(prefix_ids: object, vocab_size: int) -> None:
    if not isinstance(prefix_ids, list) or not all(
        _is_token_id(value, vocab_size) for value in prefix_ids
    ):
        raise GptclfError(f"prefix_ids = {prefix_ids!r} is not a list of token ids")


def _is_token_id(value: object, vocab_size: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < vocab_size


def weights_record(path: Path, tensors: Mapping[str, torch.Tensor]) -> dict:
    """What ``config.json`` records of the weights file: its SHA-256 and each tensor's shape."""
    shapes = {name: list(tensor.shape) for name, tensor in sorted(tensors.items())}
    return {"sha256": sha256_of(path), "tensors": shapes}


def verified_weights(path: Path, record: object) -> dict[str, torch.Tensor]:
    """The tensors of the weights file, once it is shown to be the file ``record`` describes."""
    if not path.is_file():
        raise GptclfError(f"{path}: file not found")
    if not isinstance(record, dict) or set(record) != {"sha256", "tensors"}:
        raise GptclfError(f"{path}: config.json does not record this file (sha256, tensors)")
    actual = sha256_of(path)
    if actual != record["sha256"]:
        raise GptclfError(
            f"{path}: SHA-256 is {actual}, but config.json records {record['sha256']}: "
            "the file changed after training"
        )
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise GptclfError(f"{path}: not a readable safetensors file ({exc})") from exc
    shapes = {name: list(tensor.shape) for name, tensor in sorted(tensors.items())}
    if shapes != record["tensors"]:
        raise GptclfError(f"{path}: its tensors are not those config.json records")
    return tensors


def check_trained_tensors(path: Path, saved: Mapping, expected: set[str]) -> None:
    """The weights hold exactly the tensors the recipe trains (all of them when standalone)."""
    missing, unknown = sorted(expected - set(saved)), sorted(set(saved) - expected)
    if missing:
        raise GptclfError(f"{path}: missing tensors {', '.join(missing[:3])}")
    if unknown:
        raise GptclfError(f"{path}: tensors {', '.join(unknown[:3])} do not fit this model")
