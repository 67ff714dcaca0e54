"""Low-rank adaptation (LoRA): train a small update ``B @ A`` next to each frozen linear layer.

A wrapped layer computes ``base(x) + (x @ A.T @ B.T) * alpha / rank``. ``B`` starts at zero, so a
freshly adapted model computes exactly what the pretrained one did; after training the update can
be folded back into plain ``nn.Linear`` layers with :func:`merge_lora`.

Parameter names stay readable in a state dict: ``trf_blocks.11.att.W_query.lora_A`` for the
adapter and ``trf_blocks.11.att.W_query.base.weight`` for the frozen pretrained weight.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gptclf.errors import GptclfError
from gptclf.models import family_of
from gptclf.models.family import LORA_TARGET_NAMES


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update on the side."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank
        weight = base.weight
        self.lora_A = nn.Parameter(
            torch.empty(rank, base.in_features, device=weight.device, dtype=weight.dtype)
        )
        self.lora_B = nn.Parameter(
            torch.zeros(base.out_features, rank, device=weight.device, dtype=weight.dtype)
        )
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # as nn.Linear inits its weight
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B)
        return self.base(x) + update * self.scaling

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing what this layer computes (without dropout)."""
        weight = self.base.weight
        linear = nn.Linear(
            self.base.in_features,
            self.base.out_features,
            bias=self.base.bias is not None,
            device=weight.device,
            dtype=weight.dtype,
        )
        with torch.no_grad():
            delta = self.lora_B.float() @ self.lora_A.float() * self.scaling
            linear.weight.copy_(weight.float() + delta)
            if self.base.bias is not None:
                linear.bias.copy_(self.base.bias)
        return linear

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}"


def apply_lora(
    model: nn.Module,
    rank: int,
    alpha: float,
    targets: Sequence[str] = ("qv",),
    blocks: Iterable[int] | None = None,
    dropout: float = 0.0,
) -> list[str]:
    """Wrap the target linear layers of ``model.trf_blocks[i]`` for each i in ``blocks`` (default
    all; negative indices count from the end) in :class:`LoRALinear`; return the names wrapped.

    Targets are friendly names (see ``Family.lora_targets``) or module-name suffixes such as
    ``W_key`` or ``ff.fc3``. Only the wrapped base layers are frozen; the caller decides what
    else trains.
    """
    _check_settings(rank, alpha, dropout)
    names = _target_layer_names(model, targets, _block_indices(model, blocks))
    for name in names:
        _replace_module(model, name, LoRALinear(model.get_submodule(name), rank, alpha, dropout))
    return names


def merge_lora(model: nn.Module) -> int:
    """Replace each :class:`LoRALinear` in ``model`` by its merged Linear; return how many."""
    lora_layers = [(name, m) for name, m in model.named_modules() if isinstance(m, LoRALinear)]
    for name, layer in lora_layers:
        _replace_module(model, name, layer.merged())
    return len(lora_layers)


def lora_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """The (state-dict name, parameter) of every ``lora_A`` and ``lora_B`` in ``model``."""
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            yield f"{name}.lora_A", module.lora_A
            yield f"{name}.lora_B", module.lora_B


def _check_settings(rank: int, alpha: float, dropout: float) -> None:
    if rank < 1:
        raise GptclfError(f"LoRA rank must be at least 1, got {rank}")
    if alpha <= 0:
        raise GptclfError(f"LoRA alpha must be positive, got {alpha}")
    if not 0 <= dropout < 1:
        raise GptclfError(f"LoRA dropout must be in [0, 1), got {dropout}")


def _block_indices(model: nn.Module, blocks: Iterable[int] | None) -> list[int]:
    """The chosen block indices, made non-negative, without repeats, in order."""
    count = len(model.trf_blocks)
    if blocks is None:
        return list(range(count))
    indices = []
    for index in blocks:
        if not -count <= index < count:
            raise GptclfError(f"block {index} does not exist; the model has {count} blocks")
        indices.append(index % count)
    return sorted(set(indices))


def _target_layer_names(model: nn.Module, targets: Sequence[str], blocks: list[int]) -> list[str]:
    """Qualified names of the linear layers the targets pick out in the chosen blocks, sorted."""
    names: set[str] = set()
    for target in targets:
        found = {
            f"trf_blocks.{index}.{name}"
            for index in blocks
            for name in _matching_linears(model.trf_blocks[index], target)
        }
        if not found:
            raise GptclfError(
                f"LoRA target {target!r} matches no linear layer in the chosen blocks; use one of "
                f"{', '.join(LORA_TARGET_NAMES)} or a module-name suffix such as 'W_key' or "
                "'ff.fc3'"
            )
        names |= found
    return sorted(names)


def _matching_linears(block: nn.Module, target: str) -> list[str]:
    """Names, inside ``block``, of the plain linear layers that ``target`` picks out: a friendly
    target of the block's family (``qv``, ``attention``, ``mlp``, ``all``) or a name suffix."""
    friendly = target in LORA_TARGET_NAMES
    suffixes = family_of(block).lora_targets[target] if friendly else (target,)
    return [
        name
        for name, module in block.named_modules()
        if isinstance(module, nn.Linear) and any(_ends_with(name, suffix) for suffix in suffixes)
    ]


def _ends_with(name: str, suffix: str) -> bool:
    """Whether a dotted module name ends with ``suffix`` at a component boundary."""
    return name == suffix or name.endswith(f".{suffix}")


def _replace_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child_name = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child_name, new)
