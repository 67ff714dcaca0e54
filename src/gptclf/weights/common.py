"""What every weight loader shares: a declarative map from a file's tensors to the model's
parameters, applied strictly so that a wrong file fails loudly instead of loading half-way."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from gptclf.errors import GptclfError

M = TypeVar("M", bound=nn.Module)


def _unchanged(t: torch.Tensor) -> torch.Tensor:
    return t


@dataclass(frozen=True)
class Rule:
    """Parameter ``param`` of the model is ``transform(file[tensor])``."""

    param: str
    tensor: str
    transform: Callable[[torch.Tensor], torch.Tensor] = _unchanged


Source = str | tuple[str, Callable[[torch.Tensor], torch.Tensor]]


def rules_of(names: Mapping[str, Source], ours: str = "", theirs: str = "") -> list[Rule]:
    """A rule per entry: our parameter ``ours + key`` is the file's tensor ``theirs + value``,
    or, where the value is (name, transform), that tensor transformed."""
    rules = []
    for param, source in names.items():
        tensor, transform = (source, _unchanged) if isinstance(source, str) else source
        rules.append(Rule(ours + param, theirs + tensor, transform))
    return rules


def stack_rules(n_layers: int, theirs: str, names: Mapping[str, Source]) -> list[Rule]:
    """``rules_of`` for every block i: ``trf_blocks.{i}.<ours>`` from ``<theirs with i>.<name>``
    (``theirs`` is a format string such as ``"blk.{i}"``)."""
    return [
        rule
        for i in range(n_layers)
        for rule in rules_of(names, f"trf_blocks.{i}.", theirs.format(i=i) + ".")
    ]


def _shape(size: torch.Size) -> str:
    return "(" + ", ".join(str(n) for n in size) + ")"


def load_by_rules(
    model: nn.Module,
    rules: Iterable[Rule],
    tensors: Mapping[str, torch.Tensor],
    source: str,
    ignore: str | None = None,
) -> None:
    """Fill every parameter of ``model`` from ``tensors`` by ``rules``.

    A missing or mis-shaped tensor is an error naming it and ``source``; so is a tensor the rules
    do not use, unless its name matches the regular expression ``ignore`` (e.g. saved buffers).
    """
    params = dict(model.named_parameters())
    rules = list(rules)
    uncovered = set(params) - {r.param for r in rules}
    assert not uncovered, f"no rule for parameter(s) {sorted(uncovered)}"

    values: dict[str, torch.Tensor] = {}
    storage_starts: set[int] = set()
    for rule in rules:
        if rule.tensor not in tensors:
            raise GptclfError(f"{source}: missing tensor {rule.tensor}")
        value = rule.transform(tensors[rule.tensor])
        expected = params[rule.param].shape
        if value.shape != expected:
            raise GptclfError(
                f"{source}: tensor {rule.tensor} has shape {_shape(tensors[rule.tensor].shape)}, "
                f"which does not fit {rule.param} {_shape(expected)}"
            )
        value = value.to(params[rule.param].dtype).contiguous()
        if value.data_ptr() in storage_starts:  # one tensor feeding two parameters (e.g. tied)
            value = value.clone()
        storage_starts.add(value.data_ptr())
        values[rule.param] = value

    used = {r.tensor for r in rules}
    unused = sorted(n for n in tensors if n not in used and not (ignore and re.search(ignore, n)))
    if unused:
        more = f" and {len(unused) - 3} more" if len(unused) > 3 else ""
        raise GptclfError(
            f"{source}: unexpected tensor(s) {', '.join(unused[:3])}{more}; "
            "is this the right model family?"
        )
    model.load_state_dict(values, strict=True, assign=True)


def empty_model(model_class: type[M], cfg) -> M:
    """A model whose parameters have no storage yet (``load_by_rules`` gives them theirs),
    skipping the random initialisation that loading would overwrite."""
    with torch.device("meta"):
        return model_class(cfg)
