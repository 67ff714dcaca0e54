"""Which parameters of a classifier train: the head, the top blocks, everything, or LoRA
adapters."""

from __future__ import annotations

import re

from torch import nn

from gptclf.classifier import SequenceClassifier
from gptclf.errors import GptclfError

TRAINABLE_PATTERN = r"head|last-block|last-blocks:\d+|all|lora"
TRAINABLE_SHOWN = "head, last-block, last-blocks:K, all, lora"


def trainable_blocks(spec: str, n_layers: int) -> int:
    """How many of the top transformer blocks train fully under ``spec``."""
    if spec in ("head", "lora"):
        return 0
    if spec == "last-block":
        return 1
    if spec == "all":
        return n_layers
    match = re.fullmatch(r"last-blocks:(\d+)", spec)
    if match is None:
        raise GptclfError(f"unknown --trainable {spec!r}; choose one of {TRAINABLE_SHOWN}")
    k = int(match.group(1))
    if not 1 <= k <= n_layers:
        raise GptclfError(
            f"--trainable {spec}: the model has {n_layers} blocks, K must be 1..{n_layers}"
        )
    return k


def set_trainable(classifier: SequenceClassifier, spec: str) -> None:
    """Freeze everything, then unfreeze what ``spec`` trains: the head always; the top K blocks
    and the final norm for ``last-block``/``last-blocks:K``/``all``; everything for ``all``.
    For ``lora`` the LoRA matrices (added by ``gptclf.lora.apply_lora``) train with the head."""
    lm = classifier.language_model
    n_top = trainable_blocks(spec, len(lm.trf_blocks))
    for param in lm.parameters():
        param.requires_grad = False
    unfrozen: list[nn.Module] = [classifier.head]
    if n_top:
        unfrozen += [*lm.trf_blocks[len(lm.trf_blocks) - n_top :], lm.final_norm]
    if spec == "all":
        unfrozen = [lm]
    for module in unfrozen:
        for param in module.parameters():
            param.requires_grad = True
    if spec == "lora":
        for name, param in lm.named_parameters():
            if name.endswith(("lora_A", "lora_B")):
                param.requires_grad = True


def trainable_parameters(classifier: SequenceClassifier) -> dict[str, nn.Parameter]:
    """The parameters that train, by their name in the language model's state dict."""
    return {n: p for n, p in classifier.language_model.named_parameters() if p.requires_grad}


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(module.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
