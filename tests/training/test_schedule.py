"""The learning-rate factor of each step, worked out by hand for every schedule, the rates an
AdamW sees under it, which parameters decay, and the loss's balanced class weights."""

from __future__ import annotations

import math

import pytest
import torch

from gptclf.classifier import SequenceClassifier
from gptclf.data.dataset import DataSource, load_splits
from gptclf.models import GPTConfig, GPTModel
from gptclf.recipe import recipe
from gptclf.trainable import set_trainable, trainable_parameters
from gptclf.training.prepare import base_model, prepare_loaded
from gptclf.training.schedule import balanced_class_weights, decay_groups, lr_factor
from gptclf.training.train import build_trainer


def factors(schedule: str, warmup: float, total_steps: int, steps: range) -> list[float]:
    factor = lr_factor(schedule, warmup, total_steps)
    return [factor(step) for step in steps]


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
def test_warm_up_rises_linearly_to_the_peak_over_the_warmup_fraction_of_the_steps(schedule):
    # 0.25 of 20 steps: 5 warm-up steps at (step + 1) / 5.
    assert factors(schedule, 0.25, 20, range(5)) == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])


def test_constant_schedule_stays_at_the_peak_after_warm_up():
    assert factors("constant", 0.25, 20, range(5, 25)) == [1.0] * 20


def test_linear_schedule_decays_from_the_peak_to_zero_at_the_last_step():
    # 2 warm-up steps of 10, then 8 steps down: 1 - (step - 2) / 8.
    expected = [1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8, 0.0]
    assert factors("linear", 0.2, 10, range(2, 11)) == pytest.approx(expected)
    assert factors("linear", 0.2, 10, range(11, 14)) == [0.0] * 3  # never negative


def test_cosine_schedule_is_half_the_peak_midway_through_the_decay_and_zero_at_the_end():
    # 2 warm-up steps of 10, decay over steps 2..10: midpoint at step 6.
    factor = lr_factor("cosine", 0.2, 10)
    assert factor(2) == pytest.approx(1.0)
    assert factor(4) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))  # 0.854
    assert factor(6) == pytest.approx(0.5)
    assert factor(8) == pytest.approx(0.5 * (1 + math.cos(3 * math.pi / 4)))  # 0.146
    assert factor(10) == pytest.approx(0.0, abs=1e-12)
    assert factor(13) == pytest.approx(0.0, abs=1e-12)  # stays at 0, does not come back up


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
def test_without_warm_up_the_first_step_runs_at_the_peak(schedule):
    assert lr_factor(schedule, 0.0, 10)(0) == 1.0


def test_warm_up_steps_are_the_whole_number_below_the_fraction_of_the_steps():
    # 0.1 of 15 steps is 1.5: one warm-up step, so step 0 already runs at the peak.
    assert factors("constant", 0.1, 15, range(2)) == [1.0, 1.0]
    assert factors("constant", 0.2, 15, range(4)) == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])


def test_adamw_under_lambda_lr_sees_the_peak_rate_times_the_factor_of_each_step():
    weight = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.AdamW([weight], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor("linear", 0.25, 8))
    seen = []
    for _ in range(8):
        seen.append(optimizer.param_groups[0]["lr"])
        weight.grad = torch.ones(3)
        optimizer.step()
        scheduler.step()
    # 2 warm-up steps (0.05, 0.1), then 0.1 * (1 - k / 6) for k = 0..5.
    assert seen == pytest.approx([0.05, 0.1, 0.1, 0.1 * 5 / 6, 0.1 * 4 / 6, 0.05, 0.1 / 3, 0.1 / 6])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_balanced_class_weights_are_inverse_to_class_frequency():
    weights = balanced_class_weights([0, 0, 0, 0, 0, 0, 1, 1], 2)
    assert weights.tolist() == pytest.approx([8 / (2 * 6), 8 / (2 * 2)])


def test_a_class_absent_from_the_training_labels_gets_a_finite_weight():
    weights = balanced_class_weights([0, 0, 1, 1], 3)
    assert weights.tolist() == pytest.approx([4 / 6, 4 / 6, 4 / 3])


def fully_trainable_parameters() -> dict[str, torch.nn.Parameter]:
    """Every parameter of a tiny two-block GPT classifier, by name."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=30, context_length=8, emb_dim=8, n_heads=2, n_layers=2)
    classifier = SequenceClassifier(GPTModel(cfg), n_classes=2)
    set_trainable(classifier, "all")
    return trainable_parameters(classifier)


def names_in(group: dict, trainable: dict[str, torch.nn.Parameter]) -> set[str]:
    held = {id(p) for p in group["params"]}
    return {name for name, p in trainable.items() if id(p) in held}


def test_decay_of_matrices_only_leaves_every_norm_and_bias_in_a_group_without_decay():
    trainable = fully_trainable_parameters()
    decayed, kept = decay_groups(trainable, 0.1, "matrices")
    assert (decayed["weight_decay"], kept["weight_decay"]) == (0.1, 0.0)
    matrices = {name for name, p in trainable.items() if p.dim() >= 2}
    assert names_in(decayed, trainable) == matrices
    assert names_in(kept, trainable) == set(trainable) - matrices
    assert {"out_head.bias", "final_norm.scale", "final_norm.shift"} <= names_in(kept, trainable)
    assert {"out_head.weight", "tok_emb.weight"} <= matrices
    assert all(("norm" in n or n.endswith(".bias")) for n in names_in(kept, trainable))


def test_decay_of_all_is_one_group_of_every_parameter():
    trainable = fully_trainable_parameters()
    (group,) = decay_groups(trainable, 0.3, "all")
    assert group["weight_decay"] == 0.3 and names_in(group, trainable) == set(trainable)


def test_the_trainers_adamw_shrinks_matrices_but_not_norms_and_biases_under_decay_matrices(
    spam_data, tiny_gpt2_base
):
    """With zero gradients AdamW's update is its weight decay alone: p * (1 - lr * decay)."""
    config = recipe(
        model=str(tiny_gpt2_base),
        decay="matrices",
        weight_decay=0.5,
        lr=0.1,
        warmup=0.0,
        precision="fp32",
    )
    source = DataSource(train=spam_data / "train.csv", validation=spam_data / "val.csv")
    prepared = prepare_loaded(config, load_splits(source), base_model(config))
    optimizer = build_trainer(config, prepared, quiet=True).step.optimizer
    head, norm = prepared.classifier.head, prepared.classifier.language_model.final_norm
    before = {"head": head.weight.detach().clone(), "bias": head.bias.detach().clone()}
    before["norm"] = norm.scale.detach().clone()
    for group in optimizer.param_groups:
        for param in group["params"]:
            param.grad = torch.zeros_like(param)
    optimizer.step()
    torch.testing.assert_close(head.weight.detach(), before["head"] * (1 - 0.1 * 0.5))
    assert torch.equal(head.bias.detach(), before["bias"])
    assert torch.equal(norm.scale.detach(), before["norm"])
