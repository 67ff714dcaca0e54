"""Metrics checked against values worked out by hand, the threshold rule, undefined metrics,
the text report, and the JSON file."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from gptclf.errors import GptclfError
from gptclf.metrics import compute_metrics, format_metrics, write_metrics

# Two classes: p(class 1) per example; argmax predicts [0, 0, 0, 1, 1, 1, 0, 1], so
# TN=3 (rows 0-2), FP=1 (row 3), TP=3 (rows 4, 5, 7), FN=1 (row 6).
BINARY_TRUE = [0, 0, 0, 0, 1, 1, 1, 1]
BINARY_P1 = np.array([0.1, 0.4, 0.35, 0.8, 0.9, 0.6, 0.3, 0.7])
BINARY_NAMES = ["ham", "spam"]

# Three classes: argmax predicts [0, 1, 1, 1, 2, 0] for true [0, 0, 1, 1, 2, 2].
THREE_TRUE = [0, 0, 1, 1, 2, 2]
THREE_PROBABILITIES = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.3, 0.6, 0.1],
        [0.1, 0.8, 0.1],
        [0.2, 0.5, 0.3],
        [0.1, 0.1, 0.8],
        [0.5, 0.1, 0.4],
    ]
)
THREE_NAMES = ["a", "b", "c"]


def binary_probabilities(p1: np.ndarray = BINARY_P1) -> np.ndarray:
    return np.column_stack([1 - p1, p1])


def test_two_class_metrics_match_hand_computed_values():
    metrics = compute_metrics(BINARY_TRUE, binary_probabilities(), BINARY_NAMES)
    assert metrics["n"] == 8
    assert metrics["n_errors"] == 2
    assert metrics["accuracy"] == pytest.approx(6 / 8)
    assert metrics["confusion_matrix"] == [[3, 1], [1, 3]]
    spam = metrics["per_class"]["spam"]
    assert spam == pytest.approx({"precision": 3 / 4, "recall": 3 / 4, "f1": 3 / 4, "support": 4})
    assert metrics["macro_f1"] == pytest.approx(0.75)
    # (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (9 - 1) / 16
    assert metrics["mcc"] == pytest.approx(0.5)
    # 11 of the 16 (positive, negative) pairs have the positive scored higher.
    assert metrics["roc_auc"] == pytest.approx(11 / 16)
    # Positives ranked 1, 3, 4, 7 by p(spam): mean precision at those ranks.
    assert metrics["pr_auc"] == pytest.approx((1 + 2 / 3 + 3 / 4 + 4 / 7) / 4)
    assert metrics["positive_class"] == "spam"
    assert metrics["labels"] == BINARY_NAMES
    assert metrics["threshold"] is None


def test_three_class_metrics_match_hand_computed_values():
    metrics = compute_metrics(THREE_TRUE, THREE_PROBABILITIES, THREE_NAMES)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["n_errors"] == 2
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    per_class = metrics["per_class"]
    assert per_class["a"]["precision"] == pytest.approx(1 / 2)
    assert per_class["a"]["recall"] == pytest.approx(1 / 2)
    assert per_class["b"]["precision"] == pytest.approx(2 / 3)
    assert per_class["b"]["recall"] == pytest.approx(1.0)
    assert per_class["c"]["precision"] == pytest.approx(1.0)
    assert per_class["c"]["recall"] == pytest.approx(1 / 2)
    assert [per_class[name]["support"] for name in THREE_NAMES] == [2, 2, 2]
    assert metrics["macro_f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    # Gorodkin's multiclass MCC: (c*s - t.p) / sqrt((s^2 - p.p)(s^2 - t.t)),
    # with c=4 correct, s=6, true counts t=(2,2,2), predicted counts p=(2,3,1).
    assert metrics["mcc"] == pytest.approx(12 / math.sqrt(22 * 24))
    assert "roc_auc" not in metrics
    assert "pr_auc" not in metrics


def test_threshold_changes_the_predictions():
    threshold = np.float64(0.3)
    metrics = compute_metrics(BINARY_TRUE, binary_probabilities(), BINARY_NAMES, threshold)
    # p(spam) >= 0.3 everywhere except row 0.
    assert metrics["confusion_matrix"] == [[1, 3], [0, 4]]
    assert metrics["accuracy"] == pytest.approx(5 / 8)
    assert metrics["threshold"] == 0.3
    assert type(metrics["threshold"]) is float


def test_threshold_equal_to_p1_predicts_class_one():
    metrics = compute_metrics([1], binary_probabilities(np.array([0.6])), BINARY_NAMES, 0.6)
    assert metrics["confusion_matrix"] == [[0, 0], [0, 1]]


def test_threshold_is_refused_for_three_classes():
    with pytest.raises(GptclfError, match="exactly two classes"):
        compute_metrics(THREE_TRUE, THREE_PROBABILITIES, THREE_NAMES, threshold=0.5)


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_threshold_outside_zero_one_is_refused(threshold: float):
    with pytest.raises(GptclfError, match="strictly between 0 and 1"):
        compute_metrics(BINARY_TRUE, binary_probabilities(), BINARY_NAMES, threshold=threshold)


def test_aucs_and_mcc_are_null_without_warnings_when_y_true_has_one_class():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = compute_metrics(
            [1, 1, 1], binary_probabilities(np.array([0.9, 0.8, 0.2])), BINARY_NAMES
        )
    assert metrics["roc_auc"] is None
    assert metrics["pr_auc"] is None
    assert metrics["mcc"] is None
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["per_class"]["ham"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_all_correct_single_class_gives_accuracy_one_and_no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = compute_metrics([0, 0], binary_probabilities(np.array([0.1, 0.2])), BINARY_NAMES)
    assert metrics["accuracy"] == 1.0
    assert metrics["macro_f1"] == 1.0
    assert metrics["confusion_matrix"] == [[2, 0], [0, 0]]


def test_no_examples_is_a_user_error():
    with pytest.raises(GptclfError, match="no examples"):
        compute_metrics([], np.zeros((0, 2)), BINARY_NAMES)


def test_probabilities_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match="shape"):
        compute_metrics([0, 1], np.zeros((2, 3)), BINARY_NAMES)


def test_metrics_are_json_ready_and_written_atomically(tmp_path: Path):
    metrics = compute_metrics(BINARY_TRUE, binary_probabilities(), BINARY_NAMES)
    path = tmp_path / "out" / "metrics.json"
    write_metrics(metrics, path)
    assert json.loads(path.read_text(encoding="utf-8")) == metrics
    assert path.read_text(encoding="utf-8").startswith('{\n  "n": 8,')
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def headline_rows(report: str) -> list[list[str]]:
    """The headline table of ``report``, each row split into its words."""
    return [line.split() for line in report.split("\n\n")[0].splitlines()]


def test_report_has_accuracy_with_errors_scores_table_and_confusion_matrix():
    metrics = compute_metrics(BINARY_TRUE, binary_probabilities(), BINARY_NAMES)
    report = format_metrics(metrics)
    lines = report.splitlines()
    assert lines[:9] == [
        "metric        model",
        "accuracy     75.00%",
        "errors       2 of 8",
        "macro F1     0.7500",
        "MCC          0.5000",
        "ROC-AUC      0.6875",
        "PR-AUC       0.7470",
        "ECE          " + f"{metrics['ece']:.4f}".rjust(6),
        "Brier score  " + f"{metrics['brier']:.4f}".rjust(6),
    ]
    assert "ROC-AUC and PR-AUC of the positive class, spam" in lines
    assert lines[lines.index("class  precision  recall      F1  support") + 2].split() == [
        "spam",
        "0.7500",
        "0.7500",
        "0.7500",
        "4",
    ]
    table = lines[lines.index("confusion matrix") + 1 :]
    assert [line.split() for line in table] == [
        ["true", "\\", "predicted", "ham", "spam"],
        ["ham", "3", "1"],
        ["spam", "1", "3"],
    ]


def test_report_puts_the_baselines_figures_beside_the_models_in_one_aligned_table():
    model = compute_metrics(BINARY_TRUE, binary_probabilities(), BINARY_NAMES)
    flipped = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])
    baseline = compute_metrics(BINARY_TRUE, binary_probabilities(flipped), BINARY_NAMES)
    lines = format_metrics(model, baseline).split("\n\n")[0].splitlines()
    assert lines[0].split() == ["metric", "model", "baseline"]
    assert len({len(line) for line in lines}) == 1  # every column padded to one width
    accuracy = next(line for line in lines if line.startswith("accuracy"))
    assert accuracy.split() == [
        "accuracy",
        f"{model['accuracy']:.2%}",
        f"{baseline['accuracy']:.2%}",
    ]
    errors = next(line for line in lines if line.startswith("errors"))
    assert errors.split() == ["errors", "2", "of", "8", str(baseline["n_errors"]), "of", "8"]


def test_report_says_undefined_and_names_the_threshold():
    metrics = compute_metrics([1, 1], binary_probabilities(np.array([0.9, 0.2])), BINARY_NAMES, 0.5)
    report = format_metrics(metrics)
    rows = headline_rows(report)
    assert ["accuracy", "50.00%"] in rows and ["errors", "1", "of", "2"] in rows
    assert ["ROC-AUC", "undefined"] in rows and ["MCC", "undefined"] in rows
    assert "threshold 0.5 (predict spam when p(spam) >= 0.5)" in report


def test_three_class_report_has_no_auc_lines():
    report = format_metrics(compute_metrics(THREE_TRUE, THREE_PROBABILITIES, THREE_NAMES))
    assert ["accuracy", "66.67%"] in headline_rows(report)
    assert ["errors", "2", "of", "6"] in headline_rows(report)
    assert "AUC" not in report


# Multi-label, three labels; at 0.5 the decisions are [[1,0,1],[0,1,0],[1,1,0],[0,0,0]] against
# the truth [[1,0,1],[0,1,1],[1,0,0],[0,0,0]]: texts 0 and 3 right, two decisions wrong of 12.
TAGS_TRUE = np.array([[1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 0]])
TAGS_P = np.array([[0.9, 0.2, 0.7], [0.1, 0.8, 0.4], [0.6, 0.55, 0.3], [0.2, 0.1, 0.45]])
TAGS = ["money", "social", "urgent"]


def test_multi_label_metrics_match_their_definitions_worked_by_hand():
    m = compute_metrics(TAGS_TRUE, TAGS_P, TAGS)
    assert m["multi_label"] and m["n"] == 4 and m["n_errors"] == 2
    assert m["accuracy"] == pytest.approx(0.5)  # subset accuracy
    assert m["hamming_loss"] == pytest.approx(2 / 12)
    # micro: TP 4 (money 2, social 1, urgent 1), FP 1 (social, text 2), FN 1 (urgent, text 1)
    assert m["micro_f1"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 1))
    assert m["per_class"]["social"] == {
        "precision": 0.5,
        "recall": 1.0,
        "f1": pytest.approx(2 / 3),
        "support": 1,
        "roc_auc": 1.0,  # social's one positive (0.8) outranks every negative
        "pr_auc": 1.0,
    }
    assert m["macro_f1"] == pytest.approx((1.0 + 2 / 3 + 2 / 3) / 3)
    assert m["brier"] == pytest.approx(((TAGS_P - TAGS_TRUE) ** 2).mean())


def test_multi_label_thresholds_per_label_decide_each_label_at_its_own():
    m = compute_metrics(TAGS_TRUE, TAGS_P, TAGS, threshold=[0.5, 0.9, 0.35])
    # social now never decided (no p >= 0.9), urgent at 0.35 adds text 1's (right) and
    # text 3's (wrong) urgent
    assert m["per_class"]["social"]["recall"] == 0.0
    assert m["per_class"]["urgent"]["recall"] == 1.0
    assert m["threshold"] == [0.5, 0.9, 0.35]
    report = format_metrics(m)
    assert "subset accuracy" in report and "Hamming loss" in report and "0.35" in report


def test_a_label_absent_from_the_data_has_undefined_ranking_metrics():
    truth = TAGS_TRUE.copy()
    truth[:, 1] = 0
    social = compute_metrics(truth, TAGS_P, TAGS)["per_class"]["social"]
    assert social["roc_auc"] is None and social["pr_auc"] is None
