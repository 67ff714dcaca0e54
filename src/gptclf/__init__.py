"""gptclf: turn a pretrained GPT-style language model into a text classifier.

from gptclf import Classifier
classifier = Classifier.from_pretrained("runs/demo")
classifier.classify("You are a winner! Claim your $1000 cash prize now.")  # 'spam'
"""

from gptclf.errors import GptclfError

__version__ = "0.1.0"
__all__ = ["Classifier", "GptclfError", "__version__"]


def __getattr__(name: str):
    if name == "Classifier":  # imported on first use: it loads torch
        from gptclf.predict import Classifier

        return Classifier
    raise AttributeError(f"module 'gptclf' has no attribute {name!r}")
