"""The Llama family: RMSNorm, rotary position embeddings, grouped-query attention, a gated
(SwiGLU) feed-forward and, optionally, an output head tied to the token embeddings. The models
built on it differ in a few config fields: Llama 3.x slows the rotation of long wavelengths
(``rope_factor``), Qwen2 adds biases to the query, key and value projections (``qkv_bias``),
Qwen3 normalises each query and key head (``qk_norm`` "head"), OLMo 2 the whole query and key
projections and each sublayer's output instead of its input (``qk_norm`` "all", ``pre_norms``,
``post_norms``), Mistral and Phi-3 let a query see only its latest keys (``sliding_window``).
Gemma 3 uses the most: token embeddings scaled up (``scale_embeddings``), norms that scale by
1 + weight (``norm_unit_offset``) before and after each sublayer, a GELU gate (``activation``),
its own attention scale (``attention_scale``), and windowed layers with a rotation of their own
(``rope_local_base``) between layers that see every key (``global_every``). SmolLM2 and Llama 2
use none of them.

Module names follow the book's Llama chapters (``tok_emb``, ``trf_blocks.N.att.W_query``,
``ff.fc1`` for the gate, ``ff.fc2`` for the up projection, ``ff.fc3`` for the down projection).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, partial

import torch
import torch.nn.functional as F
from torch import nn

from gptclf.models.attention import causal_attention
from gptclf.models.family import Family, LanguageModel, lora_targets
from gptclf.models.stack import rows_at

Tensor = torch.Tensor
Mask = Tensor | None
Positions = Tensor | None  # one position per sequence, or None for all
RotaryAngles = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class LlamaConfig:
    vocab_size: int
    context_length: int
    emb_dim: int
    hidden_dim: int  # feed-forward width
    n_heads: int
    n_kv_groups: int  # key/value heads; n_heads must be a multiple of it
    n_layers: int
    rope_base: float = 10_000.0
    rms_norm_eps: float = 1e-5
    tie_embeddings: bool = True
    head_dim: int | None = None  # defaults to emb_dim // n_heads
    qkv_bias: bool = False  # Qwen2
    qk_norm: str | None = None  # RMSNorm before the rotation: "head" (Qwen3) or "all" (OLMo 2)
    pre_norms: bool = True  # each sublayer's input normalised (not in OLMo 2)
    post_norms: bool = False  # each sublayer's output normalised (OLMo 2, Gemma 3)
    norm_unit_offset: bool = False  # Gemma 3: the norms scale by 1 + weight
    scale_embeddings: bool = False  # Gemma 3: token embeddings times √emb_dim
    activation: str = "silu"  # the feed-forward's gate: "silu" or "gelu_tanh" (Gemma 3)
    attention_scale: float | None = None  # of the query-key scores; default 1/√head_dim
    sliding_window: int | None = None  # Mistral: the latest keys a query sees, itself included
    global_every: int | None = None  # Gemma 3: every so many layers, one sees all keys
    rope_local_base: float | None = None  # Gemma 3: the windowed layers' rotation base
    rope_factor: float | None = None  # Llama 3.x ("llama3" rope scaling), with the three below
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_context: int = 8192

    @property
    def attention_head_dim(self) -> int:
        return self.head_dim or self.emb_dim // self.n_heads

    def layer_window(self, layer: int) -> int | None:
        """How many of the latest keys a query of block ``layer`` sees (None: all before it)."""
        if self.global_every is not None and (layer + 1) % self.global_every == 0:
            return None
        return self.sliding_window


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, unit_offset: bool = False):
        super().__init__()
        self.eps = eps
        self.unit_offset = unit_offset
        self.weight = nn.Parameter(torch.zeros(dim) if unit_offset else torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.rms_norm(x.float(), self.weight.shape, eps=self.eps)
        if self.unit_offset:  # Gemma: scaled by 1 + weight in float32
            return (normed * (1 + self.weight.float())).to(x.dtype)
        return normed.to(x.dtype) * self.weight


def rotary_table(
    cfg: LlamaConfig, seq_len: int, device: torch.device, local: bool = False
) -> RotaryAngles:
    """cos/sin tables (seq, head_dim) for rotating query and key channel halves by position
    (``local``: for a windowed layer with a base of its own)."""
    head_dim = cfg.attention_head_dim
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float64, device=device) / head_dim
    frequencies = 1.0 / (cfg.rope_local_base if local else cfg.rope_base) ** exponents
    if cfg.rope_factor is not None and not local:
        frequencies = llama3_frequencies(frequencies, cfg)
    positions = torch.arange(seq_len, dtype=torch.float64, device=device)
    angles = torch.outer(positions, frequencies)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float(), angles.sin().float()


def llama3_frequencies(frequencies: Tensor, cfg: LlamaConfig) -> Tensor:
    """Llama 3.x's rotation frequencies: wavelengths longer than the original context over
    ``rope_low_freq_factor`` turn ``rope_factor`` times slower, those shorter than it over
    ``rope_high_freq_factor`` keep their speed, and those between blend the two smoothly."""
    wavelengths = 2 * torch.pi / frequencies
    slowed = frequencies / cfg.rope_factor
    blend = (cfg.rope_original_context / wavelengths - cfg.rope_low_freq_factor) / (
        cfg.rope_high_freq_factor - cfg.rope_low_freq_factor
    )
    between = (1 - blend) * slowed + blend * frequencies
    long = wavelengths > cfg.rope_original_context / cfg.rope_low_freq_factor
    short = wavelengths < cfg.rope_original_context / cfg.rope_high_freq_factor
    return torch.where(long, slowed, torch.where(short, frequencies, between))


@lru_cache(maxsize=256)
def rotary_angles(
    cfg: LlamaConfig, seq_len: int, device: torch.device, local: bool = False
) -> RotaryAngles:
    """:func:`rotary_table`, computed once per length (outside inference mode, so that
    training may use them too)."""
    with torch.inference_mode(False):
        return rotary_table(cfg, seq_len, device, local)


def apply_rotary(x: torch.Tensor, angles: RotaryAngles) -> torch.Tensor:
    """Rotate x (batch, heads, seq, head_dim): channel i pairs with channel i + head_dim/2."""
    cos, sin = (a.to(x.dtype) for a in angles)
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-second, first], dim=-1) * sin


class GroupedQueryAttention(nn.Module):
    def __init__(self, cfg: LlamaConfig, local: bool = False):
        super().__init__()
        assert cfg.n_heads % cfg.n_kv_groups == 0, "n_heads must be a multiple of n_kv_groups"
        self.cfg = cfg
        self.local = local  # rotated by the windowed layers' own base (Gemma 3)
        self.n_heads = cfg.n_heads
        self.n_kv_groups = cfg.n_kv_groups
        self.head_dim = cfg.attention_head_dim
        self.W_query = nn.Linear(cfg.emb_dim, cfg.n_heads * self.head_dim, bias=cfg.qkv_bias)
        self.W_key = nn.Linear(cfg.emb_dim, cfg.n_kv_groups * self.head_dim, bias=cfg.qkv_bias)
        self.W_value = nn.Linear(cfg.emb_dim, cfg.n_kv_groups * self.head_dim, bias=cfg.qkv_bias)
        self.out_proj = nn.Linear(cfg.n_heads * self.head_dim, cfg.emb_dim, bias=False)
        self.norm_all = cfg.qk_norm == "all"  # over the whole projection (else over each head)
        widths = (cfg.n_heads, cfg.n_kv_groups) if self.norm_all else (1, 1)
        self.q_norm, self.k_norm = (
            RMSNorm(heads * self.head_dim, cfg.rms_norm_eps, cfg.norm_unit_offset)
            if cfg.qk_norm
            else nn.Identity()
            for heads in widths
        )

    def rotary_angles(self, seq_len: int, device: torch.device) -> RotaryAngles:
        """The rotation of each position (computed in the graph when exported: its length
        varies)."""
        tables = rotary_table if torch.compiler.is_exporting() else rotary_angles
        return tables(self.cfg, seq_len, device, self.local)

    def forward(self, x: Tensor, mask: Mask, at: Positions = None) -> Tensor:
        """(b, t, d) -> (b, t, d); with ``at`` (b,) only the queries at those positions: (b, 1, d)
        (``mask`` is then the rows of those queries)."""
        b = x.shape[0]
        angles = query_angles = self.rotary_angles(x.shape[1], x.device)
        queries = x
        if at is not None:  # each query rotated by its own position: tables (b, 1, 1, head_dim)
            queries, query_angles = rows_at(x, at), tuple(a[at][:, None, None] for a in angles)

        def split_heads(y: torch.Tensor, heads: int) -> torch.Tensor:  # -> (b, heads, t, head_dim)
            return y.view(b, -1, heads, self.head_dim).transpose(1, 2)

        q, k = self.W_query(queries), self.W_key(x)
        if self.norm_all:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = split_heads(q, self.n_heads), split_heads(k, self.n_kv_groups)
        if not self.norm_all:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rotary(q, query_angles), apply_rotary(k, angles)
        v = split_heads(self.W_value(x), self.n_kv_groups)
        context = causal_attention(q, k, v, mask, scale=self.cfg.attention_scale)
        return self.out_proj(context.transpose(1, 2).reshape(b, q.shape[2], -1))


ACTIVATIONS = {"silu": F.silu, "gelu_tanh": partial(F.gelu, approximate="tanh")}


class FeedForward(nn.Module):
    """Gated: down(act(gate(x)) * up(x)), SwiGLU with SiLU, GeGLU with GELU."""

    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.emb_dim, cfg.hidden_dim, bias=False)  # gate
        self.fc2 = nn.Linear(cfg.emb_dim, cfg.hidden_dim, bias=False)  # up
        self.fc3 = nn.Linear(cfg.hidden_dim, cfg.emb_dim, bias=False)  # down
        self.activation = ACTIVATIONS[cfg.activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.activation(self.fc1(x)) * self.fc2(x))


def sublayer_norm(cfg: LlamaConfig, present: bool) -> nn.Module:
    return (
        RMSNorm(cfg.emb_dim, cfg.rms_norm_eps, cfg.norm_unit_offset) if present else nn.Identity()
    )


class TransformerBlock(nn.Module):
    """Attention and feed-forward, each normalised before (``norm1``, ``norm2``) and/or after
    (``post_att_norm``, ``post_ff_norm``) as the config says, each added to its input."""

    def __init__(self, cfg: LlamaConfig, layer: int = 0):
        super().__init__()
        self.window = cfg.layer_window(layer)
        local = self.window is not None and cfg.rope_local_base is not None
        self.norm1 = sublayer_norm(cfg, cfg.pre_norms)
        self.att = GroupedQueryAttention(cfg, local)
        self.post_att_norm = sublayer_norm(cfg, cfg.post_norms)
        self.norm2 = sublayer_norm(cfg, cfg.pre_norms)
        self.ff = FeedForward(cfg)
        self.post_ff_norm = sublayer_norm(cfg, cfg.post_norms)

    def forward(self, x: Tensor, mask: Mask, at: Positions = None) -> Tensor:
        """(b, t, d) -> (b, t, d); with ``at`` (b,) just the outputs at ``at``: (b, 1, d)."""
        shortcut = x if at is None else rows_at(x, at)
        x = shortcut + self.post_att_norm(self.att(self.norm1(x), mask, at))
        return x + self.post_ff_norm(self.ff(self.norm2(x)))


class LlamaModel(LanguageModel):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.emb_dim)
        self.trf_blocks = nn.ModuleList(TransformerBlock(cfg, i) for i in range(cfg.n_layers))
        self.final_norm = RMSNorm(cfg.emb_dim, cfg.rms_norm_eps, cfg.norm_unit_offset)
        self.out_head = (
            None if cfg.tie_embeddings else nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)
        )

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings (batch, seq, emb_dim): the input of the first block (Gemma: times
        √emb_dim, rounded to their precision as Gemma's own code does)."""
        x = self.tok_emb(input_ids)
        if self.cfg.scale_embeddings:
            x = x * torch.tensor(self.cfg.emb_dim**0.5, dtype=x.dtype)
        return x


def upgrade_config(architecture: dict) -> dict:
    """A config written by an earlier gptclf, in today's fields: ``qk_norm`` was true for
    Qwen3's per-head norms, and OLMo 2's ``norm_after`` is ``post_norms`` without ``pre_norms``."""
    upgraded = dict(architecture)
    if isinstance(upgraded.get("qk_norm"), bool):
        upgraded["qk_norm"] = "head" if upgraded["qk_norm"] else None
    if isinstance(upgraded.get("norm_after"), bool):
        after = upgraded.pop("norm_after")
        upgraded |= {"pre_norms": not after, "post_norms": after}
    return upgraded


LLAMA = Family(
    name="llama",
    model=LlamaModel,
    config=LlamaConfig,
    block=TransformerBlock,
    lora_targets=lora_targets(
        ("att.W_query", "att.W_key", "att.W_value", "att.out_proj"),
        mlp=("ff.fc1", "ff.fc2", "ff.fc3"),  # gate, up, down
    ),
    added_fields=(
        "qkv_bias",
        "qk_norm",
        "pre_norms",
        "post_norms",
        "norm_unit_offset",
        "scale_embeddings",
        "activation",
        "attention_scale",
        "sliding_window",
        "global_every",
        "rope_local_base",
        "rope_factor",
        "rope_low_freq_factor",
        "rope_high_freq_factor",
        "rope_original_context",
    ),
    upgrade=upgrade_config,
)
