"""Greedy text completion: the quickest way to see that pretrained weights loaded correctly."""

from __future__ import annotations

import torch

from gptclf.models import LanguageModel


@torch.inference_mode()
def generate_greedy(
    model: LanguageModel, ids: list[int], max_new_tokens: int, eos_id: int | None = None
) -> list[int]:
    """Append up to ``max_new_tokens`` most-likely tokens to ``ids``, stopping at ``eos_id``."""
    ids = list(ids)
    for _ in range(max_new_tokens):
        context = torch.tensor([ids[-model.context_length :]])
        next_id = int(model(context)[0, -1].argmax())
        if next_id == eos_id:
            break
        ids.append(next_id)
    return ids
