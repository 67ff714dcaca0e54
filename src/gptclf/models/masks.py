"""The attention mask shared by every model family."""

from __future__ import annotations

import torch


def causal_padding_mask(attention_mask: torch.Tensor | None, seq_len: int) -> torch.Tensor | None:
    """Boolean (batch, 1, seq, seq) mask: True where a query may attend to a key.

    A query sees itself and earlier keys that are not padding. ``attention_mask`` is (batch, seq)
    with 1 for real tokens and 0 for padding. Every query always sees itself, so padding rows never
    produce NaNs. ``None`` means no padding: the caller uses the cheaper ``is_causal`` path.
    """
    if attention_mask is None:
        return None
    device = attention_mask.device
    causal = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()
    allowed = causal & attention_mask.bool()[:, None, None, :]
    return allowed | torch.eye(seq_len, dtype=torch.bool, device=device)
