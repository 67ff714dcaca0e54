"""Which precision a run computes in: ``auto`` picks bfloat16 only where the processor computes
it natively, a named one is kept, and under ``bf16`` the matrix products of the classifier run
in bfloat16 while the logits come back as float32; frozen layers cast once give autocast's
logits exactly, and ``int8`` layers compute the integer product of rounded rows."""

from __future__ import annotations

import copy

import pytest
import torch

from gptclf import precision
from gptclf.classifier import SequenceClassifier
from gptclf.data.batching import Batch
from gptclf.errors import GptclfError
from gptclf.inference import batch_logits
from gptclf.lora import apply_lora
from gptclf.models import GPTConfig, GPTModel
from gptclf.precision import Int8Linear, frozen_linears, resolve_precision, set_frozen_precision
from gptclf.trainable import set_trainable


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
    assert str(error.value) == f"--precision must be one of auto, bf16, fp32, int8, not {name!r}"


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


def test_int8_needs_a_cpu_with_integer_dot_products(monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_int8_dot", lambda: True)
    assert resolve_precision("int8") == "int8"
    with pytest.raises(GptclfError, match="not on a GPU"):
        resolve_precision("int8", device="cuda")
    monkeypatch.setattr(precision, "cpu_has_int8_dot", lambda: False)
    with pytest.raises(GptclfError, match=r"not on this CPU \(no VNNI or AMX"):
        resolve_precision("int8")


def test_an_int8_layer_is_the_integer_product_of_rows_rounded_to_int8_scaled_back():
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 24)
    x = torch.randn(2, 5, 64) * torch.linspace(0.1, 10, 5)[:, None]  # rows of other scales
    w_scale = linear.weight.abs().amax(1) / 127
    w_int = (linear.weight / w_scale[:, None]).round()
    x_scale = x.abs().amax(-1, keepdim=True) / 127
    x_int = (x / x_scale).round()
    expected = (x_int.double() @ w_int.double().T) * x_scale * w_scale + linear.bias
    with torch.no_grad():
        out = Int8Linear(linear)(x)
        exact = linear(x)
    assert out.shape == (2, 5, 24) and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    assert (out - exact).abs().max() < 0.02 * exact.abs().max()  # and close to the float layer


def test_frozen_layers_cast_to_bf16_once_give_autocasts_logits_exactly(classifier_and_batch):
    classifier, batch = classifier_and_batch
    with torch.no_grad():
        autocast = batch_logits(classifier, batch, "bf16")
        cast = copy.deepcopy(classifier)
        set_frozen_precision(
            cast, [n for n, _ in cast.named_modules() if n.endswith("W_query")], "bf16"
        )
        assert cast.language_model.trf_blocks[0].att.W_query.weight.dtype == torch.bfloat16
        assert torch.equal(batch_logits(cast, batch, "bf16"), autocast)


def test_the_frozen_linear_layers_leave_out_those_that_train_and_lora_bases():
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=50, context_length=16, emb_dim=32, n_heads=2, n_layers=2)
    classifier = SequenceClassifier(GPTModel(config), n_classes=3)
    set_trainable(classifier, "last-block")
    frozen = frozen_linears(classifier)
    assert frozen and all(name.startswith("language_model.trf_blocks.0.") for name in frozen)
    apply_lora(classifier.language_model, rank=2, alpha=4.0, targets=("qv",))
    set_trainable(classifier, "lora")
    frozen = frozen_linears(classifier)
    assert not any("W_query" in name or "W_value" in name or "out_head" in name for name in frozen)
    assert any(name.endswith("W_key") for name in frozen)
