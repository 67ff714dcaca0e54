"""A language model turned classifier: its output head swapped for a class head that reads one
pooled hidden state per text, built the same way for training and for loading."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gptclf.errors import GptclfError
from gptclf.lora import apply_lora
from gptclf.models import LanguageModel
from gptclf.models.stack import rows_at

POOLINGS = ("last-token", "last-position", "mean", "first", "last-token+mean")


def read_positions(attention_mask: torch.Tensor, pooling: str) -> torch.Tensor | None:
    """The one position (batch,) each sequence of a right-padded batch is read at, or None where
    the pooling reads them all (mean, last-token+mean)."""
    batch, seq_len = attention_mask.shape
    if pooling == "last-token":  # the real last token of each sequence
        return attention_mask.sum(dim=1) - 1
    if pooling == "last-position":  # position -1 of the padded batch: the book's choice
        return torch.full((batch,), seq_len - 1, device=attention_mask.device)
    if pooling == "first":
        return torch.zeros(batch, dtype=torch.long, device=attention_mask.device)
    return None


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of each sequence's hidden states (batch, seq, dim) over its real tokens."""
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1)


def pooled_width(pooling: str) -> int:
    """How many hidden states side by side the class head reads."""
    return 2 if pooling == "last-token+mean" else 1


def pool_all(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """The pooled features (batch, width * dim) of every position's hidden states, for the
    poolings that read them all."""
    mean = mean_pool(hidden, attention_mask)
    if pooling == "mean":
        return mean
    last = rows_at(hidden, read_positions(attention_mask, "last-token"))[:, 0]
    return torch.cat([last, mean], dim=-1)


class SequenceClassifier(nn.Module):
    """``language_model.out_head`` becomes a ``hidden -> n_classes`` linear layer (as in the
    book), applied to the pooled hidden state; with ``concat_depths``, to it beside the pooled
    states after those bottom blocks (each through the final norm). With ``attend_to_padding``
    the model sees the padded batch without an attention mask, exactly as the book's chapter 6
    feeds it."""

    def __init__(
        self,
        language_model: LanguageModel,
        n_classes: int,
        pooling: str = "last-token",
        attend_to_padding: bool = False,
        concat_depths: tuple[int, ...] = (),
        head_bias: bool = True,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise GptclfError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
        n_blocks = len(language_model.trf_blocks)
        if any(not 1 <= d < n_blocks for d in concat_depths):
            raise GptclfError(
                f"--concat-depths {' '.join(map(str, concat_depths))}: each must be below the "
                f"{n_blocks} blocks read; choose from 1..{n_blocks - 1}"
            )
        reads = 1 + len(set(concat_depths))
        width = reads * pooled_width(pooling) * language_model.cfg.emb_dim
        language_model.out_head = nn.Linear(width, n_classes, bias=head_bias)
        self.language_model = language_model
        self.pooling = pooling
        self.attend_to_padding = attend_to_padding
        self.concat_depths = sorted(set(concat_depths))
        self.top_block_reads_all = False  # True: the top block computes every position
        self.cached_depth = 0  # a trained run's: the bottom blocks whose output it cached

    @property
    def head(self) -> nn.Linear:
        return self.language_model.out_head

    def forward(
        self, inputs: torch.Tensor, attention_mask: torch.Tensor, start_block: int = 0
    ) -> torch.Tensor:
        """Class logits (batch, n_classes) from token ids (batch, seq), or, with ``start_block``
        > 0, from the hidden states (batch, seq, dim) that enter that block. Where one position
        is read, the last block computes that position only."""
        lm = self.language_model
        exported = torch.compiler.is_exporting()  # a graph's inputs may be padded: always masked
        without_padding = self.attend_to_padding or (not exported and bool(attention_mask.all()))
        mask = None if without_padding else attention_mask
        x = lm.embed(inputs) if start_block == 0 else inputs.float()
        at = read_positions(attention_mask, self.pooling)
        features = []
        for depth in self.concat_depths:
            if depth < start_block:  # frozen_prefix keeps the depths read above the cache
                raise ValueError(f"the states after block {depth} are not computed")
            x = lm.run_blocks(x, mask, start=start_block, stop=depth)
            features.append(self._pooled(x, attention_mask, at))
            start_block = depth
        if self.top_block_reads_all and at is not None:
            hidden = rows_at(lm.run_blocks(x, mask, start=start_block), at)
        else:
            hidden = lm.run_blocks(x, mask, start=start_block, at=at)
        hidden = lm.final_norm(hidden)
        top = pool_all(hidden, attention_mask, self.pooling) if at is None else hidden[:, 0]
        return self.head(torch.cat([*features, top], dim=-1))

    def _pooled(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, at: torch.Tensor | None
    ) -> torch.Tensor:
        """The final-norm features (batch, width * dim) of every position's hidden states."""
        if at is None:
            return pool_all(self.language_model.final_norm(hidden), attention_mask, self.pooling)
        return self.language_model.final_norm(rows_at(hidden, at)[:, 0])

    def frozen_prefix(self) -> int:
        """How many bottom blocks give the same output every time, so it can be cached: nothing
        in them (or in the embeddings) trains, and no dropout runs there; none above a depth
        whose states are read. 0 when none can."""
        lm = self.language_model
        embeddings = lm.embedding_layers()
        if lm.dropout_rate > 0 or any(p.requires_grad for e in embeddings for p in e.parameters()):
            return 0
        trains = [any(p.requires_grad for p in b.parameters()) for b in lm.trf_blocks]
        frozen = trains.index(True) if True in trains else len(trains)
        return min([frozen, *self.concat_depths])


@dataclass(frozen=True)
class ClassifierSpec:
    """What turns a language model into a classifier: the classes, how the hidden states are
    read and from how many bottom blocks (None: all; ``concat_depths``: also after these), and
    the LoRA adapters (``apply_lora``'s
    keyword arguments) if any."""

    n_classes: int
    pooling: str = "last-token"
    attend_to_padding: bool = False
    lora: dict | None = None
    depth: int | None = None
    concat_depths: tuple[int, ...] = ()
    head_bias: bool = True


def build_classifier(language_model: LanguageModel, spec: ClassifierSpec) -> SequenceClassifier:
    """The classifier of ``spec`` around ``language_model``: the blocks above ``spec.depth``
    dropped, a new class head (initialised from torch's random state), then the LoRA adapters."""
    if spec.depth is not None:
        keep_bottom_blocks(language_model, spec.depth)
    classifier = SequenceClassifier(
        language_model,
        spec.n_classes,
        spec.pooling,
        spec.attend_to_padding,
        spec.concat_depths,
        spec.head_bias,
    )
    if spec.lora is not None:
        apply_lora(language_model, **spec.lora)
    return classifier


def keep_bottom_blocks(language_model: LanguageModel, depth: int) -> None:
    """Drop every block above the bottom ``depth``: the features come from that depth, and the
    final norm is applied there."""
    n_blocks = len(language_model.trf_blocks)
    if not 1 <= depth <= n_blocks:
        raise GptclfError(f"--depth {depth}: the model has {n_blocks} blocks; choose 1..{n_blocks}")
    language_model.trf_blocks = nn.ModuleList(list(language_model.trf_blocks)[:depth])
