"""GPT-2, written as the book's ``GPTModel``: token + position embeddings, pre-LayerNorm blocks of
causal multi-head attention and a GELU feed-forward, a final norm and an output head.

Module names follow the book (``tok_emb``, ``trf_blocks.N.att.W_query``, ...), so a state dict
saved by the book's code loads into this model as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gptclf.models.attention import causal_attention
from gptclf.models.family import Family, LanguageModel, lora_targets
from gptclf.models.stack import rows_at


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 50257
    context_length: int = 1024
    emb_dim: int = 768
    n_heads: int = 12
    n_layers: int = 12
    drop_rate: float = 0.0
    qkv_bias: bool = True
    layer_norm_eps: float = 1e-5


# The four sizes OpenAI released: (emb_dim, n_layers, n_heads).
GPT2_PRESETS: dict[str, GPTConfig] = {
    "gpt2-small": GPTConfig(emb_dim=768, n_layers=12, n_heads=12),
    "gpt2-medium": GPTConfig(emb_dim=1024, n_layers=24, n_heads=16),
    "gpt2-large": GPTConfig(emb_dim=1280, n_layers=36, n_heads=20),
    "gpt2-xl": GPTConfig(emb_dim=1600, n_layers=48, n_heads=25),
}


def gpt2_size_from_shape(emb_dim: int, n_layers: int) -> GPTConfig | None:
    """The OpenAI GPT-2 preset with this width and depth, if there is one."""
    for cfg in GPT2_PRESETS.values():
        if (cfg.emb_dim, cfg.n_layers) == (emb_dim, n_layers):
            return cfg
    return None


class LayerNorm(nn.Module):
    """Layer normalisation with the book's parameter names ``scale`` and ``shift``."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(dim))
        self.shift = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.scale.shape, self.scale, self.shift, self.eps)


class MultiHeadAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.emb_dim % cfg.n_heads == 0, "emb_dim must be divisible by n_heads"
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.emb_dim // cfg.n_heads
        self.W_query = nn.Linear(cfg.emb_dim, cfg.emb_dim, bias=cfg.qkv_bias)
        self.W_key = nn.Linear(cfg.emb_dim, cfg.emb_dim, bias=cfg.qkv_bias)
        self.W_value = nn.Linear(cfg.emb_dim, cfg.emb_dim, bias=cfg.qkv_bias)
        self.out_proj = nn.Linear(cfg.emb_dim, cfg.emb_dim)
        self.dropout = cfg.drop_rate

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, at: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(b, t, d) -> (b, t, d); with ``at`` (b,) only the queries at those positions: (b, 1, d)
        (``mask`` is then the rows of those queries)."""
        b, _, d = x.shape
        queries = x if at is None else rows_at(x, at)

        def split_heads(y: torch.Tensor) -> torch.Tensor:  # (b, t, d) -> (b, heads, t, head_dim)
            return y.view(b, -1, self.n_heads, self.head_dim).transpose(1, 2)

        q, k, v = (
            split_heads(self.W_query(queries)),
            split_heads(self.W_key(x)),
            split_heads(self.W_value(x)),
        )
        context = causal_attention(q, k, v, mask, self.dropout if self.training else 0.0)
        return self.out_proj(context.transpose(1, 2).reshape(b, -1, d))


class FeedForward(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(cfg.emb_dim, 4 * cfg.emb_dim),
            nn.GELU(approximate="tanh"),
            nn.Linear(4 * cfg.emb_dim, cfg.emb_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TransformerBlock(nn.Module):
    window = None  # a query sees every key before it

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.att = MultiHeadAttention(cfg)
        self.ff = FeedForward(cfg)
        self.norm1 = LayerNorm(cfg.emb_dim, cfg.layer_norm_eps)
        self.norm2 = LayerNorm(cfg.emb_dim, cfg.layer_norm_eps)
        self.drop_shortcut = nn.Dropout(cfg.drop_rate)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, at: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(b, t, d) -> (b, t, d); with ``at`` (b,) just the outputs at ``at``: (b, 1, d)."""
        shortcut = x if at is None else rows_at(x, at)
        x = shortcut + self.drop_shortcut(self.att(self.norm1(x), mask, at))
        return x + self.drop_shortcut(self.ff(self.norm2(x)))


class GPTModel(LanguageModel):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        self.pos_emb = nn.Embedding(cfg.context_length, cfg.emb_dim)
        self.drop_emb = nn.Dropout(cfg.drop_rate)
        self.trf_blocks = nn.ModuleList(TransformerBlock(cfg) for _ in range(cfg.n_layers))
        self.final_norm = LayerNorm(cfg.emb_dim, cfg.layer_norm_eps)
        self.out_head = nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)

    @property
    def dropout_rate(self) -> float:
        return self.cfg.drop_rate

    def embedding_layers(self) -> list[nn.Module]:
        return [self.tok_emb, self.pos_emb]

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token + position embeddings (batch, seq, emb_dim): the input of the first block."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.drop_emb(self.tok_emb(input_ids) + self.pos_emb(positions))


_ATTENTION = ("att.W_query", "att.W_key", "att.W_value", "att.out_proj")
GPT2 = Family(
    name="gpt2",
    model=GPTModel,
    config=GPTConfig,
    block=TransformerBlock,
    lora_targets=lora_targets(_ATTENTION, mlp=("ff.layers.0", "ff.layers.2")),
    presets=GPT2_PRESETS,
)
