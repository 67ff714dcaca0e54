"""State dicts saved by the book's own code (``torch.save(model.state_dict(), ...)``), as
``.pth`` (read with ``weights_only=True``, never unpickling code) or ``.safetensors``.

The book's ``GPTModel`` uses the same module names as ours, so the only work is finding the
architecture from the tensor shapes and keeping a finetuned class head (e.g. the chapter's
``review_classifier.pth`` with its 2-class ``out_head``) instead of the vocabulary head.
"""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from gptclf.errors import GptclfError
from gptclf.models import GPTConfig, GPTModel, gpt2_size_from_shape
from gptclf.weights.common import Rule, empty_model, load_by_rules
from gptclf.weights.files import read_safetensors

BOOK_BUFFERS = r"\.att\.mask$"


def read_book_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    if not path.is_file():
        raise GptclfError(f"{path}: file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        raise GptclfError(f"{path}: not a readable PyTorch state dict ({exc})") from exc
    if isinstance(state, dict) and "model_state_dict" in state:  # the book's training checkpoints
        state = state["model_state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise GptclfError(f"{path}: expected a state dict of tensors")
    return state


def load_book_gpt(path: Path, n_heads: int | None = None) -> GPTModel:
    """The book's GPT-2 from its state dict; ``n_heads`` is needed only for non-OpenAI sizes."""
    tensors = read_book_state_dict(path)
    if "tok_emb.weight" not in tensors or "pos_emb.weight" not in tensors:
        raise GptclfError(f"{path}: missing tensor tok_emb.weight; not the book's GPTModel")
    vocab_size, emb_dim = tensors["tok_emb.weight"].shape
    n_layers = len({k.split(".")[1] for k in tensors if k.startswith("trf_blocks.")})
    preset = gpt2_size_from_shape(emb_dim, n_layers)
    if preset is None and n_heads is None:
        raise GptclfError(
            f"{path}: width {emb_dim} with {n_layers} layers is not a GPT-2 size; "
            "give the number of attention heads"
        )
    cfg = replace(
        preset or GPTConfig(),
        vocab_size=vocab_size,
        context_length=tensors["pos_emb.weight"].shape[0],
        emb_dim=emb_dim,
        n_layers=n_layers,
        n_heads=n_heads or preset.n_heads,
        qkv_bias="trf_blocks.0.att.W_query.bias" in tensors,
    )
    model = empty_model(GPTModel, cfg)
    head = tensors.get("out_head.weight")
    if head is not None and (head.shape[0] != vocab_size or "out_head.bias" in tensors):
        with torch.device("meta"):
            model.out_head = nn.Linear(emb_dim, head.shape[0], bias="out_head.bias" in tensors)
    rules = [Rule(name, name) for name, _ in model.named_parameters()]
    load_by_rules(model, rules, tensors, str(path), ignore=BOOK_BUFFERS)
    return model
