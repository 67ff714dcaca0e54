"""The classic baseline to compare a finetuned GPT with: TF-IDF features and logistic regression.

One fixed feature configuration (lowercased word unigrams and bigrams, sublinear term frequency);
only the regularisation strength C is chosen, on the validation split alone, so the split the
baseline is measured on never influences it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from gptclf.data.dataset import Splits
from gptclf.errors import GptclfError
from gptclf.metrics import compute_metrics

C_GRID = (0.1, 1.0, 10.0, 100.0)
DEFAULT_C = 1.0
MAX_ITER = 1000
DESCRIPTION = "TF-IDF (lowercased word 1-2-grams, sublinear tf) + logistic regression"


def make_pipeline(c: float, seed: int) -> Pipeline:
    """The untrained baseline: TF-IDF features into logistic regression with strength ``c``."""
    return Pipeline(
        [
            ("tfidf", TfidfVectorizer(lowercase=True, ngram_range=(1, 2), sublinear_tf=True)),
            ("logreg", LogisticRegression(C=c, max_iter=MAX_ITER, random_state=seed)),
        ]
    )


def train_baseline(splits: Splits, seed: int = 123) -> tuple[Pipeline, dict]:
    """Fit the baseline (:func:`fit_baseline`) and measure it on the test split, or on
    validation when there is no test split. The metrics name the split and the selection."""
    measured = _measured_split(splits)
    model, selection = fit_baseline(splits, seed)
    texts, ids = _texts_and_ids(splits, measured)
    metrics = baseline_metrics(model, texts, ids, splits.labels.names)
    return model, {"model": DESCRIPTION, "split": measured, "selection": selection, **metrics}


def fit_baseline(splits: Splits, seed: int) -> tuple[Pipeline, dict]:
    """The baseline fitted on the train split, its C the one with the best validation accuracy
    (ties go to the smaller C; C=1 when there is no validation split), and how C was chosen.

    BLAS runs single-threaded here: on problems this small, its threads only compete (with
    torch's among others) and made fitting some thirty times slower."""
    splits.labels.require_single("the TF-IDF baseline")
    splits.require_single_texts("the TF-IDF baseline")
    texts, ids = _texts_and_ids(splits, "train")
    with threadpool_limits(limits=1):
        if "validation" in splits.parts:
            return _select_on_validation(splits, texts, ids, seed)
        model = make_pipeline(DEFAULT_C, seed).fit(texts, ids)
    return model, {"C": DEFAULT_C, "validation_accuracy": None}


def choose_c(texts: list[str], ids: list[int], seed: int, folds: int = 3) -> Pipeline:
    """The baseline fitted on all of ``texts``, its C the one in ``C_GRID`` with the lowest
    log loss over stratified folds of them (ties: the smaller C)."""
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    losses = {}
    with threadpool_limits(limits=1):
        for c in sorted(C_GRID):
            held_out = cross_val_predict(
                make_pipeline(c, seed), texts, ids, cv=splitter, method="predict_proba"
            )
            losses[c] = log_loss(ids, held_out, labels=sorted(set(ids)))
        best = min(sorted(C_GRID), key=lambda c: losses[c])
        return make_pipeline(best, seed).fit(texts, ids)


def pipeline_parts(model: Pipeline) -> tuple[dict[str, np.ndarray], dict]:
    """A fitted baseline as arrays (IDF weights, coefficients, classes) and JSON (vocabulary
    and C), to be written without pickle."""
    tfidf, logreg = model.named_steps["tfidf"], model.named_steps["logreg"]
    arrays = {
        "idf": tfidf.idf_,
        "coef": logreg.coef_,
        "intercept": logreg.intercept_,
        "classes": logreg.classes_.astype(np.int64),
    }
    arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}  # as safetensors writes
    vocabulary = {term: int(index) for term, index in tfidf.vocabulary_.items()}
    return arrays, {"C": logreg.C, "vocabulary": vocabulary}


def pipeline_from_parts(arrays: dict[str, np.ndarray], stored: dict) -> Pipeline:
    """The fitted baseline that ``pipeline_parts`` took apart."""
    model = make_pipeline(float(stored["C"]), 0)
    tfidf, logreg = model.named_steps["tfidf"], model.named_steps["logreg"]
    tfidf.vocabulary_ = {str(t): int(i) for t, i in stored["vocabulary"].items()}
    tfidf.idf_ = arrays["idf"]
    logreg.coef_, logreg.intercept_ = arrays["coef"], arrays["intercept"]
    logreg.classes_ = arrays["classes"]
    logreg.n_features_in_ = arrays["coef"].shape[1]
    if len(tfidf.vocabulary_) != logreg.n_features_in_ or len(arrays["idf"]) != len(
        tfidf.vocabulary_
    ):
        raise ValueError("vocabulary, IDF weights and coefficients differ in size")
    return model


def baseline_metrics(
    model: Pipeline, texts: list[str], truth: Sequence[int], names: Sequence[str]
) -> dict:
    """The metrics of ``model`` on ``texts``, whose class ids are ``truth``."""
    return compute_metrics(truth, class_probabilities(model, texts, len(names)), names)


def class_probabilities(model: Pipeline, texts: list[str], n_classes: int) -> np.ndarray:
    """Probabilities (n, n_classes) in class-id order; a class absent from training gets 0."""
    probabilities = np.zeros((len(texts), n_classes))
    with threadpool_limits(limits=1):
        probabilities[:, model.classes_] = model.predict_proba(texts)
    return probabilities


def _measured_split(splits: Splits) -> str:
    for name in ("test", "validation"):
        if name in splits.parts:
            return name
    raise GptclfError("the baseline needs a validation or test split to be measured on")


def _texts_and_ids(splits: Splits, name: str) -> tuple[list[str], list[int]]:
    part = splits.parts[name]
    if part.labels is None:
        raise GptclfError(f"{part.source}: no labels; the baseline needs labelled data")
    return part.texts, splits.labels.ids(part.labels, part.source)


def _select_on_validation(
    splits: Splits, texts: list[str], ids: list[int], seed: int
) -> tuple[Pipeline, dict]:
    """The model of the C in ``C_GRID`` with the best validation accuracy, and each accuracy."""
    validation_texts, validation_ids = _texts_and_ids(splits, "validation")
    best_model, best_c, accuracies = None, None, {}
    for c in sorted(C_GRID):
        model = make_pipeline(c, seed).fit(texts, ids)
        accuracies[str(c)] = float(accuracy_score(validation_ids, model.predict(validation_texts)))
        if best_c is None or accuracies[str(c)] > accuracies[str(best_c)]:
            best_model, best_c = model, c
    return best_model, {"C": best_c, "validation_accuracy": accuracies}
