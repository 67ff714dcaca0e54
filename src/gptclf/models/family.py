"""What gptclf needs to know about a model family, and what every family's model offers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gptclf.models.stack import run_stack


class LanguageModel(nn.Module):
    """What every family's model is: embeddings, a stack of blocks (``trf_blocks``), a final norm
    and an output head (``out_head``, which a classifier replaces by its class head; None where
    the head is tied to the token embeddings). A family's model says how it embeds tokens; each
    block is called as ``block(x, mask, at=None)`` and says how many of the latest keys its
    queries see (``window``, None for all before them)."""

    cfg: Any
    tok_emb: nn.Embedding
    trf_blocks: nn.ModuleList
    final_norm: nn.Module
    out_head: nn.Module | None

    @property
    def context_length(self) -> int:
        return self.cfg.context_length

    @property
    def dropout_rate(self) -> float:
        return 0.0

    def embedding_layers(self) -> list[nn.Module]:
        """The layers ``embed`` reads: nothing in them may train for their output to be cached."""
        return [self.tok_emb]

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The input of the first block (batch, seq, emb_dim)."""
        raise NotImplementedError

    def run_blocks(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        start: int = 0,
        stop: int | None = None,
        at: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Blocks ``start`` to ``stop`` (default: to the end) on hidden states x (b, t, d); with
        ``at`` (b,) only the states at those positions, (b, 1, d) (see ``run_stack``)."""
        return run_stack(self.trf_blocks[start:stop], x, attention_mask, at)

    def hidden_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Final-norm hidden states (batch, seq, emb_dim): what the output head reads."""
        return self.final_norm(self.run_blocks(self.embed(input_ids), attention_mask))

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (batch, seq, out_features)."""
        hidden = self.hidden_states(input_ids, attention_mask)
        if self.out_head is None:  # tied: the output head is the token embedding matrix
            return F.linear(hidden, self.tok_emb.weight)
        return self.out_head(hidden)


@dataclass(frozen=True)
class Family:
    """A model family: its model, config and block classes, which linear layers of a block each
    friendly LoRA target names, and the sizes that can be built with random weights."""

    name: str
    model: type[nn.Module]
    config: type
    block: type[nn.Module]
    lora_targets: dict[str, tuple[str, ...]]
    presets: dict[str, Any] = field(default_factory=dict)
    added_fields: tuple[str, ...] = ()  # config fields that run folders written before may lack
    upgrade: Callable[[dict], dict] = dict  # an older run's config fields as they are now

    def build(self, architecture: dict) -> nn.Module:
        """The model of ``architecture`` (its config's fields) with storage-less weights, to be
        filled by loading."""
        with torch.device("meta"):
            return self.model(self.config(**architecture))


LORA_TARGET_NAMES = ("qv", "attention", "mlp", "all")


def lora_targets(attention: tuple[str, ...], mlp: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """The friendly LoRA targets of a block whose attention and feed-forward linear layers have
    these module names: query and value, all attention, the feed-forward, or all of them."""
    query_value = tuple(name for name in attention if name.endswith(("W_query", "W_value")))
    return {"qv": query_value, "attention": attention, "mlp": mlp, "all": attention + mlp}
