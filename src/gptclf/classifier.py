"""A language model turned classifier: its output head swapped for a class head that reads one
pooled hidden state per text, and a choice of which parameters train."""

from __future__ import annotations

import re

import torch
from torch import nn

from gptclf.data.batching import Collator, LengthBucketSampler
from gptclf.errors import GptclfError
from gptclf.models import LanguageModel
from gptclf.precision import autocast

POOLINGS = ("last-token", "last-position", "mean", "first")
TRAINABLE = ("head", "last-block", "last-blocks:K", "all", "lora")


def read_positions(attention_mask: torch.Tensor, pooling: str) -> torch.Tensor | None:
    """The one position (batch,) each sequence of a right-padded batch is read at, or None where
    the pooling reads them all (mean)."""
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


class SequenceClassifier(nn.Module):
    """``model.out_head`` becomes a ``hidden -> n_classes`` linear layer (as in the book), applied
    to the pooled hidden state. With ``attend_to_padding`` the model sees the padded batch without
    an attention mask, exactly as the book's chapter 6 feeds it."""

    def __init__(
        self,
        model: LanguageModel,
        n_classes: int,
        pooling: str = "last-token",
        attend_to_padding: bool = False,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise GptclfError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
        model.out_head = nn.Linear(model.cfg.emb_dim, n_classes)
        self.model = model
        self.pooling = pooling
        self.attend_to_padding = attend_to_padding

    @property
    def head(self) -> nn.Linear:
        return self.model.out_head

    def forward(
        self, inputs: torch.Tensor, attention_mask: torch.Tensor, start_block: int = 0
    ) -> torch.Tensor:
        """Class logits (batch, n_classes) from token ids (batch, seq), or, with ``start_block``
        > 0, from the hidden states (batch, seq, dim) that enter that block. Where one position
        is read, the last block computes that position only."""
        without_padding = self.attend_to_padding or bool(attention_mask.all())
        mask = None if without_padding else attention_mask
        x = self.model.embed(inputs) if start_block == 0 else inputs.float()
        at = read_positions(attention_mask, self.pooling)
        hidden = self.model.final_norm(self.model.run_blocks(x, mask, start=start_block, at=at))
        return self.head(mean_pool(hidden, attention_mask) if at is None else hidden[:, 0])

    def frozen_prefix(self) -> int:
        """How many bottom blocks give the same output every time, so it can be cached: nothing
        in them (or in the embeddings) trains, and no dropout runs there. 0 when none can."""
        model = self.model
        embeddings = [model.tok_emb, getattr(model, "pos_emb", None)]
        if getattr(model.cfg, "drop_rate", 0.0) > 0 or any(
            p.requires_grad for e in embeddings if e is not None for p in e.parameters()
        ):
            return 0
        for index, block in enumerate(model.trf_blocks):
            if any(p.requires_grad for p in block.parameters()):
                return index
        return len(model.trf_blocks)

    @torch.inference_mode()
    def prefix_states(
        self,
        sequences: list[list[int]],
        n_blocks: int,
        pad_id: int,
        precision: str = "fp32",
        batch_size: int = 32,
    ) -> list[torch.Tensor]:
        """Hidden states (len, dim) of each sequence after the bottom ``n_blocks`` blocks, kept
        in bfloat16 when computed in it."""
        out: list[torch.Tensor] = [torch.empty(0)] * len(sequences)
        collate = Collator(pad_id)
        sampler = LengthBucketSampler([len(s) for s in sequences], batch_size, shuffle=False)
        for indices in sampler:
            batch = collate([(sequences[i], None) for i in indices])
            mask = None if bool(batch.attention_mask.all()) else batch.attention_mask
            with autocast(precision):
                states = self.model.run_blocks(self.model.embed(batch.inputs), mask, stop=n_blocks)
            states = states.to(torch.bfloat16 if precision == "bf16" else torch.float32)
            for row, i in enumerate(indices):
                out[i] = states[row, : len(sequences[i])].clone()
        return out


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
        raise GptclfError(f"unknown --train {spec!r}; choose one of {', '.join(TRAINABLE)}")
    k = int(match.group(1))
    if not 1 <= k <= n_layers:
        raise GptclfError(
            f"--train {spec}: the model has {n_layers} blocks, K must be 1..{n_layers}"
        )
    return k


def set_trainable(classifier: SequenceClassifier, spec: str) -> None:
    """Freeze everything, then unfreeze what ``spec`` trains: the head always; the top K blocks
    and the final norm for ``last-block``/``last-blocks:K``/``all``; everything for ``all``.
    For ``lora`` the LoRA matrices (added by ``gptclf.lora.apply_lora``) train with the head."""
    model = classifier.model
    n_top = trainable_blocks(spec, len(model.trf_blocks))
    for param in model.parameters():
        param.requires_grad = False
    unfrozen: list[nn.Module] = [classifier.head]
    if n_top:
        unfrozen += [*model.trf_blocks[len(model.trf_blocks) - n_top :], model.final_norm]
    if spec == "all":
        unfrozen = [model]
    for module in unfrozen:
        for param in module.parameters():
            param.requires_grad = True
    if spec == "lora":
        for name, param in model.named_parameters():
            if name.endswith(("lora_A", "lora_B")):
                param.requires_grad = True


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    params = list(module.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


@torch.inference_mode()
def batched_logits(
    classifier: SequenceClassifier,
    sequences: list[list[int]] | list[torch.Tensor],
    pad_id: int,
    batch_size: int = 32,
    pad_to: int | None = None,
    precision: str = "fp32",
    start_block: int = 0,
) -> torch.Tensor:
    """Class logits (n, n_classes) of token sequences (or of cached hidden states entering
    ``start_block``), in input order; batches are formed from sequences of similar length so
    little compute goes to padding."""
    was_training = classifier.training
    classifier.eval()
    sampler = LengthBucketSampler([len(s) for s in sequences], batch_size, shuffle=False)
    collate = Collator(pad_id, pad_to)
    out = torch.empty(len(sequences), classifier.head.out_features)
    for indices in sampler:
        batch = collate([(sequences[i], None) for i in indices])
        with autocast(precision):
            out[indices] = classifier(batch.inputs, batch.attention_mask, start_block).float()
    classifier.train(was_training)
    return out
