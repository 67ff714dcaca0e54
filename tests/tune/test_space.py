"""The candidate recipes of a search: their order, the joining of the ones that beat the base
recipe, the frozen-prefix depth each reads and what each costs to train."""

import pytest

from gptclf.options import as_plain
from gptclf.recipe import recipe
from gptclf.tune.space import Candidate, candidates, combined, cost_units, prefix_depth

BASE = recipe(model="m", epochs=3, lr=1e-3)


@pytest.mark.parametrize("truncated", [False, True])
def test_the_search_starts_with_the_base_recipe_and_ends_with_lora(truncated):
    space = candidates(BASE, n_blocks=12, texts_long=truncated)
    assert space[0] == Candidate("base recipe", {})
    assert space[-1].changes["trainable"] == "lora"
    assert all(c.changes for c in space[1:])  # every other candidate changes something
    assert len({c.name for c in space}) == len(space)
    head_tail = [c for c in space if c.changes.get("truncate") == "head+tail"]
    chunked = {c.changes["chunks"] for c in space if c.changes.get("chunks")}
    assert len(head_tail) == (1 if truncated else 0)
    assert chunked == ({"mean", "max"} if truncated else set())


def test_a_base_reading_chunks_tries_the_other_combination_and_each_truncation_instead():
    space = candidates(recipe(model="m", chunks="mean"), n_blocks=12, texts_long=True)
    readings = {(c.config(BASE).truncate, c.changes.get("chunks", "mean")) for c in space}
    assert {("head", "max"), ("head", None), ("tail", None), ("head+tail", None)} <= readings
    assert not any(c.changes.get("chunks") == "mean" for c in space)


def test_a_candidates_recipe_is_the_base_with_its_changes_keeping_the_last_epoch():
    base = recipe(model="m", epochs=3, early_stopping=2, keep="best", pooling="mean")
    config = Candidate("smoothing", {"label_smoothing": 0.1}).config(base)
    assert (config.label_smoothing, config.pooling, config.epochs) == (0.1, "mean", 3)
    assert (config.keep, config.early_stopping) == ("last", None)
    assert (config.ensemble, config.ensemble_weight) == ("none", None)  # the model alone


def test_a_blend_candidate_keeps_its_ensemble_and_weight():
    config = Candidate("blend", {"ensemble": "baseline", "ensemble_weight": 0.4}).config(BASE)
    assert (config.ensemble, config.ensemble_weight) == ("baseline", 0.4)


def test_the_base_recipe_candidate_is_the_base_recipe_measured_alone():
    alone = recipe(**{**as_plain(BASE), "ensemble": "none"})
    assert candidates(BASE, 12, False)[0].config(BASE) == alone


def test_combined_joins_the_changes_that_do_not_touch_the_same_option():
    better = [
        Candidate("depth 8", {"depth": 8}),
        Candidate("depth 10", {"depth": 10}),  # conflicts with the first: left out
        Candidate("smoothing", {"label_smoothing": 0.1}),
    ]
    joined = combined(BASE, better, 12)
    assert joined == Candidate("depth 8 + smoothing", {"depth": 8, "label_smoothing": 0.1})


def test_combined_leaves_out_a_change_the_model_cannot_take_with_the_others():
    better = [
        Candidate("depth 8", {"depth": 8}),
        Candidate("features at depth 8", {"concat_depths": (8,)}),  # not below depth 8
        Candidate("smoothing", {"label_smoothing": 0.1}),
    ]
    assert combined(BASE, better, 12).changes == {"depth": 8, "label_smoothing": 0.1}


@pytest.mark.parametrize(
    "better",
    [
        [],
        [Candidate("depth 8", {"depth": 8})],
        [Candidate("depth 8", {"depth": 8}), Candidate("depth 10", {"depth": 10})],
    ],
)
def test_combined_is_none_with_fewer_than_two_changes_to_join(better):
    assert combined(BASE, better, 12) is None


@pytest.mark.parametrize(
    ("changes", "depth", "units"),
    [
        ({"trainable": "head"}, 12, 0.75),  # every block frozen: a quarter unit per epoch
        ({"trainable": "last-block"}, 11, 3),
        ({"trainable": "last-blocks:3"}, 9, 9),
        ({"trainable": "all"}, 0, 36),
        ({"trainable": "lora"}, 0, 36),  # adapters in every block: nothing cached
        ({"trainable": "last-block", "depth": 8}, 7, 3),
        ({"trainable": "head", "depth": 8}, 8, 0.75),
        ({"trainable": "lora", "depth": 8}, 0, 24),
        ({"trainable": "last-block", "cache": False}, 0, 14),  # 11 frozen blocks forward: 11/3
        ({"trainable": "last-block", "epochs": 2, "depth": 6}, 5, 2),
        ({"trainable": "last-block", "concat_depths": (8,)}, 8, 6),  # blocks 8-10 forward: 1
        ({"trainable": "head", "concat_depths": (6, 9)}, 6, 6),
    ],
)
def test_prefix_depth_and_cost_of_head_last_block_lora_depth_and_concat_recipes(
    changes, depth, units
):
    config = Candidate("c", changes).config(BASE)
    assert prefix_depth(config, n_blocks=12) == depth
    assert cost_units(config, n_blocks=12) == pytest.approx(units)
