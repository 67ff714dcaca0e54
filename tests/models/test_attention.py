from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend

from gptclf.models import attention
from gptclf.models.attention import blocked_attention, causal_attention, stock_attention
from gptclf.models.stack import causal_padding_mask


def qkv(batch: int, heads: int, groups: int, length: int, grad: bool = False):
    torch.manual_seed(0)
    q = torch.randn(batch, heads, length, 16, requires_grad=grad)
    k, v = (torch.randn(batch, groups, length, 16, requires_grad=grad) for _ in range(2))
    return q, k, v


def reference(q, k, v, mask):
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=True
    )


@pytest.mark.parametrize("heads,groups", [(6, 2), (4, 4)])
@pytest.mark.parametrize("length", [1, 127, 128, 300])
def test_blocked_attention_equals_pytorch_causal(heads, groups, length):
    q, k, v = qkv(2, heads, groups, length)
    torch.testing.assert_close(blocked_attention(q, k, v, None), reference(q, k, v, None))


def test_blocked_attention_equals_pytorch_with_padding_mask():
    q, k, v = qkv(3, 6, 2, 200)
    present = torch.ones(3, 200, dtype=torch.long)
    present[0, 150:] = 0
    present[2, 7:] = 0
    mask = causal_padding_mask(present, 200)
    torch.testing.assert_close(blocked_attention(q, k, v, mask), reference(q, k, v, mask))


def test_blocked_attention_equals_pytorch_with_a_window_and_its_own_scale():
    q, k, v = qkv(2, 6, 2, 300)
    mask = causal_padding_mask(None, 300, window=70)  # one mask for the whole batch
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True, scale=0.3)
    torch.testing.assert_close(blocked_attention(q, k, v, mask, scale=0.3), expected)


def test_blocked_attention_gradients_equal_pytorch():
    q, k, v = qkv(2, 6, 2, 260, grad=True)
    grad = torch.randn(2, 6, 260, 16)
    ours = torch.autograd.grad(blocked_attention(q, k, v, None), (q, k, v), grad)
    theirs = torch.autograd.grad(reference(q, k, v, None), (q, k, v), grad)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b)


def test_long_sequences_without_gradients_take_the_blocked_kernel_unless_stock(monkeypatch):
    calls = []
    monkeypatch.setattr(attention, "blocked_attention", lambda *a: calls.append(a) or a[0])
    long, short = qkv(1, 6, 2, attention.BLOCKED_FROM), qkv(1, 6, 2, attention.BLOCKED_FROM - 1)
    with torch.no_grad():
        causal_attention(*long, None)
        assert len(calls) == 1
        causal_attention(*short, None)
        causal_attention(*long, None, dropout=0.1)
        with stock_attention():
            causal_attention(*long, None)
    causal_attention(*long, None)  # gradients on
    assert len(calls) == 1


def test_short_sequences_with_gradients_take_the_math_kernel(monkeypatch):
    backends = []
    monkeypatch.setattr(
        attention, "sdpa_kernel", lambda backend: backends.append(backend) or nullcontext()
    )
    q, k, v = qkv(1, 6, 2, attention.MATH_UP_TO, grad=True)
    causal_attention(q, k, v, None)
    with torch.no_grad():
        causal_attention(q, k, v, None)
    causal_attention(*qkv(1, 6, 2, attention.MATH_UP_TO + 1, grad=True), None)
    assert backends == [SDPBackend.MATH]
