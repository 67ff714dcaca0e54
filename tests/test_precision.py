"""Which precision a run computes in: ``auto`` picks bfloat16 only where the processor computes
it natively, a named one is kept, and under ``bf16`` the matrix products of the classifier run
in bfloat16 while the logits come back as float32."""

from __future__ import annotations

import pytest
import torch

from gptclf import precision
from gptclf.classifier import SequenceClassifier
from gptclf.data.batching import Batch
from gptclf.errors import GptclfError
from gptclf.inference import batch_logits
from gptclf.models import GPTConfig, GPTModel
from gptclf.precision import resolve_precision


@pytest.mark.parametrize(("native", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_is_bf16_exactly_where_the_cpu_computes_it_natively(native, expected, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision("auto") == expected


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("name", ["fp32", "bf16"])
def test_a_named_precision_is_kept_whatever_the_cpu(name, native, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision(name) == name


@pytest.mark.parametrize(("supported", "expected"), [(True, "bf16"), (False, "fp32")])
def test_auto_on_cuda_asks_the_gpu_not_the_cpu(supported, expected, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: not supported)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: supported)
    assert resolve_precision("auto", device="cuda") == expected


@pytest.mark.parametrize("name", ["fp16", "BF16", ""])
def test_an_unknown_precision_is_an_error_naming_it_and_the_choices(name):
    with pytest.raises(GptclfError) as error:
        resolve_precision(name)
    assert str(error.value) == f"--precision must be one of auto, bf16, fp32, not {name!r}"


@pytest.fixture(scope="module")
def classifier_and_batch() -> tuple[SequenceClassifier, Batch]:
    """A random tiny GPT classifier and a right-padded batch of two texts."""
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=50, context_length=16, emb_dim=32, n_heads=2, n_layers=2)
    classifier = SequenceClassifier(GPTModel(config), n_classes=3).eval()
    inputs = torch.randint(0, 50, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 5:] = 0
    return classifier, Batch(inputs * mask, mask, None)


def head_output_dtype(classifier: SequenceClassifier, batch: Batch, name: str) -> torch.dtype:
    """The dtype the class head's matrix product comes out in under precision ``name``."""
    seen = []
    hook = classifier.head.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    try:
        with torch.no_grad():
            batch_logits(classifier, batch, name)
    finally:
        hook.remove()
    return seen[0]


def test_fp32_logits_are_exactly_those_of_the_plain_forward(classifier_and_batch):
    classifier, batch = classifier_and_batch
    with torch.no_grad():
        plain = classifier(batch.inputs, batch.attention_mask)
        logits = batch_logits(classifier, batch, "fp32")
    assert logits.dtype == torch.float32
    assert torch.equal(logits, plain)
    assert head_output_dtype(classifier, batch, "fp32") == torch.float32


def test_bf16_computes_the_matrix_products_in_bfloat16_and_returns_float32_logits(
    classifier_and_batch,
):
    classifier, batch = classifier_and_batch
    with torch.no_grad():
        plain = classifier(batch.inputs, batch.attention_mask)
        logits = batch_logits(classifier, batch, "bf16")
    assert head_output_dtype(classifier, batch, "bf16") == torch.bfloat16
    assert logits.dtype == torch.float32
    difference = (logits - plain).abs().max().item()
    assert 0 < difference < 0.05 * plain.abs().max().item()
    assert classifier.head.weight.dtype == torch.float32  # the weights themselves stay float32
