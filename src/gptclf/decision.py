"""From class probabilities to a decision: a temperature that calibrates the probabilities and a
threshold on the positive class (class id 1 of two), or for multi-label runs one threshold per
label, both chosen on the validation split and saved with the run; and how well probabilities
are calibrated (expected calibration error, Brier score, the reliability curve). Multi-label
probabilities are each label's own (a sigmoid), and calibration pools every (text, label)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from gptclf.errors import GptclfError

POSITIVE_CLASS = 1
DECIDE_PATTERN = r"argmax|f1|(precision|recall)@(0?\.\d*[1-9]\d*|1(\.0*)?)"
DECIDE_SHOWN = "argmax | f1 | precision@R | recall@P"
CALIBRATIONS = (None, "temperature")
CALIBRATION_BINS = 15
THRESHOLD_MARGIN = 1e-12  # a threshold lies strictly between 0 and 1
LOG_TEMPERATURE_BOUND = 5.0  # temperatures from e^-5 to e^5
MULTI_LABEL_THRESHOLD = 0.5  # a label is decided where its probability reaches this


@dataclass(frozen=True)
class Decision:
    """How a run turns probabilities into a label: it divides their logits by ``temperature``
    (1: as the model computes them), then predicts the positive class wherever its probability
    reaches ``threshold`` (None: the most probable class), which ``rule`` chose. A multi-label
    run decides each label where its probability reaches its own threshold (a list; None: 0.5
    for every label)."""

    temperature: float = 1.0
    threshold: float | list[float] | None = None
    rule: str = "argmax"

    def calibrated(self, probabilities: np.ndarray, multi_label: bool = False) -> np.ndarray:
        """``probabilities`` (n, n_classes) as those of their logits over the temperature."""
        return with_temperature(probabilities, self.temperature, multi_label)

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
        # the number of classes, and whether the run is multi-label, are the run config's to check
        for one in threshold if isinstance(threshold, list) else [threshold]:
            check_threshold(one, 2)
        return cls(float(temperature), threshold, rule)

    def check_fits(self, n_classes: int, multi_label: bool) -> None:
        """The thresholds fit the run's labels: one per label for a multi-label run, one for two
        classes otherwise."""
        threshold = self.threshold
        if (
            multi_label
            and threshold is not None
            and (not isinstance(threshold, list) or len(threshold) != n_classes)
        ):
            raise GptclfError(f"decision threshold = {threshold!r} is not one per label")
        if not multi_label:
            if isinstance(threshold, list):
                raise GptclfError(f"decision threshold = {threshold!r} is not one number")
            check_threshold(threshold, n_classes)


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


def decide(
    probabilities: np.ndarray,
    threshold: float | Sequence[float] | None,
    multi_label: bool = False,
) -> np.ndarray:
    """The class id each row of ``probabilities`` decides: the positive class where its
    probability reaches ``threshold``, else (no threshold) the most probable class. Multi-label:
    a 0/1 row per text, 1 where a label's probability reaches its threshold (one for all, one
    per label, or None: 0.5)."""
    if multi_label:
        bound = MULTI_LABEL_THRESHOLD if threshold is None else np.asarray(threshold)
        return (probabilities >= bound).astype(int)
    if threshold is None:
        return probabilities.argmax(axis=1)
    return (probabilities[:, POSITIVE_CLASS] >= threshold).astype(int)


def with_temperature(
    probabilities: np.ndarray, temperature: float, multi_label: bool = False
) -> np.ndarray:
    """The softmax of ``log(probabilities) / temperature``: the same as dividing the logits;
    multi-label, each label's sigmoid of its logit over the temperature."""
    if temperature == 1.0:
        return probabilities
    if multi_label:
        p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-300, 1 - 1e-16)
        logits = (np.log(p) - np.log1p(-p)) / temperature
        return (0.5 * (1 + np.tanh(logits / 2))).astype(probabilities.dtype)  # the sigmoid
    scaled = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-300, 1.0))
    scaled /= temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(probabilities.dtype)


def fit_temperature(ids: Sequence[int] | np.ndarray, probabilities: np.ndarray) -> float:
    """The temperature that minimises the mean negative log-likelihood of the true classes (of
    every label's truth where ``ids`` are multi-label 0/1 rows)."""
    from scipy.optimize import minimize_scalar  # scipy loads in seconds: only when fitting

    ids = np.asarray(ids)
    multi_label = ids.ndim == 2

    def loss(log_temperature: float) -> float:
        temperature = float(np.exp(log_temperature))
        scaled = with_temperature(probabilities.astype(np.float64), temperature, multi_label)
        if multi_label:
            truth = np.where(ids > 0.5, scaled, 1 - scaled)
            return float(-np.log(np.clip(truth, 1e-300, 1.0)).mean())
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
    from sklearn.metrics import precision_recall_curve  # loads in seconds: only when choosing

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


def choose_thresholds(rule: str, truth: np.ndarray, probabilities: np.ndarray) -> dict:
    """A multi-label run's threshold per label, each chosen by ``rule`` on that label's column
    as :func:`choose_threshold` does; a label whose validation texts all have it, or all lack
    it, keeps 0.5 (chosen None). Returns the thresholds and, per label, what was chosen."""
    thresholds, chosen = [], []
    for label in range(truth.shape[1]):
        column = truth[:, label] > 0.5
        if column.all() or not column.any():
            thresholds.append(MULTI_LABEL_THRESHOLD)
            chosen.append(None)
            continue
        pair = np.stack([1 - probabilities[:, label], probabilities[:, label]], axis=1)
        picked = choose_threshold(rule, column.astype(int), pair)
        thresholds.append(picked["threshold"])
        chosen.append(picked)
    return {"thresholds": thresholds, "per_label": chosen}


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


def calibration_metrics(ids: Sequence[int] | np.ndarray, probabilities: np.ndarray) -> dict:
    """Expected calibration error (confidence of the most probable class against accuracy, in
    ``CALIBRATION_BINS`` equal-width bins, weighted by their counts) and the Brier score
    (binary: mean squared error of p(class 1); more classes: summed over the classes). For
    multi-label 0/1 rows, both pool every (text, label) as a binary decision."""
    ids = np.asarray(ids)
    bins = reliability_bins(ids, probabilities)
    gaps = [abs(b["accuracy"] - b["confidence"]) * b["count"] for b in bins]
    if ids.ndim == 2:
        return {
            "ece": float(sum(gaps) / ids.size),
            "brier": float(((probabilities - ids) ** 2).mean()),
        }
    truth = np.eye(probabilities.shape[1])[ids]
    squared = ((probabilities - truth) ** 2).sum(axis=1)
    brier = squared.mean() / 2 if probabilities.shape[1] == 2 else squared.mean()
    return {"ece": float(sum(gaps) / len(ids)), "brier": float(brier)}


def reliability_bins(ids: np.ndarray, probabilities: np.ndarray) -> list[dict]:
    """The non-empty equal-width bins of top-class confidence: each one's range, count, mean
    confidence and accuracy (multi-label: of every label's decision at 0.5)."""
    if ids.ndim == 2:
        p, truth = probabilities.reshape(-1), ids.reshape(-1) > 0.5
        confidence, correct = np.maximum(p, 1 - p), (p >= MULTI_LABEL_THRESHOLD) == truth
    else:
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
