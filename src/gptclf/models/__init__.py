"""From-scratch model architectures, one file per family."""

from gptclf.models.gpt2 import GPT2_PRESETS, GPTConfig, GPTModel, gpt2_size_from_shape
from gptclf.models.llama import LlamaConfig, LlamaModel

LanguageModel = GPTModel | LlamaModel

__all__ = [
    "GPT2_PRESETS",
    "GPTConfig",
    "GPTModel",
    "LanguageModel",
    "LlamaConfig",
    "LlamaModel",
    "gpt2_size_from_shape",
]
