"""The learning-rate factor of each step, worked out by hand for every schedule, the rates an
AdamW sees under it, and the loss's balanced class weights."""

from __future__ import annotations

import math

import pytest
import torch

from gptclf.training.schedule import balanced_class_weights, lr_factor


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
