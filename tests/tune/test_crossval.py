"""Cross-validation of one candidate: stratified folds fixed by the seed, out-of-fold class
probabilities for every text, the base model left as it was and the frozen-prefix states read
from the shared store."""

import numpy as np
import pytest
import torch

from gptclf import store as prefix_store
from gptclf.data.dataset import DataSource, load_splits
from gptclf.data.tokenized import tokenize
from gptclf.metrics import log_loss
from gptclf.recipe import max_length_within, recipe
from gptclf.store import PrefixStore
from gptclf.training.prepare import base_model
from gptclf.tune.crossval import cross_validate, fold_indices

LABELS = [0] * 12 + [1] * 6


def test_folds_hold_out_every_text_once_in_the_class_proportions():
    folds = fold_indices(LABELS, folds=3, seed=0)
    held_out = np.concatenate([rows for _, rows in folds])
    assert sorted(held_out.tolist()) == list(range(len(LABELS)))
    for train_rows, rows in folds:
        assert sorted([*train_rows, *rows]) == list(range(len(LABELS)))
        assert sorted(LABELS[i] for i in rows) == [0, 0, 0, 0, 1, 1]


def test_folds_are_fixed_by_the_seed():
    def held_out(seed: int) -> list[list[int]]:
        return [rows.tolist() for _, rows in fold_indices(LABELS, folds=3, seed=seed)]

    assert held_out(5) == held_out(5)
    assert held_out(5) != held_out(6)


@pytest.fixture(scope="module")
def spam_train(spam_data):
    """The 48 training texts of ``spam_data`` as the pooled data of a search."""
    return load_splits(DataSource(train=spam_data / "train.csv"))


@pytest.mark.parametrize(
    "changes",
    [{}, {"depth": 1, "pooling": "last-token+mean"}],
    ids=["cached-prefix", "depth-1"],
)
def test_cross_validation_gives_every_text_a_held_out_probability_and_leaves_the_base_model(
    spam_train, tiny_gpt2_base, monkeypatch, changes
):
    config = recipe(model=str(tiny_gpt2_base), epochs=1, precision="fp32", **changes)
    pretrained = base_model(config)
    model, tokenizer = pretrained.model, pretrained.tokenizer
    weights = {name: t.clone() for name, t in model.state_dict().items()}
    store = PrefixStore()  # the states after block 1 of every text, as the search fills it
    max_length = max_length_within(config.max_length, model.context_length)
    texts = spam_train.parts["train"].texts
    store.fill(model, tokenize(tokenizer, texts, max_length).ids, [1], tokenizer.pad_id, "fp32")

    def no_pass(*_, **__):
        raise AssertionError("frozen-prefix states computed again")

    monkeypatch.setattr(prefix_store, "states_at_depths", no_pass)
    part = spam_train.parts["train"]
    labels = spam_train.labels.ids(part.labels, part.source)
    measured = cross_validate(
        config, spam_train, pretrained, store, fold_indices(labels, folds=2, seed=0)
    )

    probabilities = measured.probabilities
    assert probabilities.shape == (48, 2) and (probabilities > 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert measured.metrics["n"] == 48
    assert measured.log_loss == pytest.approx(log_loss(labels, probabilities))
    assert len(model.trf_blocks) == 2
    assert model.state_dict().keys() == weights.keys()
    assert all(torch.equal(t, weights[name]) for name, t in model.state_dict().items())
