"""Everything the training loop starts from: the data read and split, the base model with its
class head and the parts that train, and, where the bottom blocks are frozen, their output
computed once (the frozen-prefix cache)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from gptclf.classifier import SequenceClassifier, build_classifier
from gptclf.data.batching import TokenDataset
from gptclf.data.dataset import DataSource, Splits, load_splits, tokenize_splits
from gptclf.data.summary import SplitSummary
from gptclf.data.tokenized import DEFAULT_PAIR_TEMPLATE
from gptclf.distributed import LOCAL, DistributedContext, device_scope
from gptclf.errors import GptclfError
from gptclf.models import FAMILIES
from gptclf.precision import frozen_linears, resolve_precision, set_frozen_precision
from gptclf.recipe import TrainConfig, max_length_within
from gptclf.registry import Pretrained, load_pretrained
from gptclf.run.folder import RunDir
from gptclf.store import PrefixStore, Tally
from gptclf.tokenizers import gpt2_tokenizer
from gptclf.trainable import set_trainable


@dataclass
class Prepared:
    """Data and model ready for the loop."""

    splits: Splits
    datasets: dict[str, TokenDataset]
    pretrained: Pretrained
    classifier: SequenceClassifier
    pad_id: int
    pad_to: int | None
    max_length: int
    summaries: list[SplitSummary]  # each split's rows, class balance, token lengths
    start_block: int  # > 0: datasets hold the hidden states that enter this block
    precision: str  # "bf16" or "fp32"
    template: str | None  # the recipe's, or for pairs of texts with none, the default join
    prefix: Tally = field(default_factory=Tally)  # frozen-prefix states read and computed here


def prepare(
    config: TrainConfig,
    source: DataSource,
    run_dir: RunDir,
    dist: DistributedContext = LOCAL,
    store: PrefixStore | None = None,
) -> Prepared:
    """Data, model and (when the bottom blocks are frozen) their cached output, taken from
    ``store`` where it holds them. The main rank reads the data and shares it; the model is on
    ``dist.device``."""
    splits = dist.on_main(lambda: _load_data(source, run_dir))
    return prepare_loaded(config, splits, base_model(config), dist, store)


def prepare_loaded(
    config: TrainConfig,
    splits: Splits,
    pretrained: Pretrained,
    dist: DistributedContext = LOCAL,
    store: PrefixStore | None = None,
) -> Prepared:
    """``prepare`` on data already read and a base model already loaded (which becomes the
    classifier); frozen-prefix states come from ``store`` where one is given (else they are
    computed)."""
    model, tokenizer = pretrained.model, pretrained.tokenizer
    max_length = max_length_within(config.max_length, model.context_length)
    template = config.template
    if splits.has_pairs and template is None:
        template = DEFAULT_PAIR_TEMPLATE
    reading = (config.truncate, template, config.chunks is not None)
    tokens, summaries = tokenize_splits(splits, tokenizer, max_length, *reading)
    pad_to = int(tokens["train"].lengths.max()) if config.pad_to == "longest" else None
    if pad_to:  # the book cuts every text to the longest training text, as prediction does
        tokens, _ = tokenize_splits(splits, tokenizer, pad_to, *reading)
    torch.manual_seed(config.seed)  # the class head and adapters are initialised under the seed
    classifier = build_classifier(model, config.classifier_spec(len(splits.labels)))
    set_trainable(classifier, config.trainable)
    classifier.to(dist.device)
    start_block = classifier.frozen_prefix() if config.caches_prefix() else 0
    precision = resolve_precision(config.precision, dist.device.type)
    set_frozen_precision(classifier, frozen_linears(classifier), precision)
    inputs = {name: t.ids for name, t in tokens.items()}
    store = store if store is not None else PrefixStore()
    before = replace(store.tally)
    if start_block:
        inputs = _prefix_states(
            classifier, inputs, start_block, tokenizer.pad_id, precision, dist, store
        )
    prefix = Tally(store.tally.read - before.read, store.tally.computed - before.computed)
    datasets = {
        name: TokenDataset(
            inputs[name], splits.labels.targets(part.labels, part.source), tokens[name].owners
        )
        for name, part in splits.parts.items()
    }
    return Prepared(
        splits,
        datasets,
        pretrained,
        classifier,
        tokenizer.pad_id,
        pad_to,
        max_length,
        summaries,
        start_block,
        precision,
        template,
        prefix,
    )


def base_model(config: TrainConfig) -> Pretrained:
    """The pretrained model, or with ``init: random`` a family's preset size with random weights
    drawn under the seed."""
    if config.init == "pretrained":
        return load_pretrained(config.model)
    family = next((f for f in FAMILIES.values() if config.model in f.presets), None)
    if family is None:
        sizes = [name for f in FAMILIES.values() for name in f.presets]
        raise GptclfError(f"--init random builds one of {', '.join(sizes)}, not {config.model!r}")
    torch.manual_seed(config.seed)
    model = family.model(family.presets[config.model]).eval()
    return Pretrained(config.model, model, gpt2_tokenizer(), Path(config.model), 0.0)


def _load_data(source: DataSource, run_dir: RunDir) -> Splits:
    """Read the data (split on the fly if asked) and keep its split files in the run folder."""
    splits = load_splits(source, run_dir.split)
    run_dir.split.mkdir(parents=True, exist_ok=True)
    for name, path in splits.files.items():
        target = run_dir.split / f"{name}{path.suffix}"
        if path.resolve() != target.resolve():
            shutil.copyfile(path, target)
    return splits


def _prefix_states(
    classifier: SequenceClassifier,
    sequences: dict[str, list[list[int]]],
    start_block: int,
    pad_id: int,
    precision: str,
    dist: DistributedContext,
    store: PrefixStore,
) -> dict[str, list[torch.Tensor]]:
    """The hidden states entering ``start_block`` of every sequence of every split, on the
    device: each rank reads from ``store`` or computes those of its share of the sequences,
    then the ranks exchange them."""
    names = list(sequences)
    pooled = [s for name in names for s in sequences[name]]
    lm = classifier.language_model

    def compute(positions: slice) -> list[torch.Tensor]:
        with device_scope(dist.device, precision):
            states = store.states(lm, pooled[positions], start_block, pad_id, precision)
        return [state.cpu() for state in states]

    states = iter(state.to(dist.device) for state in dist.gather_shards(compute))
    return {name: [next(states) for _ in sequences[name]] for name in names}
