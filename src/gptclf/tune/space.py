"""The recipes ``gptclf tune`` tries, each a change to the user's recipe, cheapest and most
promising first; which frozen-prefix depths they read; and what each costs to train."""

from __future__ import annotations

from dataclasses import dataclass

from gptclf.errors import GptclfError
from gptclf.options import as_plain
from gptclf.recipe import TrainConfig, recipe
from gptclf.trainable import trainable_blocks


@dataclass(frozen=True)
class Candidate:
    """A named change to the base recipe."""

    name: str
    changes: dict

    def config(self, base: TrainConfig) -> TrainConfig:
        """The base recipe with this candidate's changes; cross-validation keeps the last
        epoch's weights, since its held-out fold may not choose them."""
        values = {**as_plain(base), **self.changes, "keep": "last", "early_stopping": None}
        return recipe(**values)


def candidates(base: TrainConfig, n_blocks: int, texts_truncated: bool) -> list[Candidate]:
    """The search space, in the order it is tried: the base recipe first (so that the winner is
    never worse in cross-validation than what was asked for), then single changes; head+tail
    truncation only where some text is truncated; LoRA on every block last (the dearest)."""
    upper, middle = round(n_blocks * 5 / 6), round(n_blocks * 2 / 3)
    slower = {"epochs": base.epochs * 2, "lr": base.lr / 2}
    space = [
        Candidate("base recipe", {}),
        Candidate("pooling last-token+mean", {"pooling": "last-token+mean"}),
        Candidate("decay matrices only", {"decay": "matrices"}),
        Candidate("label smoothing 0.1", {"label_smoothing": 0.1}),
        Candidate(f"depth {upper}", {"depth": upper}),
        Candidate(f"depth {middle}", {"depth": middle}),
        Candidate("twice the epochs at half the rate", slower),
        Candidate(
            f"head only on depth {middle}, last-token+mean",
            {
                "trainable": "head",
                "depth": middle,
                "pooling": "last-token+mean",
                "lr": 2e-3,
                "epochs": base.epochs * 2,
            },
        ),
        Candidate("last 2 blocks", {"trainable": "last-blocks:2", "lr": base.lr / 2}),
    ]
    if texts_truncated:
        space.append(Candidate("head+tail truncation", {"truncate": "head+tail"}))
    space.append(
        Candidate(
            "LoRA on every block (bf16)",
            {"trainable": "lora", "lora_targets": ("all",), "precision": "bf16"},
        )
    )
    return [c for c in space if _fits(c.config(base), n_blocks)]


def _fits(config: TrainConfig, n_blocks: int) -> bool:
    """Whether the model has the blocks the recipe trains (above its depth)."""
    try:
        trainable_blocks(config.trainable, config.depth or n_blocks)
    except GptclfError:
        return False
    return True


def combined(base: TrainConfig, better: list[Candidate]) -> Candidate | None:
    """One candidate joining the single changes that beat the base recipe, where they do not
    conflict (a later change to the same option is left out); None for fewer than two."""
    changes: dict = {}
    joined = []
    for candidate in better:
        if not set(candidate.changes) & set(changes):
            changes.update(candidate.changes)
            joined.append(candidate.name)
    if len(joined) < 2:
        return None
    return Candidate(" + ".join(joined), changes)


def prefix_depth(config: TrainConfig, n_blocks: int) -> int:
    """The depth whose states the recipe's frozen prefix hands on (0: none is cached)."""
    if not config.caches_prefix() or config.trainable == "lora":
        return 0
    used = config.depth or n_blocks
    return used - trainable_blocks(config.trainable, used)


def cost_units(config: TrainConfig, n_blocks: int) -> int:
    """A training run's cost relative to others: epochs times the blocks run with gradients."""
    used = config.depth or n_blocks
    return config.epochs * max(1, used - prefix_depth(config, n_blocks))
