"""The texts a run got wrong, most confident first, and those it was least sure about, worked
out by hand."""

from pathlib import Path

import numpy as np
import pytest

from gptclf.data.labels import LabelMap
from gptclf.data.readers import LabelledTexts
from gptclf.evaluate import Evaluation
from gptclf.metrics import compute_metrics
from gptclf.mistakes import NO_LABEL, confident_mistakes, format_outcomes, least_sure, outcomes

HAM_SPAM = LabelMap.from_labels(["ham", "spam"])
TEXTS = ["win a prize", "lunch at noon?", "free entry now", "see you at\nthe station"]
TRUTH = [0, 1, 1, 0]  # ham, spam, spam, ham
P_SPAM = np.array([0.9, 0.2, 0.6, 0.45])


def evaluation(truth, probabilities, labels: LabelMap, threshold=None, pairs=None) -> Evaluation:
    """``TEXTS`` on rows 2.. of a file, with ``truth`` and ``probabilities``."""
    data = LabelledTexts(
        source="data.csv",
        texts=TEXTS,
        labels=None,
        rows=[2, 3, 4, 5],
        dropped_empty=[],
        text_column="text",
        label_column="label",
        pairs=pairs,
    )
    metrics = compute_metrics(truth, probabilities, labels.names, threshold)
    return Evaluation(Path("data.csv"), data, labels, truth, probabilities, metrics)


def two_class(threshold=None) -> Evaluation:
    return evaluation(TRUTH, np.column_stack([1 - P_SPAM, P_SPAM]), HAM_SPAM, threshold)


def test_each_text_gets_its_truth_decision_probability_and_margin_from_the_gap_of_the_top_two():
    decided = outcomes(two_class())
    assert [(o.row, o.truth, o.predicted) for o in decided] == [
        (2, "ham", "spam"),
        (3, "spam", "ham"),
        (4, "spam", "spam"),
        (5, "ham", "ham"),
    ]
    assert [o.probability for o in decided] == pytest.approx([0.9, 0.8, 0.6, 0.55])
    assert [o.margin for o in decided] == pytest.approx([0.8, 0.6, 0.2, 0.1])
    assert [o.wrong for o in decided] == [True, True, False, False]


def test_mistakes_come_most_confident_first_and_the_least_sure_nearest_the_edge_first():
    decided = outcomes(two_class())
    assert [o.row for o in confident_mistakes(decided)] == [2, 3]
    assert [o.row for o in confident_mistakes(decided, 1)] == [2]
    assert [o.row for o in least_sure(decided, 3)] == [5, 4, 3]


def test_a_threshold_decides_and_the_margin_is_the_distance_of_p_positive_from_it():
    decided = outcomes(two_class(threshold=0.3))
    assert [o.predicted for o in decided] == ["spam", "ham", "spam", "spam"]
    assert [o.margin for o in decided] == pytest.approx([0.6, 0.1, 0.3, 0.15])
    assert [o.probability for o in decided] == pytest.approx([0.9, 0.8, 0.6, 0.45])
    assert [o.row for o in confident_mistakes(decided)] == [2, 3, 5]


def test_multi_label_outcomes_join_the_labels_and_show_the_most_confident_wrong_decision():
    tags = LabelMap.from_labels([("money",), ("social",), ("urgent",)], multi_label=True)
    truth = np.array([[1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 0]])
    p = np.array([[0.9, 0.2, 0.7], [0.1, 0.8, 0.4], [0.6, 0.55, 0.3], [0.2, 0.1, 0.45]])
    decided = outcomes(evaluation(truth, p, tags))
    assert [(o.truth, o.predicted) for o in decided] == [
        ("money, urgent", "money, urgent"),
        ("social, urgent", "social"),
        ("money", "money, social"),
        (NO_LABEL, NO_LABEL),
    ]
    # text 1: urgent wrongly left out at p 0.4 (confidence 0.6); text 2: social wrongly given
    # at 0.55; right texts: their least sure decision (text 0: urgent 0.7, text 3: 1 - 0.45)
    assert [o.probability for o in decided] == pytest.approx([0.7, 0.6, 0.55, 0.55])
    assert [o.margin for o in decided] == pytest.approx([0.2, 0.1, 0.05, 0.05])
    assert [o.row for o in confident_mistakes(decided)] == [3, 4]


def test_the_terminal_table_aligns_its_columns_and_puts_each_text_on_one_cut_line():
    lines = format_outcomes(outcomes(two_class()), width=12).splitlines()
    assert lines[0].split() == ["row", "true", "predicted", "p", "text"]
    assert lines[1].split()[:4] == ["2", "ham", "spam", "0.9000"]
    assert lines[4].endswith("  see you at…")  # the newline flattened, cut to 12 characters
    assert lines[0].index("text") == lines[1].index("win a prize")
