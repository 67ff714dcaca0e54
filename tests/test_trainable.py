"""Which parameters train under each ``--trainable`` choice."""

import pytest
import torch

from gptclf.classifier import SequenceClassifier
from gptclf.errors import GptclfError
from gptclf.lora import apply_lora
from gptclf.models import GPTConfig, GPTModel
from gptclf.trainable import count_parameters, set_trainable, trainable_blocks, trainable_parameters


def tiny_classifier() -> SequenceClassifier:
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=30, context_length=16, emb_dim=8, n_heads=2, n_layers=3)
    return SequenceClassifier(GPTModel(cfg), n_classes=2)


def prefixes(names) -> set[str]:
    """The top-level module of each parameter name, with the block index."""
    return {
        ".".join(name.split(".")[:2]) if name.startswith("trf_blocks") else name.split(".")[0]
        for name in names
    }


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("head", {"out_head"}),
        ("last-block", {"out_head", "final_norm", "trf_blocks.2"}),
        ("last-blocks:2", {"out_head", "final_norm", "trf_blocks.1", "trf_blocks.2"}),
    ],
)
def test_each_choice_trains_the_head_and_the_top_blocks_it_names(spec, expected):
    classifier = tiny_classifier()
    set_trainable(classifier, spec)
    assert prefixes(trainable_parameters(classifier)) == expected


def test_all_trains_every_parameter():
    classifier = tiny_classifier()
    set_trainable(classifier, "all")
    trainable, total = count_parameters(classifier)
    assert trainable == total


def test_lora_trains_the_adapters_and_the_head_only():
    classifier = tiny_classifier()
    apply_lora(classifier.language_model, rank=2, alpha=4)
    set_trainable(classifier, "lora")
    names = trainable_parameters(classifier)
    assert names and all(
        n.endswith(("lora_A", "lora_B")) or n.startswith("out_head") for n in names
    )


@pytest.mark.parametrize("spec", ["last-blocks:0", "last-blocks:4", "top", "last-blocks:x"])
def test_a_choice_the_model_cannot_take_is_an_error(spec):
    with pytest.raises(GptclfError, match=spec):
        trainable_blocks(spec, n_layers=3)
