"""From class probabilities to a decision: a temperature that calibrates the probabilities and a
threshold on the positive class (class id 1 of two), both chosen on the validation split and
saved with the run; and how well probabilities are calibrated (expected calibration error, Brier
score, the reliability curve)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.metrics import precision_recall_curve

from gptclf.errors import GptclfError

POSITIVE_CLASS = 1
DECIDE_PATTERN = r"argmax|f1|(precision|recall)@(0?\.\d*[1-9]\d*|1(\.0*)?)"
DECIDE_SHOWN = "argmax | f1 | precision@R | recall@P"
CALIBRATIONS = (None, "temperature")
CALIBRATION_BINS = 15
THRESHOLD_MARGIN = 1e-12  # a threshold lies strictly between 0 and 1
LOG_TEMPERATURE_BOUND = 5.0  # temperatures from e^-5 to e^5


@dataclass(frozen=True)
class Decision:
    """How a run turns probabilities into a label: it divides their logits by ``temperature``
    (1: as the model computes them), then predicts the positive class wherever its probability
    reaches ``threshold`` (None: the most probable class), which ``rule`` chose."""

    temperature: float = 1.0
    threshold: float | None = None
    rule: str = "argmax"

    def calibrated(self, probabilities: np.ndarray) -> np.ndarray:
        """``probabilities`` (n, n_classes) as the softmax of their logits over the
        temperature."""
        return with_temperature(probabilities, self.temperature)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, stored: object) -> Decision:
        """The decision ``to_json`` stored (None: argmax on uncalibrated probabilities); a
        damaged one is an error."""
        if stored is None:
            return cls()
        if not isinstance(stored, dict) or set(stored) != {"temperature", "threshold", "rule"}:
            raise GptclfError(f"decision must hold temperature, threshold and rule: {stored!r}")
        temperature, threshold, rule = stored["temperature"], stored["threshold"], stored["rule"]
        if not _is_number(temperature) or temperature <= 0:
            raise GptclfError(f"decision temperature = {temperature!r} is not positive")
        if not isinstance(rule, str) or not re.fullmatch(DECIDE_PATTERN, rule):
            raise GptclfError(f"decision rule = {rule!r} is not one of {DECIDE_SHOWN}")
        if (threshold is None) != (rule == "argmax"):
            raise GptclfError(f"decision threshold = {threshold!r} does not fit rule {rule!r}")
        check_threshold(threshold, 2)  # the number of classes is the run config's to check
        return cls(float(temperature), threshold, rule)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_threshold(threshold: float | None, n_classes: int) -> None:
    """A threshold needs two classes and lies strictly between 0 and 1."""
    if threshold is None:
        return
    if n_classes != 2:
        raise GptclfError(f"a decision threshold needs exactly two classes, not {n_classes}")
    if not _is_number(threshold) or not 0 < threshold < 1:
        raise GptclfError(
            f"the decision threshold must lie strictly between 0 and 1, not {threshold}"
        )


def decide(probabilities: np.ndarray, threshold: float | None) -> np.ndarray:
    """The class id each row of ``probabilities`` decides: the positive class where its
    probability reaches ``threshold``, else (no threshold) the most probable class."""
    if threshold is None:
        return probabilities.argmax(axis=1)
    return (probabilities[:, POSITIVE_CLASS] >= threshold).astype(int)


def with_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """The softmax of ``log(probabilities) / temperature``: the same as dividing the logits."""
    if temperature == 1.0:
        return probabilities
    scaled = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-300, 1.0))
    scaled /= temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(probabilities.dtype)


def fit_temperature(ids: Sequence[int], probabilities: np.ndarray) -> float:
    """The temperature that minimises the mean negative log-likelihood of the true classes."""
    ids = np.asarray(ids)

    def loss(log_temperature: float) -> float:
        scaled = with_temperature(probabilities.astype(np.float64), float(np.exp(log_temperature)))
        return float(-np.log(np.clip(scaled[np.arange(len(ids)), ids], 1e-300, 1.0)).mean())

    bound = LOG_TEMPERATURE_BOUND
    found = minimize_scalar(loss, bounds=(-bound, bound), method="bounded").x
    best = min((-bound, bound, found), key=loss)  # the search stops short of an edge
    return round(float(np.exp(best)), 6)


def at_temperature_bound(temperature: float) -> bool:
    """Whether a fitted temperature stopped at the edge of its range: the validation split
    (every text right, say) has no finite best."""
    return abs(abs(np.log(temperature)) - LOG_TEMPERATURE_BOUND) < 1e-4


def choose_threshold(rule: str, ids: Sequence[int], probabilities: np.ndarray) -> dict:
    """The threshold on p(class 1) that ``rule`` picks on these labelled probabilities: "f1"
    the best F1 of class 1, "precision@R" the best precision with recall at least R,
    "recall@P" the best recall with precision at least P; where no threshold meets the bound,
    the one that comes closest. The threshold lies halfway between the two scores it separates,
    so it decides these examples as the score itself would. Returns the threshold, the
    precision and recall it gives here, and whether it meets the bound."""
    is_positive = np.asarray(ids) == POSITIVE_CLASS
    if is_positive.all() or not is_positive.any():
        raise GptclfError(
            "choosing a decision threshold needs both classes in the validation split"
        )
    scores = probabilities[:, POSITIVE_CLASS].astype(np.float64)
    precision, recall, thresholds = precision_recall_curve(is_positive, scores)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    best, met = _best_point(rule, precision, recall)
    below = scores[scores < thresholds[best]]
    threshold = (thresholds[best] + (below.max() if below.size else 0.0)) / 2
    threshold = min(max(threshold, THRESHOLD_MARGIN), 1 - THRESHOLD_MARGIN)
    return {
        "threshold": float(threshold),
        "precision": float(precision[best]),
        "recall": float(recall[best]),
        "met": met,
    }


def _best_point(rule: str, precision: np.ndarray, recall: np.ndarray) -> tuple[int, bool]:
    """The index of the point ``rule`` picks on the curve, and whether it meets its bound; of
    points equally good, the one better on the other measure."""
    if rule == "f1":
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        return _best(f1, recall), True
    target, bound = rule.split("@")
    wanted, bounded = (precision, recall) if target == "precision" else (recall, precision)
    allowed = bounded >= float(bound)
    if not allowed.any():
        return _best(bounded, wanted), False
    return _best(np.where(allowed, wanted, -1.0), bounded), True


def _best(first: np.ndarray, then: np.ndarray) -> int:
    """The index with the greatest ``first``, ties broken by the greatest ``then``."""
    return int(np.lexsort((then, first))[-1])


def calibration_metrics(ids: Sequence[int], probabilities: np.ndarray) -> dict:
    """Expected calibration error (confidence of the most probable class against accuracy, in
    ``CALIBRATION_BINS`` equal-width bins, weighted by their counts) and the Brier score
    (binary: mean squared error of p(class 1); more classes: summed over the classes)."""
    ids = np.asarray(ids)
    bins = reliability_bins(ids, probabilities)
    gaps = [abs(b["accuracy"] - b["confidence"]) * b["count"] for b in bins]
    truth = np.eye(probabilities.shape[1])[ids]
    squared = ((probabilities - truth) ** 2).sum(axis=1)
    brier = squared.mean() / 2 if probabilities.shape[1] == 2 else squared.mean()
    return {"ece": float(sum(gaps) / len(ids)), "brier": float(brier)}


def reliability_bins(ids: np.ndarray, probabilities: np.ndarray) -> list[dict]:
    """The non-empty equal-width bins of top-class confidence: each one's range, count, mean
    confidence and accuracy."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == ids
    edges = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, CALIBRATION_BINS - 1)
    return [
        {
            "low": float(edges[b]),
            "high": float(edges[b + 1]),
            "count": int((which == b).sum()),
            "confidence": float(confidence[which == b].mean()),
            "accuracy": float(correct[which == b].mean()),
        }
        for b in range(CALIBRATION_BINS)
        if (which == b).any()
    ]
