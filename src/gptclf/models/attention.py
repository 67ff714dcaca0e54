"""Causal self-attention for every family, by the kernel measured fastest on the CPU
(``benchmarks/attention.py``): without gradients, from 256 tokens on, a blocked kernel written
here, which keeps each piece of the score matrix small enough to stay in the processor's cache;
otherwise PyTorch's own kernels."""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

Tensor = torch.Tensor

# Measured on this project's 2-core CPU (bf16, ~4,096 tokens a batch, the default model's heads):
# forward alone, the blocked kernel beats flash attention from 256 tokens on (19 against 29 ms at
# 512, 58 against 66 ms at 2,048); forward + backward, the plain (math) kernel beats flash up to
# 128 tokens, and flash is about as fast as the blocked kernel or faster from 256 on.
MATH_UP_TO = 128  # with gradients on
BLOCKED_FROM = 256  # with gradients off
QUERY_BLOCK = 64  # query rows per piece of the blocked kernel

_tuned = contextvars.ContextVar("tuned_attention", default=True)


@contextlib.contextmanager
def stock_attention() -> Iterator[None]:
    """Within it, PyTorch's own kernel choice for every length (as before the tuning)."""
    token = _tuned.set(False)
    try:
        yield
    finally:
        _tuned.reset(token)


def causal_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    dropout: float = 0.0,
    scale: float | None = None,
) -> Tensor:
    """softmax(q kᵀ · scale + mask) v, the scale 1/√d by default: q (b, heads, t_q, d), k and v
    (b, groups, t, d) with heads a multiple of groups (each group's keys serve heads/groups query
    heads). ``mask`` is boolean (b or 1, 1, t_q, t), True where a query may see a key; None means
    causal without padding."""
    length, grad = k.shape[2], torch.is_grad_enabled()
    tuned = not torch.compiler.is_exporting() and _tuned.get() and q.device.type == "cpu"
    if tuned and not grad and dropout == 0.0 and q.shape[2] == length >= BLOCKED_FROM:
        return blocked_attention(q, k, v, mask, scale)
    math_kernel = tuned and grad and length <= MATH_UP_TO
    with sdpa_kernel(SDPBackend.MATH) if math_kernel else contextlib.nullcontext():
        return F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=mask is None,
            dropout_p=dropout,
            enable_gqa=q.shape[1] != k.shape[1],
            scale=scale,
        )


def blocked_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, scale: float | None = None
) -> Tensor:
    """:func:`causal_attention` one sequence and ``QUERY_BLOCK`` query positions at a time: the
    query heads of a key group share one matrix product, and each block sees only the keys up
    to its last position. Scores and softmax in float32, whatever the inputs' precision."""
    b, heads, length, dim = q.shape
    groups = k.shape[1]
    per_group = heads // groups
    scale = 1 / math.sqrt(dim) if scale is None else scale
    if mask is not None:
        mask = mask.expand(b, -1, -1, -1)
    rows = []
    with torch.autocast(q.device.type, enabled=False):  # scores stay float32 under autocast
        for i in range(b):
            queries = (q[i].float() * scale).view(groups, per_group, length, dim)
            keys = k[i].float().transpose(1, 2)  # (groups, d, t)
            pieces = []
            for start in range(0, length, QUERY_BLOCK):
                end = min(start + QUERY_BLOCK, length)
                block = queries[:, :, start:end].reshape(groups, -1, dim)  # (groups, rows, d)
                scores = torch.bmm(block, keys[:, :, :end])  # (groups, rows, end)
                _hide_unseen(scores, mask, i, start, per_group)
                weights = scores.softmax(-1).to(v.dtype)
                context = torch.bmm(weights, v[i, :, :end])  # (groups, rows, d)
                pieces.append(context.view(groups, per_group, end - start, dim))
            rows.append(torch.cat(pieces, dim=2).view(heads, length, dim))
    return torch.stack(rows)


def _hide_unseen(scores: Tensor, mask: Tensor | None, row: int, start: int, repeats: int) -> None:
    """Set to -inf, in place, the scores (groups, repeats * n, end) of the queries at
    ``start:end`` of sequence ``row`` for keys they may not see: without ``mask`` only the
    later keys, all within the block's own square."""
    n, end = scores.shape[1] // repeats, scores.shape[2]
    if mask is None:
        later = torch.ones(n, n, dtype=torch.bool, device=scores.device).triu(1)
        scores[:, :, start:end].masked_fill_(later.repeat(repeats, 1), float("-inf"))
    else:
        unseen = ~mask[row, 0, start:end, :end]
        scores.masked_fill_(unseen.repeat(repeats, 1), float("-inf"))
