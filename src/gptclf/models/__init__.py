"""From-scratch model architectures, one file per family; each file ends with its ``Family``,
everything gptclf needs to know about it, and ``FAMILIES`` lists them."""

from torch import nn

from gptclf.errors import GptclfError
from gptclf.models.family import Family, LanguageModel
from gptclf.models.gpt2 import GPT2, GPT2_PRESETS, GPTConfig, GPTModel, gpt2_size_from_shape
from gptclf.models.llama import LLAMA, LlamaConfig, LlamaModel

FAMILIES: dict[str, Family] = {family.name: family for family in (GPT2, LLAMA)}


def family_of(module: nn.Module) -> Family:
    """The family whose model or block ``module`` is."""
    for family in FAMILIES.values():
        if isinstance(module, (family.model, family.block)):
            return family
    raise GptclfError(f"{type(module).__name__} belongs to no known model family")


__all__ = [
    "FAMILIES",
    "GPT2_PRESETS",
    "Family",
    "GPTConfig",
    "GPTModel",
    "LanguageModel",
    "LlamaConfig",
    "LlamaModel",
    "family_of",
    "gpt2_size_from_shape",
]
