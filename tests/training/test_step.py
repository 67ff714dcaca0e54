"""The optimizer step of training: the global gradient norm clipped to ``max_grad_norm`` (and
left alone without it), the schedule stepped with the optimizer, and gradient accumulation over
half batches giving the gradients of the whole batch, and label smoothing applied to the training
loss but not to the measured one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gptclf.classifier import SequenceClassifier
from gptclf.data.batching import Batch
from gptclf.models import GPTConfig, GPTModel
from gptclf.training.schedule import lr_factor
from gptclf.training.step import TrainingStep

VOCAB = 50


def tiny_classifier(seed: int = 0) -> SequenceClassifier:
    """A random two-block GPT with a three-class head, without dropout."""
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=VOCAB, context_length=16, emb_dim=16, n_heads=2, n_layers=2)
    return SequenceClassifier(GPTModel(config), n_classes=3)


def training_step(
    classifier: SequenceClassifier,
    *,
    lr: float = 0.0,
    schedule: str = "constant",
    warmup: float = 0.0,
    total_steps: int = 1,
    **options,
) -> TrainingStep:
    """Plain SGD (lr 0 unless given) under ``schedule``, so updates are easy to predict."""
    optimizer = RecordingSGD(classifier.parameters(), lr=lr)
    factor = lr_factor(schedule, warmup, total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return TrainingStep(classifier, optimizer, scheduler, precision="fp32", **options)


def set_gradients(step: TrainingStep, norm: float) -> list[torch.Tensor]:
    """Give every parameter a known random gradient; together they have global norm ``norm``.
    Returns copies of them."""
    generator = torch.Generator().manual_seed(1)
    grads = [torch.randn(p.shape, generator=generator) for p in step.params]
    scale = norm / torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item()
    for param, grad in zip(step.params, grads, strict=True):
        param.grad = grad * scale
    return [p.grad.clone() for p in step.params]


class RecordingSGD(torch.optim.SGD):
    """SGD that records the gradients each step is given (training clears them after)."""

    def __init__(self, params, lr: float):
        super().__init__(params, lr=lr)
        self.gradients_seen: list[list[torch.Tensor]] = []

    def step(self, closure=None):
        params = [p for group in self.param_groups for p in group["params"]]
        self.gradients_seen.append([p.grad.clone() for p in params])
        return super().step(closure)


def global_norm(grads: list[torch.Tensor]) -> float:
    return torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item()


def test_gradients_above_max_grad_norm_are_scaled_down_to_it_in_direction():
    step = training_step(tiny_classifier(), max_grad_norm=1.0)
    given = set_gradients(step, norm=10.0)
    step.optimizer_step()
    seen = step.optimizer.gradients_seen
    (clipped,) = seen
    assert global_norm(clipped) == pytest.approx(1.0, rel=1e-4)
    for got, original in zip(clipped, given, strict=True):
        torch.testing.assert_close(got, original / 10.0, rtol=1e-4, atol=1e-7)
    assert all(p.grad is None for p in step.params)  # cleared for the next step


def test_gradients_below_max_grad_norm_are_left_as_they_are():
    step = training_step(tiny_classifier(), max_grad_norm=1.0)
    given = set_gradients(step, norm=0.5)
    step.optimizer_step()
    seen = step.optimizer.gradients_seen
    for got, original in zip(seen[0], given, strict=True):
        torch.testing.assert_close(got, original, rtol=1e-6, atol=0)


@pytest.mark.parametrize("max_grad_norm", [None, 0.0])
def test_without_max_grad_norm_large_gradients_are_not_clipped(max_grad_norm):
    step = training_step(tiny_classifier(), max_grad_norm=max_grad_norm)
    given = set_gradients(step, norm=1000.0)
    step.optimizer_step()
    seen = step.optimizer.gradients_seen
    assert global_norm(seen[0]) == pytest.approx(1000.0, rel=1e-4)
    for got, original in zip(seen[0], given, strict=True):
        assert torch.equal(got, original)


def test_each_optimizer_step_moves_the_weights_by_the_scheduled_rate_times_the_gradient():
    """Linear warm-up over 2 of 6 steps, then linear decay: SGD's update of each step is
    peak * factor(step) * gradient, and the rate reaches 0 after the last step."""
    classifier = tiny_classifier()
    step = training_step(classifier, lr=0.1, schedule="linear", warmup=1 / 3, total_steps=6)
    expected = [0.05, 0.1, 0.1, 0.075, 0.05, 0.025]
    head = classifier.head.weight
    for rate in expected:
        assert step.optimizer.param_groups[0]["lr"] == pytest.approx(rate)
        before = head.detach().clone()
        set_gradients(step, norm=1.0)
        gradient = head.grad.clone()
        step.optimizer_step()
        torch.testing.assert_close(head.detach(), before - rate * gradient, rtol=0, atol=1e-7)
    assert step.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def equal_length_batch(n: int, length: int = 7, seed: int = 2) -> Batch:
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, VOCAB, (n, length), generator=generator)
    labels = torch.randint(0, 3, (n,), generator=generator)
    return Batch(inputs, torch.ones(n, length, dtype=torch.long), labels)


def rows(batch: Batch, part: slice) -> Batch:
    return Batch(batch.inputs[part], batch.attention_mask[part], batch.labels[part])


def test_two_accumulated_half_batches_give_the_gradients_of_the_whole_batch():
    batch = equal_length_batch(8)
    whole = training_step(tiny_classifier(), grad_accumulation=1)
    whole_loss, whole_correct = whole.forward_backward(batch, step_ends=True)

    halves = training_step(tiny_classifier(), grad_accumulation=2)
    first = halves.forward_backward(rows(batch, slice(0, 4)), step_ends=False)
    second = halves.forward_backward(rows(batch, slice(4, 8)), step_ends=True)

    assert first[1] + second[1] == whole_correct
    assert (first[0] + second[0]) / 2 == pytest.approx(whole_loss, rel=1e-5)
    pairs = zip(whole.classifier.named_parameters(), halves.classifier.parameters(), strict=True)
    for (name, expected), accumulated in pairs:
        assert expected.grad is not None and expected.grad.abs().sum() > 0, name
        torch.testing.assert_close(accumulated.grad, expected.grad, rtol=1e-4, atol=1e-6)


def test_label_smoothing_is_in_the_training_loss_and_not_in_the_measured_loss():
    batch = equal_length_batch(6)
    step = training_step(tiny_classifier(), label_smoothing=0.2)
    with torch.no_grad():
        logits = step.classifier(batch.inputs, batch.attention_mask)
    smoothed = F.cross_entropy(logits, batch.labels, label_smoothing=0.2).item()
    plain = F.cross_entropy(logits, batch.labels).item()
    assert smoothed != pytest.approx(plain, rel=1e-3)  # the two differ for these logits

    trained_loss, _ = step.forward_backward(batch, step_ends=True)
    measured_loss, _, _ = step.measure([batch], limit=None)
    assert trained_loss == pytest.approx(smoothed, rel=1e-5)
    assert measured_loss == pytest.approx(plain, rel=1e-5)
