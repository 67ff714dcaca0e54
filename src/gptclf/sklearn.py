"""gptclf as a scikit-learn estimator: ``GPTClassifier(**recipe).fit(texts, y)`` trains a run as
``gptclf train`` does and keeps it in a run folder; ``predict``, ``predict_proba``,
``decision_function`` and ``score`` load the classifier from that folder. Its parameters are the
recipe's options (``gptclf train -h``), by their Python names, and ``preset``; so it works in
``clone``, ``cross_val_score``, ``GridSearchCV`` and ``Pipeline``. The frozen prefix's states are
kept in gptclf's on-disk store, so fits of the same texts after the first read them.

A fitted estimator pickles as its parameters and the path of its run folder, never its tensors:
it loads the classifier from the folder again when next asked."""

from __future__ import annotations

import dataclasses
import inspect
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from gptclf.data.dataset import DataSource
from gptclf.decision import decide
from gptclf.options import meta_of
from gptclf.recipe import TrainConfig, recipe


def _default(f: dataclasses.Field) -> object:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


RECIPE_PARAMETERS = {f.name: _default(f) for f in dataclasses.fields(TrainConfig) if meta_of(f).cli}
# The estimator's own: a preset under the options, where run folders are made (default: the
# system's temporary folder; a fitted estimator needs its folder), and training's progress shown.
OWN_PARAMETERS = {"preset": None, "run_root": None, "verbose": False}
PARAMETERS = {**OWN_PARAMETERS, **RECIPE_PARAMETERS}
LABEL_COLUMN = "label_{:05d}"  # the 0/1 column of label i of multi-label y, in label order


class GPTClassifier(ClassifierMixin, BaseEstimator):
    """A pretrained language model finetuned into a classifier of texts, as ``gptclf train``.

    ``y`` holds one label per text (ints or strings), or for multi-label data a 0/1 indicator
    matrix (n_texts, n_labels), as ``MultiLabelBinarizer`` makes; ``X`` is a sequence of texts.
    ``run_dir_`` is the fitted run folder, usable by ``gptclf eval``, ``predict`` and ``serve``.
    """

    def __init__(self, **params: object) -> None:
        unknown = sorted(set(params) - set(PARAMETERS))
        if unknown:
            raise TypeError(f"GPTClassifier has no parameter(s) {', '.join(unknown)}")
        for name, default in PARAMETERS.items():
            setattr(self, name, params.get(name, default))

    __init__.__signature__ = inspect.Signature(  # what get_params and clone read
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
            for name, default in PARAMETERS.items()
        ]
    )

    def fit(self, X: Sequence[str], y: Sequence | np.ndarray) -> GPTClassifier:
        """Train on texts ``X`` with labels ``y``; the run folder is ``run_dir_``."""
        from gptclf.training.train import train

        texts = _texts(X)
        y = np.asarray(y)
        if len(y) != len(texts):
            raise ValueError(f"X has {len(texts)} texts and y {len(y)} labels")
        config = recipe(
            self.preset, "GPTClassifier", **{n: getattr(self, n) for n in RECIPE_PARAMETERS}
        )
        root = None if self.run_root is None else Path(self.run_root)
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)
        run_dir = Path(tempfile.mkdtemp(prefix="gptclf-fit-", dir=root))
        with tempfile.TemporaryDirectory() as folder:
            source = _training_file(texts, y, Path(folder))
            train(config, source, run_dir, quiet=not self.verbose)
        self.run_dir_ = run_dir
        self.multi_label_ = y.ndim == 2
        self.classes_ = np.arange(y.shape[1]) if self.multi_label_ else np.unique(y)
        self._classifier = None
        return self

    def predict_proba(self, X: Sequence[str]) -> np.ndarray:
        """Each class's probability (n_texts, n_classes), columns in ``classes_`` order, as the
        run gives them (blended, calibrated); multi-label: each label's."""
        return self._label_order(self._loaded().predict_proba(_texts(X)))

    def predict(self, X: Sequence[str]) -> np.ndarray:
        """The class of each text as the run decides it (multi-label: a 0/1 row per text)."""
        classifier = self._loaded()
        probabilities = classifier.predict_proba(_texts(X))
        threshold = classifier.config.decision_rule.threshold
        decided = decide(probabilities, threshold, self.multi_label_)
        if self.multi_label_:
            return self._label_order(decided)
        values = [classifier.labels.values[i] for i in decided]
        return np.asarray(values, dtype=self.classes_.dtype)

    def decision_function(self, X: Sequence[str]) -> np.ndarray:
        """Log-odds of ``classes_[1]`` for two classes (n_texts,), else the log-probability of
        each class (multi-label: each label's log-odds)."""
        p = np.clip(self.predict_proba(X), 1e-12, 1 - 1e-12)
        if self.multi_label_:
            return np.log(p) - np.log1p(-p)
        if len(self.classes_) == 2:
            return np.log(p[:, 1]) - np.log(p[:, 0])
        return np.log(p)

    def __getstate__(self) -> dict:
        """Parameters and the run folder's path; the classifier loads again from the folder."""
        return {k: v for k, v in self.__dict__.items() if k != "_classifier"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _classifier=None)

    def _loaded(self):
        """The fitted run's classifier, loaded (and verified) once."""
        from sklearn.utils.validation import check_is_fitted

        from gptclf.predict import Classifier

        check_is_fitted(self, "run_dir_")
        if self._classifier is None:
            self._classifier = Classifier.from_pretrained(self.run_dir_)
        return self._classifier

    def _label_order(self, columns: np.ndarray) -> np.ndarray:
        """Columns in the run's label-id order put in ``classes_`` order."""
        labels = self._loaded().labels
        if self.multi_label_:
            order = [labels.values.index(LABEL_COLUMN.format(i)) for i in self.classes_]
        else:
            order = [labels.values.index(_plain(c)) for c in self.classes_]
        return columns[:, order]


def _texts(X: object) -> list[str]:
    """``X`` as a list of texts: a sequence of strings, or an array or frame of one column."""
    array = np.asarray(X, dtype=object)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"X must be a sequence of texts, not an array of shape {array.shape}")
    for i, text in enumerate(array):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"X[{i}] is {text!r}: every X must be a text with a word in it")
    return [str(text) for text in array]


def _plain(value: object) -> int | str:
    """A label of ``y`` as the run reads it back from JSON."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"labels must be integers or strings, not {type(value).__name__}")
    return value


def _training_file(texts: list[str], y: np.ndarray, folder: Path) -> DataSource:
    """``texts`` and ``y`` as the training file of a run: JSONL, one label (or a 0/1 column per
    label) a line."""
    path = folder / "train.jsonl"
    multi_label = y.ndim == 2
    columns = [LABEL_COLUMN.format(i) for i in range(y.shape[1])] if multi_label else []
    with open(path, "w", encoding="utf-8") as out:
        for text, labels in zip(texts, y, strict=True):
            row = {"text": text}
            if multi_label:
                row |= {name: int(on) for name, on in zip(columns, labels, strict=True)}
            else:
                row["label"] = _plain(labels)
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    if multi_label:
        return DataSource(train=path, text_column="text", label_columns=",".join(columns))
    return DataSource(train=path, text_column="text", label_column="label")
