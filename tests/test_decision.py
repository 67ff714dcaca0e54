"""Decision thresholds, temperatures and calibration figures, each against a reference computed
another way: brute force over every threshold, data drawn at a known temperature, the textbook
formulas."""

import numpy as np
import pytest
import torch

from gptclf.decision import (
    Decision,
    at_temperature_bound,
    calibration_metrics,
    choose_threshold,
    choose_thresholds,
    decide,
    fit_temperature,
    reliability_bins,
    with_temperature,
)
from gptclf.errors import GptclfError


def noisy_binary(seed: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Labels and two-class probabilities whose classes overlap (no threshold separates them)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 2, n)
    p1 = 1 / (1 + np.exp(-(1.5 * (2 * ids - 1) + rng.normal(0, 1.5, n))))
    return ids, np.stack([1 - p1, p1], axis=1).astype(np.float32)


def every_threshold(ids: np.ndarray, probabilities: np.ndarray) -> list[tuple[float, float, float]]:
    """(threshold, precision, recall) of predicting class 1 at each distinct score: by hand."""
    rows = []
    for t in np.unique(probabilities[:, 1]):
        decided = probabilities[:, 1] >= t
        hits = (decided & (ids == 1)).sum()
        rows.append((t, hits / decided.sum(), hits / (ids == 1).sum()))
    return rows


def decided_figures(threshold: float, ids: np.ndarray, probabilities: np.ndarray):
    decided = decide(probabilities, threshold) == 1
    hits = (decided & (ids == 1)).sum()
    return hits / decided.sum(), hits / (ids == 1).sum()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("rule", ["precision@0.9", "recall@0.8", "f1"])
def test_the_chosen_threshold_is_the_best_that_meets_the_bound_by_brute_force(rule, seed):
    ids, probabilities = noisy_binary(seed)
    chosen = choose_threshold(rule, ids, probabilities)
    precision, recall = decided_figures(chosen["threshold"], ids, probabilities)
    assert (precision, recall) == pytest.approx((chosen["precision"], chosen["recall"]))
    rows = every_threshold(ids, probabilities)
    if rule == "f1":
        best = max(2 * p * r / (p + r) for _, p, r in rows)
        assert 2 * precision * recall / (precision + recall) == pytest.approx(best)
    elif rule.startswith("precision"):
        assert recall >= 0.9
        assert precision == pytest.approx(max(p for _, p, r in rows if r >= 0.9))
    else:
        assert precision >= 0.8
        assert recall == pytest.approx(max(r for _, p, r in rows if p >= 0.8))
    assert chosen["met"]


def test_the_threshold_lies_between_the_scores_it_separates():
    ids = np.array([0, 0, 1, 1])
    probabilities = np.array([[0.9, 0.1], [0.7, 0.3], [0.4, 0.6], [0.2, 0.8]])
    chosen = choose_threshold("precision@1", ids, probabilities)
    assert chosen["threshold"] == pytest.approx(0.45)
    assert (chosen["precision"], chosen["recall"], chosen["met"]) == (1.0, 1.0, True)


def test_an_unreachable_bound_takes_the_closest_threshold_and_says_so():
    ids = np.array([1, 0, 1, 0])  # a ham scored highest: precision never reaches 0.9
    p1 = np.array([0.6, 0.9, 0.5, 0.2])
    chosen = choose_threshold("recall@0.9", ids, np.stack([1 - p1, p1], axis=1))
    assert not chosen["met"]
    assert (chosen["precision"], chosen["recall"]) == pytest.approx((2 / 3, 1.0))
    assert chosen["threshold"] == pytest.approx(0.35)


def test_a_threshold_needs_both_classes_in_the_validation_split():
    with pytest.raises(GptclfError, match="both classes"):
        choose_threshold("f1", np.array([1, 1]), np.array([[0.2, 0.8], [0.4, 0.6]]))


def test_the_temperature_is_that_of_the_data():
    """Labels drawn from softmax(z / 2) with z given: the fitted temperature of softmax(z) is 2."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(20_000, 3, generator=generator) * 3
    ids = torch.multinomial((logits / 2).softmax(-1), 1, generator=generator).squeeze(1)
    fitted = fit_temperature(ids.numpy(), logits.softmax(-1).numpy())
    assert fitted == pytest.approx(2.0, rel=0.05)


def test_a_validation_split_without_errors_drives_the_temperature_to_its_bound():
    ids = np.array([0, 1, 1])
    fitted = fit_temperature(ids, np.array([[0.7, 0.3], [0.4, 0.6], [0.1, 0.9]]))
    assert at_temperature_bound(fitted) and fitted < 0.01
    assert not at_temperature_bound(fit_temperature(*noisy_binary(0)))


def test_a_temperature_divides_the_logits():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 4.0, 0.0]], dtype=torch.float64)
    scaled = with_temperature(logits.softmax(-1).numpy(), 1.7)
    np.testing.assert_allclose(scaled, (logits / 1.7).softmax(-1).numpy(), rtol=1e-12)


def test_calibration_figures_match_their_formulas():
    ids = np.array([1, 0, 1, 1])
    p1 = np.array([0.95, 0.62, 0.55, 0.05])
    probabilities = np.stack([1 - p1, p1], axis=1)
    figures = calibration_metrics(ids, probabilities)
    assert figures["brier"] == pytest.approx(np.mean((p1 - ids) ** 2))
    # confidences 0.95 (right), 0.62 (wrong), 0.55 (right), 0.95 (wrong): bins [0.6, 0.667),
    # [0.533, 0.6) and [0.933, 1.0] hold them
    expected = (abs(0.62 - 0) + abs(0.55 - 1) + 2 * abs(0.95 - 0.5)) / 4
    assert figures["ece"] == pytest.approx(expected)
    assert sum(b["count"] for b in reliability_bins(ids, probabilities)) == 4


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        ({"temperature": 0, "threshold": None, "rule": "argmax"}, "not positive"),
        ({"temperature": 1.0, "threshold": 0.3, "rule": "argmax"}, "does not fit rule"),
        ({"temperature": 1.0, "threshold": None, "rule": "f1"}, "does not fit rule"),
        ({"temperature": 1.0, "threshold": 1.0, "rule": "f1"}, "strictly between 0 and 1"),
        ({"temperature": 1.0, "threshold": 0.3, "rule": "precision@0"}, "is not one of"),
        ({"temperature": 1.0}, "must hold temperature, threshold and rule"),
    ],
)
def test_a_damaged_decision_is_refused(stored, message):
    with pytest.raises(GptclfError, match=message):
        Decision.from_json(stored)


def test_a_decision_survives_its_json():
    decision = Decision(1.25, 0.125, "precision@0.99")
    assert Decision.from_json(decision.to_json()) == decision
    assert Decision.from_json(None) == Decision()


def test_multi_label_temperature_divides_each_labels_logit_and_is_recovered_from_data():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (4000, 3))
    truth = (rng.random((4000, 3)) < 1 / (1 + np.exp(-logits / 2.0))).astype(np.float32)
    sharp = 1 / (1 + np.exp(-logits))  # the model's probabilities: too sure by a factor 2
    calibrated = with_temperature(sharp, 2.0, multi_label=True)
    np.testing.assert_allclose(calibrated, 1 / (1 + np.exp(-logits / 2.0)), rtol=1e-6)
    assert fit_temperature(truth, sharp) == pytest.approx(2.0, rel=0.08)
    before = calibration_metrics(truth, sharp)["ece"]
    assert calibration_metrics(truth, calibrated)["ece"] < before / 2


def test_each_labels_threshold_is_the_one_its_column_alone_would_get():
    ids, p = noisy_binary(3)
    other_ids, other_p = noisy_binary(4)
    truth = np.stack([ids, other_ids, np.ones_like(ids)], axis=1)
    probabilities = np.stack([p[:, 1], other_p[:, 1], p[:, 0]], axis=1)
    chosen = choose_thresholds("recall@0.9", truth, probabilities)
    assert chosen["thresholds"][0] == choose_threshold("recall@0.9", ids, p)["threshold"]
    assert (
        chosen["thresholds"][1] == choose_threshold("recall@0.9", other_ids, other_p)["threshold"]
    )
    assert chosen["thresholds"][2] == 0.5 and chosen["per_label"][2] is None  # in every text


def test_a_stored_multi_label_decision_must_hold_one_threshold_per_label():
    decision = Decision.from_json({"temperature": 1.0, "threshold": [0.3, 0.7], "rule": "f1"})
    decision.check_fits(2, multi_label=True)
    with pytest.raises(GptclfError, match="not one per label"):
        decision.check_fits(3, multi_label=True)
    with pytest.raises(GptclfError, match="not one number"):
        decision.check_fits(2, multi_label=False)
    with pytest.raises(GptclfError, match="strictly between 0 and 1"):
        Decision.from_json({"temperature": 1.0, "threshold": [0.3, 1.2], "rule": "f1"})
