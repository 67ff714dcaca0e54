"""Running a stack of transformer blocks, for every family: the attention masks, reading one
position per sequence, and the last block computing only the positions read."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def causal_padding_mask(
    attention_mask: torch.Tensor | None,
    seq_len: int,
    window: int | None = None,
    device: torch.device | None = None,
) -> torch.Tensor | None:
    """Boolean (batch, 1, seq, seq) mask: True where a query may attend to a key.

    A query sees itself and earlier keys that are not padding; with ``window``, only the
    ``window`` latest of them (itself included). ``attention_mask`` is (batch, seq) with 1 for real
    tokens and 0 for padding. Every query always sees itself, so padding rows never produce NaNs.
    ``None`` means no padding and no window: the caller uses the cheaper ``is_causal`` path.
    ``device``: where the mask is made when there is no ``attention_mask``.
    """
    if attention_mask is None and window is None:
        return None
    if attention_mask is not None:
        device = attention_mask.device
    positions = torch.arange(seq_len, device=device)
    seen = _seen_keys(positions, positions[:, None], window)[None, None]  # (1, 1, seq, seq)
    if attention_mask is not None:
        seen = seen & attention_mask.bool()[:, None, None, :]
    return seen | torch.eye(seq_len, dtype=torch.bool, device=positions.device)


def query_row_mask(
    attention_mask: torch.Tensor | None, seq_len: int, at: torch.Tensor, window: int | None = None
) -> torch.Tensor:
    """The rows of :func:`causal_padding_mask` for one query per sequence, at positions ``at``
    (batch,): boolean (batch, 1, 1, seq). Without ``attention_mask`` every earlier key is seen."""
    keys = torch.arange(seq_len, device=at.device)
    allowed = _seen_keys(keys, at[:, None], window)
    if attention_mask is not None:
        allowed &= attention_mask.bool()
    return (allowed | (keys == at[:, None]))[:, None, None, :]


def _seen_keys(keys: torch.Tensor, queries: torch.Tensor, window: int | None) -> torch.Tensor:
    """Whether each query position sees each key position: the key is not later and, with
    ``window``, fewer than ``window`` positions earlier."""
    seen = keys <= queries
    return seen if window is None else seen & (keys > queries - window)


def rows_at(x: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    """The vectors of x (batch, seq, ...) at one position per sequence: (batch, 1, ...)."""
    return x[torch.arange(x.shape[0], device=x.device), at].unsqueeze(1)


def run_stack(
    blocks: Sequence[nn.Module],
    x: torch.Tensor,
    attention_mask: torch.Tensor | None,
    at: torch.Tensor | None,
) -> torch.Tensor:
    """Each block called as ``block(x, mask)`` on hidden states x (b, t, d), its mask made for its
    ``window``. With ``at`` (b,) the result is (b, 1, d), the states at those positions only, and
    the last block computes nothing else: a classifier reads one position, so most of its work is
    skipped."""
    seq_len = x.shape[1]
    blocks = list(blocks)
    top = blocks.pop() if at is not None and blocks else None
    masks: dict[int | None, torch.Tensor | None] = {}  # one per window
    for block in blocks:
        window = _hiding(block.window, seq_len)
        if window not in masks:
            masks[window] = causal_padding_mask(attention_mask, seq_len, window, x.device)
        x = block(x, masks[window])
    if at is None:
        return x
    if top is None:
        return rows_at(x, at)
    window = _hiding(top.window, seq_len)
    return top(x, query_row_mask(attention_mask, seq_len, at, window), at)


def _hiding(window: int | None, seq_len: int) -> int | None:
    """``window``, or None where it hides no key from sequences of ``seq_len`` (an exported
    graph keeps it: its lengths vary)."""
    if window is not None and window >= seq_len and not torch.compiler.is_exporting():
        return None
    return window
