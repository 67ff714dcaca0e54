"""Honest classification metrics: computed from softmax probabilities (or, during training, from
predictions), reported as JSON and text. A metric that is undefined on the data (e.g. ROC-AUC
when the true labels hold one class) is ``None``, never a crash or a made-up number."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    matthews_corrcoef,
    precision_recall_fscore_support,
    roc_auc_score,
)

from gptclf.atomic import write_text_atomic
from gptclf.decision import POSITIVE_CLASS, calibration_metrics, check_threshold, decide
from gptclf.errors import GptclfError


def compute_metrics(
    y_true: Sequence[int],
    probabilities: np.ndarray,
    names: Sequence[str],
    threshold: float | None = None,
) -> dict:
    """Metrics of the predictions that ``probabilities`` (n, n_classes) make for class ids
    ``y_true``, as a JSON-ready dict; the prediction is the argmax, or for two classes with a
    ``threshold``, class 1 whenever p(class 1) >= threshold. Calibration (ECE, Brier score) is
    measured on the probabilities whatever decides."""
    y_true, probabilities = _checked_inputs(y_true, probabilities, names)
    check_threshold(threshold, len(names))
    predicted = decide(probabilities, threshold)
    class_ids = list(range(len(names)))
    metrics = {
        "n": len(y_true),
        "n_errors": int(np.sum(predicted != y_true)),
        "accuracy": float(accuracy_score(y_true, predicted)),
        "macro_f1": macro_f1(y_true, predicted),
        "mcc": _mcc(y_true, predicted),
        "per_class": _per_class(y_true, predicted, names),
        "confusion_matrix": confusion_matrix(y_true, predicted, labels=class_ids).tolist(),
        "labels": list(names),
        "threshold": None if threshold is None else float(threshold),
        **calibration_metrics(y_true, probabilities),
    }
    if len(names) == 2:
        metrics.update(_binary_ranking_metrics(y_true, probabilities[:, POSITIVE_CLASS], names))
    return metrics


def format_metrics(metrics: dict) -> str:
    """A readable report: headline numbers, a per-class table and the confusion matrix."""
    sections = [_headline(metrics), _per_class_table(metrics), _confusion_table(metrics)]
    return "\n\n".join(sections) + "\n"


def write_metrics(metrics: dict, path: Path) -> None:
    """The metrics as indented JSON, written atomically."""
    write_text_atomic(path, json.dumps(metrics, indent=2, allow_nan=False) + "\n")


def _checked_inputs(
    y_true: Sequence[int], probabilities: np.ndarray, names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=int).reshape(-1)
    probabilities = np.asarray(probabilities, dtype=float)
    if len(y_true) == 0:
        raise GptclfError("no examples to evaluate")
    if probabilities.shape != (len(y_true), len(names)):
        raise ValueError(
            f"probabilities have shape {probabilities.shape}, "
            f"expected ({len(y_true)}, {len(names)}) for {len(y_true)} labels"
        )
    if y_true.min() < 0 or y_true.max() >= len(names):
        raise ValueError(f"class ids must lie in 0..{len(names) - 1}")
    return y_true, probabilities


def log_loss(ids: Sequence[int], probabilities: np.ndarray) -> float:
    """Mean negative log-probability of the true class (probabilities clipped at 1e-12)."""
    true = probabilities[np.arange(len(ids)), np.asarray(ids)]
    return float(-np.log(np.clip(true, 1e-12, 1.0)).mean())


def macro_f1(y_true: np.ndarray, predicted: np.ndarray) -> float:
    """F1 averaged over the classes that occur in the true labels or the predictions."""
    present = sorted(set(y_true.tolist()) | set(predicted.tolist()))
    return float(f1_score(y_true, predicted, labels=present, average="macro", zero_division=0))


def _mcc(y_true: np.ndarray, predicted: np.ndarray) -> float | None:
    """Matthews correlation; undefined when the true labels or the predictions are one class."""
    if len(set(y_true.tolist())) < 2 or len(set(predicted.tolist())) < 2:
        return None
    return float(matthews_corrcoef(y_true, predicted))


def _per_class(y_true: np.ndarray, predicted: np.ndarray, names: Sequence[str]) -> dict:
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, predicted, labels=list(range(len(names))), zero_division=0
    )
    return {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(names)
    }


def _binary_ranking_metrics(
    y_true: np.ndarray, positive_scores: np.ndarray, names: Sequence[str]
) -> dict:
    """ROC-AUC and average precision for class 1; both undefined unless both classes occur."""
    both_present = len(set(y_true.tolist())) == 2
    is_positive = y_true == POSITIVE_CLASS
    return {
        "positive_class": names[POSITIVE_CLASS],
        "roc_auc": float(roc_auc_score(is_positive, positive_scores)) if both_present else None,
        "pr_auc": float(average_precision_score(is_positive, positive_scores))
        if both_present
        else None,
    }


def _headline(metrics: dict) -> str:
    errors = metrics["n_errors"]
    noun = "error" if errors == 1 else "errors"
    lines = [
        f"accuracy {metrics['accuracy']:.2%} ({errors} {noun} of {metrics['n']})",
        f"macro F1 {_number(metrics['macro_f1'])}",
        f"MCC {_number(metrics['mcc'])}",
        f"calibration: ECE {metrics['ece']:.4f}, Brier score {metrics['brier']:.4f}",
    ]
    if "roc_auc" in metrics:
        positive = f" (positive class: {metrics['positive_class']})"
        lines.append(f"ROC-AUC {_number(metrics['roc_auc'])}{positive}")
        lines.append(f"PR-AUC {_number(metrics['pr_auc'])}{positive}")
    if metrics.get("threshold") is not None:
        threshold, positive = metrics["threshold"], metrics["labels"][POSITIVE_CLASS]
        lines.append(
            f"threshold {threshold:g} (predict {positive} when p({positive}) >= {threshold:g})"
        )
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"


def _per_class_table(metrics: dict) -> str:
    header = ["class", "precision", "recall", "F1", "support"]
    rows = [
        [name, f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}", str(m["support"])]
        for name, m in metrics["per_class"].items()
    ]
    return _aligned([header, *rows])


def _confusion_table(metrics: dict) -> str:
    names = metrics["labels"]
    header = ["true \\ predicted", *names]
    rows = [
        [name, *(str(count) for count in counts)]
        for name, counts in zip(names, metrics["confusion_matrix"], strict=True)
    ]
    return "confusion matrix\n" + _aligned([header, *rows])


def _aligned(rows: list[list[str]]) -> str:
    """Columns padded to their widest cell: the first left-aligned, the rest right-aligned."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(width) if column == 0 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)
