"""The recipes ``gptclf tune`` tries, each a change to the user's recipe, cheapest and most
promising first; which frozen-prefix depths they read; and what each costs to train."""

from __future__ import annotations

from dataclasses import dataclass

from gptclf.errors import GptclfError
from gptclf.options import as_plain
from gptclf.recipe import CHUNKS, TrainConfig, recipe
from gptclf.trainable import trainable_blocks

# What every candidate is measured with: its last epoch's weights, and the model alone.
MEASURED_ALONE = {
    "keep": "last",
    "early_stopping": None,
    "ensemble": "none",
    "ensemble_weight": None,
}


@dataclass(frozen=True)
class Candidate:
    """A named change to the base recipe."""

    name: str
    changes: dict

    def config(self, base: TrainConfig) -> TrainConfig:
        """The base recipe with this candidate's changes. Cross-validation keeps the last
        epoch's weights, since its held-out fold may not choose them, and measures the model
        alone unless the candidate is a blend with the baseline."""
        return recipe(**{**as_plain(base), **MEASURED_ALONE, **self.changes})


def candidates(base: TrainConfig, n_blocks: int, texts_long: bool) -> list[Candidate]:
    """The search space, in the order it is tried: the base recipe first (so that the winner is
    never worse in cross-validation than what was asked for), then single changes that change
    something, the cheap and promising first; head+tail, tail or head truncation and chunks
    only where some text is longer than the maximum length; LoRA on every block last (the
    dearest)."""
    upper, middle = round(n_blocks * 5 / 6), round(n_blocks * 2 / 3)
    slower = {"epochs": base.epochs * 2, "lr": base.lr / 2}
    space = [
        Candidate("base recipe", {}),
        Candidate("pooling last-token+mean", {"pooling": "last-token+mean"}),
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
        Candidate("decay matrices only", {"decay": "matrices"}),
        Candidate("label smoothing 0.1", {"label_smoothing": 0.1}),
        Candidate(f"depth {upper}", {"depth": upper}),
        Candidate(f"depth {middle}", {"depth": middle}),
        Candidate("twice the epochs at half the rate", slower),
        Candidate("last 2 blocks", {"trainable": "last-blocks:2", "lr": base.lr / 2}),
        Candidate(f"features at depth {middle} beside the top's", {"concat_depths": (middle,)}),
    ]
    if texts_long:
        space += [
            Candidate(f"{side} truncation", {"truncate": side, "chunks": None})
            for side in ("head+tail", "tail", "head")
        ]
        space += [Candidate(f"chunks, {how} of their logits", {"chunks": how}) for how in CHUNKS]
    space.append(
        Candidate(
            "LoRA on every block (bf16)",
            {"trainable": "lora", "lora_targets": ("all",), "precision": "bf16"},
        )
    )
    first = space[0].config(base)
    changing = [space[0], *(c for c in space[1:] if c.config(base) != first)]
    return [c for c in changing if _fits(c.config(base), n_blocks)]


def _fits(config: TrainConfig, n_blocks: int) -> bool:
    """Whether the model has the blocks the recipe trains (above its depth) and reads below it."""
    used = config.depth or n_blocks
    try:
        trainable_blocks(config.trainable, used)
    except GptclfError:
        return False
    return all(1 <= d < used for d in config.concat_depths or ())


def combined(base: TrainConfig, better: list[Candidate], n_blocks: int) -> Candidate | None:
    """One candidate joining the single changes that beat the base recipe, where they do not
    conflict (a later change to the same option, or one the model cannot take with the others,
    is left out); None for fewer than two."""
    changes: dict = {}
    joined = []
    for candidate in better:
        together = {**changes, **candidate.changes}
        fits = _fits(Candidate("", together).config(base), n_blocks)
        if fits and not set(candidate.changes) & set(changes):
            changes = together
            joined.append(candidate.name)
    if len(joined) < 2:
        return None
    return Candidate(" + ".join(joined), changes)


def prefix_depth(config: TrainConfig, n_blocks: int) -> int:
    """The depth whose states the recipe's frozen prefix hands on (0: none is cached)."""
    if not config.caches_prefix() or config.trainable == "lora":
        return 0
    used = config.depth or n_blocks
    return min([used - trainable_blocks(config.trainable, used), *(config.concat_depths or ())])


HEAD_ONLY_UNITS = 0.25  # an epoch of the head alone (the final norm and a linear layer), in blocks
FORWARD_UNITS = 1 / 3  # a frozen block run every epoch: its forward pass, without the backward


def cost_units(config: TrainConfig, n_blocks: int) -> float:
    """A training run's cost relative to others: epochs times the blocks run with gradients
    (a head alone counting as a quarter of a block, a frozen block above the cache as a third)."""
    used = config.depth or n_blocks
    trained = trainable_blocks(config.trainable, used) if config.trainable != "lora" else used
    run_frozen = used - prefix_depth(config, n_blocks) - trained
    return config.epochs * max(HEAD_ONLY_UNITS, trained + FORWARD_UNITS * max(run_frozen, 0))
