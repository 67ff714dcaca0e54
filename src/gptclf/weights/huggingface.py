"""Hugging Face checkpoints in safetensors: GPT-2 (``openai-community/gpt2*`` names, Conv1D
weights stored transposed) and the Llama-like families (``model.layers.N.self_attn.q_proj.weight``,
...): Llama, Gemma 3, Mistral, OLMo 2, Phi-3, Qwen2, Qwen3."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from functools import partial
from pathlib import Path

import torch

from gptclf.errors import GptclfError
from gptclf.models import GPTConfig, GPTModel, LlamaConfig, LlamaModel, gpt2_size_from_shape
from gptclf.weights.common import Rule, empty_model, load_by_rules, rules_of, stack_rules
from gptclf.weights.files import read_config, read_safetensors

# Saved buffers, and the class head of a *ForSequenceClassification checkpoint (not the LM's).
GPT2_BUFFERS = r"\.attn\.(masked_)?bias$|^score\.weight$"
LLAMA_BUFFERS = r"rotary_emb\.inv_freq$|^score\.weight$"


def _transposed(t: torch.Tensor) -> torch.Tensor:
    return t.T


def _qkv_part(index: int, t: torch.Tensor) -> torch.Tensor:
    """Query (0), key (1) or value (2) part of GPT-2's fused, transposed ``c_attn``."""
    return t.T.chunk(3, dim=0)[index] if t.dim() == 2 else t.chunk(3)[index]


def gpt2_config(config: dict | None, tensors: dict[str, torch.Tensor], source: str) -> GPTConfig:
    """Architecture from ``config.json``, or recognised from the tensor shapes as an OpenAI size."""
    if config is not None:
        return GPTConfig(
            vocab_size=config["vocab_size"],
            context_length=config.get("n_positions", config.get("n_ctx", 1024)),
            emb_dim=config["n_embd"],
            n_heads=config["n_head"],
            n_layers=config["n_layer"],
            layer_norm_eps=config.get("layer_norm_epsilon", 1e-5),
        )
    vocab_size, emb_dim = tensors["wte.weight"].shape
    n_layers = len({name.split(".")[1] for name in tensors if name.startswith("h.")})
    preset = gpt2_size_from_shape(emb_dim, n_layers)
    if preset is None:
        raise GptclfError(
            f"{source}: no config.json, and width {emb_dim} with {n_layers} layers is not a "
            "GPT-2 size, so the number of attention heads is unknown"
        )
    return replace(preset, vocab_size=vocab_size, context_length=tensors["wpe.weight"].shape[0])


def gpt2_rules(cfg: GPTConfig, tensors: dict[str, torch.Tensor]) -> list[Rule]:
    top = {
        "tok_emb.weight": "wte.weight",
        "pos_emb.weight": "wpe.weight",
        "final_norm.scale": "ln_f.weight",
        "final_norm.shift": "ln_f.bias",
        "out_head.weight": "lm_head.weight" if "lm_head.weight" in tensors else "wte.weight",
    }
    block = {
        f"att.{ours}.{kind}": (f"attn.c_attn.{kind}", partial(_qkv_part, index))
        for index, ours in enumerate(("W_query", "W_key", "W_value"))
        for kind in ("weight", "bias")
    }
    block.update(
        {
            "norm1.scale": "ln_1.weight",
            "norm1.shift": "ln_1.bias",
            "norm2.scale": "ln_2.weight",
            "norm2.shift": "ln_2.bias",
            "att.out_proj.weight": ("attn.c_proj.weight", _transposed),
            "att.out_proj.bias": "attn.c_proj.bias",
            "ff.layers.0.weight": ("mlp.c_fc.weight", _transposed),
            "ff.layers.0.bias": "mlp.c_fc.bias",
            "ff.layers.2.weight": ("mlp.c_proj.weight", _transposed),
            "ff.layers.2.bias": "mlp.c_proj.bias",
        }
    )
    return rules_of(top) + stack_rules(cfg.n_layers, "h.{i}", block)


def load_hf_gpt2(path: Path) -> GPTModel:
    """GPT-2 from a Hugging Face safetensors file or folder (``transformer.`` prefix optional)."""
    folder = path if path.is_dir() else path.parent
    tensors = {k.removeprefix("transformer."): v for k, v in read_safetensors(path).items()}
    if "wte.weight" not in tensors:
        raise GptclfError(f"{path}: missing tensor wte.weight; not a GPT-2 checkpoint")
    cfg = gpt2_config(read_config(folder), tensors, str(path))
    model = empty_model(GPTModel, cfg)
    load_by_rules(model, gpt2_rules(cfg, tensors), tensors, str(path), ignore=GPT2_BUFFERS)
    return model


# What each Llama-like model_type sets beyond Llama's fields (see models/llama.py).
LLAMA_LIKE = {
    "llama": {},
    "mistral": {},
    "phi3": {},  # Llama with query/key/value and gate/up stored fused (PHI3_FUSED)
    "qwen2": {"qkv_bias": True},
    "qwen3": {"qk_norm": "head"},
    "olmo2": {"qk_norm": "all", "pre_norms": False, "post_norms": True},
    "gemma3_text": {  # with the settings of _gemma3_layers below
        "qk_norm": "head",
        "post_norms": True,
        "norm_unit_offset": True,
        "scale_embeddings": True,
        "activation": "gelu_tanh",
    },
}
WINDOWED = ("mistral", "phi3", "gemma3_text")  # attention within the config's sliding_window
HF_ACTIVATIONS = {"silu": "silu", "gelu_pytorch_tanh": "gelu_tanh"}  # transformers' name: ours
GEMMA3_ROPE_BASES = {"full_attention": 1_000_000.0, "sliding_attention": 10_000.0}  # defaults


def hf_model_type(cfg: LlamaConfig) -> str:
    """The ``model_type`` of ``LLAMA_LIKE`` that ``cfg`` is (Mistral: Llama with a window)."""
    defaults = {f.name: f.default for f in fields(LlamaConfig)}
    names = sorted({name for own in LLAMA_LIKE.values() for name in own})
    settings = {name: getattr(cfg, name) for name in names}
    for model_type, own in LLAMA_LIKE.items():
        if settings == {name: own.get(name, defaults[name]) for name in names}:
            if model_type == "llama" and cfg.sliding_window is not None:
                return "mistral"
            return model_type
    raise GptclfError(f"no model type of transformers has these settings: {settings}")


def _rope(rope: dict, theta: float, source: str) -> dict:
    """The rotation's base (``theta`` where ``rope`` names none) and, for "llama3" scaling, its
    factors: LlamaConfig fields."""
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    fields = {"rope_base": float(rope.get("rope_theta", theta))}
    if rope_type == "llama3":
        fields.update(
            rope_factor=float(rope["factor"]),
            rope_low_freq_factor=float(rope["low_freq_factor"]),
            rope_high_freq_factor=float(rope["high_freq_factor"]),
            rope_original_context=int(rope["original_max_position_embeddings"]),
        )
    elif rope_type != "default":
        raise GptclfError(f"{source}: rope scaling {rope_type!r} is not supported")
    return fields


def _rotation(config: dict, model_type: str, source: str) -> dict:
    """The rotation fields of a config: one rotation (``rope_parameters``, or ``rope_scaling``
    and ``rope_theta``), or Gemma 3's two, for its global and its windowed layers."""
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if rope.get("partial_rotary_factor", config.get("partial_rotary_factor", 1.0)) != 1.0:
        raise GptclfError(f"{source}: rotation of part of each head is not supported")
    if model_type != "gemma3_text":
        return _rope(rope, config.get("rope_theta", 10_000.0), source)
    theta = {
        "full_attention": config.get("rope_theta", GEMMA3_ROPE_BASES["full_attention"]),
        "sliding_attention": config.get(
            "rope_local_base_freq", GEMMA3_ROPE_BASES["sliding_attention"]
        ),
    }
    kinds = {kind: rope.get(kind) or {} for kind in theta} if "full_attention" in rope else {}
    kinds.setdefault("full_attention", rope)
    kinds.setdefault("sliding_attention", {})
    local = _rope(kinds["sliding_attention"], theta["sliding_attention"], source)
    if len(local) > 1:
        raise GptclfError(f"{source}: rope scaling in the windowed layers is not supported")
    full = _rope(kinds["full_attention"], theta["full_attention"], source)
    return full | {"rope_local_base": local["rope_base"]}


def _gemma3_layers(config: dict, source: str) -> dict:
    """Gemma 3's attention: its scale, and every how many layers one sees all keys (the others
    its ``sliding_window`` latest)."""
    for unsupported in ("final_logit_softcapping", "attn_logit_softcapping"):
        if config.get(unsupported) is not None:
            raise GptclfError(f"{source}: {unsupported} is not supported")
    if config.get("use_bidirectional_attention"):
        raise GptclfError(f"{source}: bidirectional attention is not supported")
    n_layers = config["num_hidden_layers"]
    every = config.get("sliding_window_pattern", config.get("_sliding_window_pattern", 6))
    kinds = config.get("layer_types") or [
        "sliding_attention" if (i + 1) % every else "full_attention" for i in range(n_layers)
    ]
    if "full_attention" in kinds:
        every = kinds.index("full_attention") + 1
    pattern = ["sliding_attention"] * (every - 1) + ["full_attention"]
    if kinds != (pattern * n_layers)[:n_layers]:
        raise GptclfError(
            f"{source}: layer_types is not a windowed pattern with every Nth layer global"
        )
    return {
        "attention_scale": float(config.get("query_pre_attn_scalar", 256)) ** -0.5,
        "global_every": every,
    }


def llama_config(config: dict, source: str) -> LlamaConfig:
    """The LlamaConfig of a Llama, Gemma 3, Mistral, OLMo 2, Phi-3, Qwen2 or Qwen3
    ``config.json``."""
    model_type = config.get("model_type", "llama")
    if model_type not in LLAMA_LIKE:
        multimodal = model_type == "gemma3"
        hint = " (Gemma 3's multimodal 4B and up are not supported)" if multimodal else ""
        raise GptclfError(f"{source}: model_type {model_type!r} is not Llama-like{hint}")
    if config.get("attention_bias") or config.get("mlp_bias"):
        raise GptclfError(f"{source}: bias terms beyond {model_type}'s own are not supported")
    kinds = config.get("layer_types") or []
    if model_type != "gemma3_text" and (
        config.get("use_sliding_window") or "sliding_attention" in kinds
    ):
        raise GptclfError(f"{source}: sliding windows in some layers only are not supported")
    n_heads = config["num_attention_heads"]
    default_activation = "gelu_pytorch_tanh" if model_type == "gemma3_text" else "silu"
    activation = config.get("hidden_activation") or config.get("hidden_act", default_activation)
    if activation not in HF_ACTIVATIONS:
        raise GptclfError(f"{source}: activation {activation!r} is not supported")
    family = dict(LLAMA_LIKE[model_type], activation=HF_ACTIVATIONS[activation])
    if model_type in WINDOWED:
        family["sliding_window"] = config.get("sliding_window")
    if model_type == "gemma3_text":
        family |= _gemma3_layers(config, source)
    return LlamaConfig(
        vocab_size=config["vocab_size"],
        context_length=config.get("max_position_embeddings", 2048),
        emb_dim=config["hidden_size"],
        hidden_dim=config["intermediate_size"],
        n_heads=n_heads,
        n_kv_groups=config.get("num_key_value_heads") or n_heads,
        n_layers=config["num_hidden_layers"],
        rms_norm_eps=config.get("rms_norm_eps", 1e-6),
        tie_embeddings=config.get("tie_word_embeddings", False),
        head_dim=config.get("head_dim"),
        **_rotation(config, model_type, source),
        **family,
    )


# Llama's tensors: our name, Hugging Face's, llama.cpp's GGUF name (in a block: N for its index).
LLAMA_NAMES = [
    ("tok_emb.weight", "model.embed_tokens.weight", "token_embd.weight"),
    ("final_norm.weight", "model.norm.weight", "output_norm.weight"),
    ("out_head.weight", "lm_head.weight", "output.weight"),  # only where not tied
]
LLAMA_BLOCK_NAMES = [
    ("att.W_query.weight", "self_attn.q_proj.weight", "attn_q.weight"),
    ("att.W_key.weight", "self_attn.k_proj.weight", "attn_k.weight"),
    ("att.W_value.weight", "self_attn.v_proj.weight", "attn_v.weight"),
    ("att.out_proj.weight", "self_attn.o_proj.weight", "attn_output.weight"),
    ("ff.fc1.weight", "mlp.gate_proj.weight", "ffn_gate.weight"),
    ("ff.fc2.weight", "mlp.up_proj.weight", "ffn_up.weight"),
    ("ff.fc3.weight", "mlp.down_proj.weight", "ffn_down.weight"),
]


LLAMA_BIAS_NAMES = [  # Qwen2
    ("att.W_query.bias", "self_attn.q_proj.bias", "attn_q.bias"),
    ("att.W_key.bias", "self_attn.k_proj.bias", "attn_k.bias"),
    ("att.W_value.bias", "self_attn.v_proj.bias", "attn_v.bias"),
]
LLAMA_QK_NORM_NAMES = [  # Qwen3, OLMo 2
    ("att.q_norm.weight", "self_attn.q_norm.weight", "attn_q_norm.weight"),
    ("att.k_norm.weight", "self_attn.k_norm.weight", "attn_k_norm.weight"),
]


LLAMA_PRE_NORM_NAMES = [  # the norms of the sublayers' inputs
    ("norm1.weight", "input_layernorm.weight", "attn_norm.weight"),
    ("norm2.weight", "post_attention_layernorm.weight", "ffn_norm.weight"),
]
LLAMA_POST_NORM_NAMES = [  # OLMo 2, Gemma 3: the norms of the sublayers' outputs
    ("post_att_norm.weight", "post_attention_layernorm.weight", "post_attention_norm.weight"),
    ("post_ff_norm.weight", "post_feedforward_layernorm.weight", "post_ffw_norm.weight"),
]
GEMMA3_NORM_NAMES = [  # norms before and after each sublayer; post_attention_layernorm is after
    LLAMA_PRE_NORM_NAMES[0],
    ("norm2.weight", "pre_feedforward_layernorm.weight", "ffn_norm.weight"),
    *LLAMA_POST_NORM_NAMES,
]


def llama_names(cfg: LlamaConfig, column: int) -> tuple[dict[str, str], dict[str, str]]:
    """Our names to the format's (column 1: Hugging Face, 2: GGUF): outside the blocks (the
    output head only where it is not tied) and inside each block."""
    top = {row[0]: row[column] for row in LLAMA_NAMES}
    if cfg.tie_embeddings:
        del top["out_head.weight"]
    rows = LLAMA_BLOCK_NAMES + LLAMA_BIAS_NAMES * cfg.qkv_bias
    rows += LLAMA_QK_NORM_NAMES * bool(cfg.qk_norm)
    if cfg.pre_norms and cfg.post_norms:
        rows += GEMMA3_NORM_NAMES
    else:
        rows += LLAMA_PRE_NORM_NAMES * cfg.pre_norms + LLAMA_POST_NORM_NAMES * cfg.post_norms
    return top, {row[0]: row[column] for row in rows}


PHI3_FUSED_NAMES = [  # Phi-3's fused tensors: ours split from them, HF name, GGUF name
    ("qkv", "self_attn.qkv_proj.weight", "attn_qkv.weight"),
    ("gate_up", "mlp.gate_up_proj.weight", "ffn_up.weight"),
]


def phi3_fused(cfg: LlamaConfig, column: int) -> dict[str, tuple[str, Callable]]:
    """Phi-3's fused tensors (column 1: Hugging Face's names, 2: GGUF's): rows of the
    query/key/value tensor (queries, keys, values) and of the gate/up tensor (gate, up) for our
    separate layers."""
    q, kv = cfg.n_heads * cfg.attention_head_dim, cfg.n_kv_groups * cfg.attention_head_dim
    qkv, gate_up = (row[column] for row in PHI3_FUSED_NAMES)
    return {
        "att.W_query.weight": (qkv, lambda t: t[:q]),
        "att.W_key.weight": (qkv, lambda t: t[q : q + kv]),
        "att.W_value.weight": (qkv, lambda t: t[q + kv :]),
        "ff.fc1.weight": (gate_up, lambda t: t[: cfg.hidden_dim]),
        "ff.fc2.weight": (gate_up, lambda t: t[cfg.hidden_dim :]),
    }


def llama_rules(cfg: LlamaConfig, model_type: str = "llama") -> list[Rule]:
    top, block = llama_names(cfg, column=1)
    if model_type == "phi3":
        block |= phi3_fused(cfg, column=1)
    return rules_of(top) + stack_rules(cfg.n_layers, "model.layers.{i}", block)


def load_hf_llama(folder: Path) -> LlamaModel:
    """A Llama-like model (Llama, Gemma 3, Mistral, OLMo 2, Phi-3, Qwen2, Qwen3) from a Hugging
    Face folder (``config.json`` + safetensors)."""
    config = read_config(folder)
    if config is None:
        raise GptclfError(f"{folder}: config.json is missing; a Llama checkpoint needs it")
    cfg = llama_config(config, str(folder))
    tensors = read_safetensors(folder)
    if "score.weight" in tensors and "lm_head.weight" not in tensors:  # a sequence classifier
        cfg = replace(cfg, tie_embeddings=True)  # its class head replaces the LM head anyway
    model = empty_model(LlamaModel, cfg)
    ignore = LLAMA_BUFFERS + (r"|^lm_head\.weight$" if cfg.tie_embeddings else "")
    rules = llama_rules(cfg, config.get("model_type", "llama"))
    load_by_rules(model, rules, tensors, str(folder), ignore=ignore)
    return model
