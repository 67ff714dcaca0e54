"""What a run decided for each labelled text, to find the texts it got wrong, most confident
first, and those it was least sure about. ``gptclf eval --errors`` and the run report show
them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gptclf.decision import MULTI_LABEL_THRESHOLD, POSITIVE_CLASS, decide
from gptclf.evaluate import Evaluation
from gptclf.metrics import aligned

NO_LABEL = "(none)"  # a multi-label text with no label


@dataclass(frozen=True)
class Outcome:
    """One text, its true and its predicted label (multi-label: the labels, joined by ", ")."""

    row: int  # in the file
    text: str
    pair: str | None
    truth: str
    predicted: str
    probability: float  # of the decision shown (multi-label: the most confident wrong one,
    # else the least sure one), e.g. p(spam) where it predicted spam
    margin: float  # how far the probabilities are from deciding otherwise (0: on the edge)

    @property
    def wrong(self) -> bool:
        return self.truth != self.predicted


def outcomes(evaluation: Evaluation) -> list[Outcome]:
    """Each text of ``evaluation`` as the run decided it, by the threshold it was measured at."""
    names = evaluation.labels.names
    p = np.asarray(evaluation.probabilities, dtype=float)
    threshold = evaluation.metrics.get("threshold")
    if evaluation.labels.multi_label:
        decided = _multi_label_decisions(np.asarray(evaluation.truth), p, threshold, names)
    else:
        decided = _single_label_decisions(np.asarray(evaluation.truth), p, threshold, names)
    data = evaluation.data
    return [
        Outcome(
            data.rows[i],
            data.texts[i],
            None if data.pairs is None else data.pairs[i],
            *decided[i],
        )
        for i in range(len(data.texts))
    ]


def _single_label_decisions(
    truth: np.ndarray, p: np.ndarray, threshold: float | None, names: list[str]
) -> list[tuple[str, str, float, float]]:
    """(truth, predicted, p(predicted), margin): by a threshold, the distance of p(positive)
    from it; else the gap between the two most probable classes."""
    predicted = decide(p, threshold)
    chosen = p[np.arange(len(p)), predicted]
    if threshold is not None:
        margin = np.abs(p[:, POSITIVE_CLASS] - threshold)
    else:
        top_two = np.sort(p, axis=1)[:, -2:]
        margin = top_two[:, 1] - top_two[:, 0]
    return [
        (names[t], names[d], float(c), float(m))
        for t, d, c, m in zip(truth, predicted, chosen, margin, strict=True)
    ]


def _multi_label_decisions(
    truth: np.ndarray, p: np.ndarray, threshold: float | list | None, names: list[str]
) -> list[tuple[str, str, float, float]]:
    """(truth, predicted, probability, margin) of label sets: the probability is that of the
    most confident wrong decision of a text, or where all are right, of its least sure one; the
    margin is the least distance of a label's probability from its threshold."""
    bound = np.broadcast_to(
        MULTI_LABEL_THRESHOLD if threshold is None else np.asarray(threshold), p.shape
    )
    predicted = decide(p, threshold, multi_label=True)
    confidence = np.where(predicted == 1, p, 1 - p)
    distance = np.abs(p - bound)
    decisions = []
    for i in range(len(p)):
        wrong = predicted[i] != truth[i]
        shown = confidence[i][wrong].max() if wrong.any() else confidence[i][distance[i].argmin()]
        truth_set, predicted_set = _label_set(truth[i], names), _label_set(predicted[i], names)
        decisions.append((truth_set, predicted_set, float(shown), float(distance[i].min())))
    return decisions


def _label_set(row: np.ndarray, names: list[str]) -> str:
    return ", ".join(name for name, on in zip(names, row, strict=True) if on) or NO_LABEL


def confident_mistakes(decided: list[Outcome], n: int | None = None) -> list[Outcome]:
    """The texts decided wrong, the most confident first (at most ``n``)."""
    wrong = sorted((o for o in decided if o.wrong), key=lambda o: -o.probability)
    return wrong[:n]


def least_sure(decided: list[Outcome], n: int) -> list[Outcome]:
    """The ``n`` texts closest to being decided otherwise."""
    return sorted(decided, key=lambda o: o.margin)[:n]


def format_outcomes(shown: list[Outcome], width: int = 72) -> str:
    """An aligned table of ``shown``: row, true and predicted label, probability, then the text
    on one line, cut to ``width`` characters."""
    rows = [["row", "true", "predicted", "p"]]
    rows += [[str(o.row), o.truth, o.predicted, f"{o.probability:.4f}"] for o in shown]
    lines = aligned(rows).split("\n")
    widest = max(len(line) for line in lines)
    texts = ["text", *(_one_line(o, width) for o in shown)]
    return "\n".join(
        f"{line.ljust(widest)}  {text}" for line, text in zip(lines, texts, strict=True)
    )


def _one_line(outcome: Outcome, width: int) -> str:
    text = outcome.text if outcome.pair is None else f"{outcome.text} | {outcome.pair}"
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1].rstrip() + "…"
