"""gptclf: turn a pretrained GPT-style language model into a text classifier."""

from gptclf.errors import GptclfError

__version__ = "0.1.0"
__all__ = ["GptclfError", "__version__"]
