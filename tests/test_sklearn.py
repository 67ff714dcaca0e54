"""``gptclf.sklearn.GPTClassifier`` through scikit-learn's own utilities, on a tiny model."""

import json
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, MultiLabelBinarizer

from gptclf.errors import GptclfError
from gptclf.recipe import TrainConfig, recipe
from gptclf.sklearn import GPTClassifier

from conftest import HAM, SPAM, TAGGED

TEXTS = (SPAM + HAM) * 4
LABELS = (["spam"] * len(SPAM) + ["ham"] * len(HAM)) * 4
LEARNS = {"trainable": "all", "lr": 3e-3, "epochs": 4, "precision": "fp32"}  # the tiny model


@pytest.fixture
def estimator(tiny_gpt2_base, tmp_path) -> GPTClassifier:
    return GPTClassifier(model=str(tiny_gpt2_base), run_root=str(tmp_path), **LEARNS)


@pytest.fixture
def fitted(estimator) -> GPTClassifier:
    return estimator.fit(TEXTS, LABELS)


def test_its_parameters_are_the_recipes_options_and_it_clones_with_them(estimator):
    params = estimator.get_params()
    recipe_options = {name for name in TrainConfig.__dataclass_fields__ if name != "book_loop"}
    own = {"preset", "run_root", "verbose", "validation_fraction"}
    assert set(params) == recipe_options | own
    assert params["lr"] == 3e-3 and params["batch_size"] == TrainConfig().batch_size
    copy = clone(estimator).set_params(epochs=2)
    assert copy.get_params()["epochs"] == 2 and estimator.epochs == 4
    with pytest.raises(TypeError, match=r"no parameter.*learning_rate"):
        GPTClassifier(learning_rate=0.1)


def test_a_fitted_classifier_predicts_its_labels_and_every_view_of_them_agrees(fitted):
    assert list(fitted.classes_) == ["ham", "spam"]
    probabilities = fitted.predict_proba(TEXTS)
    assert probabilities.shape == (len(TEXTS), 2)
    assert np.allclose(probabilities.sum(axis=1), 1)
    predicted = fitted.predict(TEXTS)
    assert list(predicted) == LABELS and fitted.score(TEXTS, LABELS) == 1.0
    assert list(fitted.classes_[probabilities.argmax(axis=1)]) == LABELS
    log_odds = fitted.decision_function(TEXTS)
    assert log_odds.shape == (len(TEXTS),)
    assert np.allclose(log_odds, np.log(probabilities[:, 1] / probabilities[:, 0]))
    assert (fitted.run_dir_ / "config.json").is_file()


def test_integer_classes_keep_their_type_and_order(estimator):
    numbers = [7 if label == "spam" else -3 for label in LABELS]
    fitted = estimator.fit(TEXTS, np.array(numbers))
    assert list(fitted.classes_) == [-3, 7] and fitted.predict(TEXTS).dtype == np.array(7).dtype
    assert list(fitted.predict(TEXTS)) == numbers


def test_it_pickles_as_its_run_folder_and_answers_the_same_when_loaded(fitted):
    expected = fitted.predict_proba(TEXTS[:4])
    saved = pickle.dumps(fitted)
    assert len(saved) < 20_000  # parameters and a path: no tensors
    loaded = pickle.loads(saved)
    assert loaded.run_dir_ == fitted.run_dir_
    assert np.array_equal(loaded.predict_proba(TEXTS[:4]), expected)


def test_cross_val_score_and_a_pipeline_fit_it_on_each_fold(estimator):
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    scores = cross_val_score(estimator, TEXTS, LABELS, cv=folds)
    assert scores.shape == (3,) and scores.min() >= 0.75
    lowered = make_pipeline(FunctionTransformer(lambda X: [t.lower() for t in X]), estimator)
    assert lowered.fit(TEXTS, LABELS).score(TEXTS, LABELS) == 1.0


def test_grid_search_reads_the_frozen_prefix_its_first_fit_stored(
    tiny_gpt2_base, tmp_path, monkeypatch
):
    monkeypatch.setenv("GPTCLF_STORE", str(tmp_path / "store"))  # empty: the first fit fills it
    runs_root, model = tmp_path / "runs", str(tiny_gpt2_base)
    head_only = GPTClassifier(model=model, run_root=runs_root, trainable="head", precision="fp32")
    search = GridSearchCV(head_only, {"lr": [1e-3, 1e-2]}, cv=2)
    search.fit(TEXTS, LABELS)
    assert set(search.cv_results_["param_lr"]) == {1e-3, 1e-2}
    runs = sorted(runs_root.iterdir(), key=lambda run: (run / "metrics.json").stat().st_mtime)
    states = [json.loads((run / "metrics.json").read_text())["prefix_states"] for run in runs]
    assert len(runs) == 5 and states[0]["computed"] > 0  # 2 candidates x 2 folds, and the refit
    assert all(s["computed"] == 0 and s["read"] > 0 for s in states[2:])  # the folds' texts again
    assert search.best_estimator_.run_dir_ == runs[-1]


def test_multi_label_y_as_an_indicator_matrix_gives_rows_of_decisions(estimator):
    binarizer = MultiLabelBinarizer()
    texts = [text for text, _ in TAGGED] * 6
    y = binarizer.fit_transform([labels for _, labels in TAGGED] * 6)
    fitted = estimator.set_params(epochs=8).fit(texts, y)
    assert list(fitted.classes_) == [0, 1, 2]
    assert fitted.predict_proba(texts).shape == y.shape
    assert np.array_equal(fitted.predict(texts), y)
    assert fitted.decision_function(texts).shape == y.shape


@pytest.mark.parametrize(
    ("X", "message"),
    [
        (["fine", ""], r"X\[1\] is ''"),
        (["fine", 3], r"X\[1\] is 3"),
        (np.array([["a", "b"], ["c", "d"]]), r"shape \(2, 2\)"),
    ],
)
def test_x_must_be_texts(estimator, X, message):
    with pytest.raises(ValueError, match=message):
        estimator.fit(X, ["spam", "ham"])


def test_a_preset_is_the_recipe_under_the_options_changed_from_their_defaults():
    assert GPTClassifier(preset="book").recipe() == recipe("book")
    assert GPTClassifier(preset="book", epochs=2).recipe() == recipe("book", epochs=2)


def test_labels_that_read_as_numbers_come_back_as_given(estimator):
    codes = ["007" if label == "spam" else "010" for label in LABELS]
    fitted = estimator.fit(TEXTS, codes)
    assert list(fitted.classes_) == ["007", "010"]
    assert list(fitted.predict(TEXTS)) == codes
    assert fitted.predict_proba(TEXTS).argmax(axis=1).tolist() == [c == "010" for c in codes]


def test_a_validation_fraction_lets_the_run_choose_a_threshold_on_it(estimator):
    fitted = estimator.set_params(validation_fraction=0.25, decide="f1").fit(TEXTS, LABELS)
    recorded = json.loads((fitted.run_dir_ / "metrics.json").read_text())
    assert [split["rows"] for split in recorded["data"]] == [18, 6]  # 24 texts, a quarter held
    assert recorded["decision"]["rule"] == "f1" and recorded["validation"]["n"] == 6
    assert list(fitted.predict(TEXTS)) == LABELS


def test_a_failed_fit_leaves_no_run_folder_and_a_relative_root_gives_an_absolute_one(
    tiny_gpt2_base, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    choosing = GPTClassifier(model=str(tiny_gpt2_base), run_root="runs", decide="f1")
    with pytest.raises(GptclfError, match="validation split"):
        choosing.fit(TEXTS, LABELS)  # --decide chooses on a validation split; there is none
    assert list((tmp_path / "runs").iterdir()) == []
    fitted = choosing.set_params(decide="argmax", epochs=1).fit(TEXTS, LABELS)
    assert fitted.run_dir_.is_absolute() and fitted.run_dir_.parent == tmp_path / "runs"


def test_a_label_no_text_carries_is_refused_before_training(estimator):
    y = MultiLabelBinarizer(classes=["money", "social", "urgent", "unused"]).fit_transform(
        [labels for _, labels in TAGGED]
    )
    with pytest.raises(ValueError, match="label column 3 of y marks no text"):
        estimator.fit([text for text, _ in TAGGED], y)
