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
    hamming_loss,
    matthews_corrcoef,
    precision_recall_fscore_support,
    roc_auc_score,
)

from gptclf.atomic import write_text_atomic
from gptclf.decision import POSITIVE_CLASS, calibration_metrics, check_threshold, decide
from gptclf.errors import GptclfError


def compute_metrics(
    y_true: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    names: Sequence[str],
    threshold: float | Sequence[float] | None = None,
) -> dict:
    """Metrics of the predictions that ``probabilities`` (n, n_classes) make for class ids
    ``y_true``, as a JSON-ready dict; the prediction is the argmax, or for two classes with a
    ``threshold``, class 1 whenever p(class 1) >= threshold. Calibration (ECE, Brier score) is
    measured on the probabilities whatever decides. For multi-label 0/1 rows ``y_true``, see
    :func:`multi_label_metrics`."""
    if np.ndim(y_true) == 2:
        return multi_label_metrics(np.asarray(y_true), probabilities, names, threshold)
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


def multi_label_metrics(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    names: Sequence[str],
    threshold: float | Sequence[float] | None = None,
) -> dict:
    """Metrics of multi-label decisions: each label is decided where its probability reaches
    its threshold (one for all, one per label; None: 0.5). ``accuracy`` is subset accuracy (every
    label of a text right), ``n_errors`` the texts with any label wrong; Hamming loss is the
    share of (text, label) decisions wrong; micro F1 pools every decision, macro F1 averages the
    labels'; per label also ROC-AUC and average precision (None where the data hold only texts
    with, or only without, that label)."""
    y_true = np.asarray(y_true, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    if len(y_true) == 0:
        raise GptclfError("no examples to evaluate")
    if probabilities.shape != y_true.shape or y_true.shape[1] != len(names):
        raise ValueError(f"probabilities {probabilities.shape} and labels {y_true.shape} differ")
    for one in np.ravel([] if threshold is None else threshold):
        check_threshold(float(one), 2)
    predicted = decide(probabilities, threshold, multi_label=True)
    wrong = (predicted != y_true).any(axis=1)
    plain = threshold if threshold is None or np.ndim(threshold) == 0 else list(threshold)
    return {
        "n": len(y_true),
        "multi_label": True,
        "n_errors": int(wrong.sum()),
        "accuracy": float(1 - wrong.mean()),
        "hamming_loss": float(hamming_loss(y_true, predicted)),
        "micro_f1": float(f1_score(y_true, predicted, average="micro", zero_division=0)),
        "macro_f1": macro_f1(y_true, predicted),
        "per_class": _per_label(y_true, predicted, probabilities, names),
        "labels": list(names),
        "threshold": plain,
        **calibration_metrics(y_true, probabilities),
    }


def _per_label(
    y_true: np.ndarray, predicted: np.ndarray, probabilities: np.ndarray, names: Sequence[str]
) -> dict:
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, predicted, zero_division=0
    )
    per_label = {}
    for i, name in enumerate(names):
        both = 0 < y_true[:, i].sum() < len(y_true)
        per_label[name] = {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "roc_auc": float(roc_auc_score(y_true[:, i], probabilities[:, i])) if both else None,
            "pr_auc": (
                float(average_precision_score(y_true[:, i], probabilities[:, i])) if both else None
            ),
        }
    return per_label


def format_metrics(metrics: dict, baseline: dict | None = None) -> str:
    """A readable report: the headline figures as an aligned table (with ``baseline``, the
    baseline's metrics of the same texts, beside them), how the model decides, then a per-class
    table and the confusion matrix (multi-label: per-label ROC-AUC and PR-AUC instead)."""
    headline = _headline_table(metrics, baseline)
    decides = _decision_lines(metrics)
    if metrics.get("multi_label"):
        sections = [headline, decides, _per_label_table(metrics)]
    else:
        sections = [headline, decides, _per_class_table(metrics), _confusion_table(metrics)]
    return "\n\n".join(section for section in sections if section) + "\n"


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
    """F1 averaged over the classes that occur in the true labels or the predictions (class ids,
    or multi-label 0/1 rows)."""
    if y_true.ndim == 2:
        present = np.flatnonzero(y_true.any(axis=0) | predicted.any(axis=0))
        if not len(present):
            return 0.0
        return float(
            f1_score(y_true[:, present], predicted[:, present], average="macro", zero_division=0)
        )
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


def headline_figures(metrics: dict) -> list[tuple[str, str]]:
    """The headline figures of ``metrics``, each named and formatted: accuracy (multi-label:
    subset accuracy), errors, F1, MCC or Hamming loss, ranking (two classes) and calibration."""
    errors = f"{metrics['n_errors']} of {metrics['n']}"
    calibration = [("ECE", f"{metrics['ece']:.4f}"), ("Brier score", f"{metrics['brier']:.4f}")]
    if metrics.get("multi_label"):
        return [
            ("subset accuracy", f"{metrics['accuracy']:.2%}"),
            ("texts with a label wrong", errors),
            ("Hamming loss", f"{metrics['hamming_loss']:.4f}"),
            ("micro F1", f"{metrics['micro_f1']:.4f}"),
            ("macro F1", f"{metrics['macro_f1']:.4f}"),
            *calibration,
        ]
    figures = [
        ("accuracy", f"{metrics['accuracy']:.2%}"),
        ("errors", errors),
        ("macro F1", _number(metrics["macro_f1"])),
        ("MCC", _number(metrics["mcc"])),
    ]
    if "roc_auc" in metrics:
        figures += [
            ("ROC-AUC", _number(metrics["roc_auc"])),
            ("PR-AUC", _number(metrics["pr_auc"])),
        ]
    return figures + calibration


def _headline_table(metrics: dict, baseline: dict | None) -> str:
    """The headline figures, and the baseline's beside them where given (with the rule that
    decided the baseline's, where it differs from the model's)."""
    rows = [["metric", "model", *(["baseline"] if baseline else [])]]
    theirs = dict(headline_figures(baseline)) if baseline else {}
    for name, value in headline_figures(metrics):
        rows.append([name, value, *([theirs.get(name, "-")] if baseline else [])])
    table = aligned(rows)
    if baseline and baseline.get("threshold") != metrics.get("threshold"):
        table += "\nthe baseline decides the more probable class"
    return table


def _decision_lines(metrics: dict) -> str:
    """How the figures were decided: the positive class of the ranking figures, a threshold."""
    threshold = metrics.get("threshold")
    if metrics.get("multi_label"):
        decided = (
            "each label where p >= 0.5"
            if threshold is None
            else f"each label where p >= {threshold:g}"
            if np.ndim(threshold) == 0
            else "each label at its own threshold (see the table)"
        )
        return f"decides {decided}; ECE and Brier score over every text and label"
    lines = []
    if "positive_class" in metrics:
        lines.append(f"ROC-AUC and PR-AUC of the positive class, {metrics['positive_class']}")
    if threshold is not None:
        positive = metrics["labels"][POSITIVE_CLASS]
        lines.append(
            f"threshold {threshold:g} (predict {positive} when p({positive}) >= {threshold:g})"
        )
    return "\n".join(lines)


def _per_label_table(metrics: dict) -> str:
    threshold = metrics["threshold"]
    per_label = np.ndim(threshold) == 1
    header = ["label", "precision", "recall", "F1", "ROC-AUC", "PR-AUC", "support"]
    header += ["threshold"] if per_label else []
    rows = [
        [
            name,
            f"{m['precision']:.4f}",
            f"{m['recall']:.4f}",
            f"{m['f1']:.4f}",
            _number(m["roc_auc"]),
            _number(m["pr_auc"]),
            str(m["support"]),
            *([f"{threshold[i]:.4g}"] if per_label else []),
        ]
        for i, (name, m) in enumerate(metrics["per_class"].items())
    ]
    return aligned([header, *rows])


def _number(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"


def _per_class_table(metrics: dict) -> str:
    header = ["class", "precision", "recall", "F1", "support"]
    rows = [
        [name, f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}", str(m["support"])]
        for name, m in metrics["per_class"].items()
    ]
    return aligned([header, *rows])


def _confusion_table(metrics: dict) -> str:
    names = metrics["labels"]
    header = ["true \\ predicted", *names]
    rows = [
        [name, *(str(count) for count in counts)]
        for name, counts in zip(names, metrics["confusion_matrix"], strict=True)
    ]
    return "confusion matrix\n" + aligned([header, *rows])


def aligned(rows: list[list[str]]) -> str:
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
