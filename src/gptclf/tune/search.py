"""``gptclf tune`` as a function: cross-validate candidate recipes on the training and validation
texts pooled, within a time budget, then train the winner on all of them into a run folder
beside its leaderboard. The test split is read only by that final run."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

from gptclf.data.dataset import LABEL_NAMES_FILE, DataSource, Splits, load_splits
from gptclf.data.readers import LabelledTexts
from gptclf.data.splits import write_split
from gptclf.data.tokenized import TokenizedTexts, tokenize
from gptclf.ensemble import blend, choose_weight
from gptclf.options import as_plain
from gptclf.precision import resolve_precision
from gptclf.recipe import TrainConfig, max_length_within, write_options
from gptclf.run.folder import RunDir
from gptclf.store import PrefixStore
from gptclf.training.prepare import base_model
from gptclf.training.train import train
from gptclf.tune.crossval import (
    Measured,
    baseline_out_of_fold,
    cross_validate,
    fold_indices,
    measured,
)
from gptclf.tune.leaderboard import Entry, write_leaderboard
from gptclf.tune.options import TuneOptions
from gptclf.tune.space import Candidate, candidates, combined, cost_units, prefix_depth


def tune(
    base: TrainConfig, source: DataSource, out: Path, options: TuneOptions, quiet: bool = False
) -> dict:
    """Choose a recipe for ``source`` by cross-validation on train + validation within the
    budget, train it on them all into the run folder ``out`` (measured on the test split once)
    and write the leaderboard there; returns the leaderboard."""
    began = time.perf_counter()
    run_dir = RunDir(Path(out))
    run_dir.create(resume=False)  # fails early on a folder in use
    say = (lambda _: None) if quiet else partial(print, flush=True)
    with tempfile.TemporaryDirectory() as work:
        try:
            splits = load_splits(source, Path(work) / "split")
            splits.labels.require_single("tune")
            splits.require_single_texts("tune")
            pooled = _pooled(splits)
            n_test = len(splits.parts["test"].texts) if "test" in splits.parts else 0
            search = _Search(base, pooled, options, began, say, n_test)
            entries = search.run()
        finally:
            run_dir.root.rmdir()  # train() makes it again, for the final run
        winner = min((e for e in entries if e.measured), key=Entry.rank_key)
        say(f"winner: {winner.candidate.name}; training it on all {search.n_pooled} texts")
        refit_source = _refit_data(splits, pooled, Path(work) / "refit")
        results = train(winner.config, refit_source, run_dir.root, quiet=quiet, store=search.store)
    write_options(run_dir.options, winner.config, _data_in_run(run_dir, refit_source))
    _write_label_names(pooled, run_dir.split)
    board = write_leaderboard(run_dir, entries, winner, search.summary(), results)
    say(f"leaderboard: {run_dir.root / 'leaderboard.md'}")
    return board


class _Search:
    """The candidates tried in order while the budget lasts, on shared folds and states."""

    def __init__(self, base, pooled: Splits, options: TuneOptions, began: float, say, n_test: int):
        self.base, self.pooled, self.options = base, pooled, options
        self.began, self.say, self.n_test = began, say, n_test
        self.pretrained = base_model(base)
        self.store = PrefixStore.on_disk() if base.store else PrefixStore()
        part = pooled.parts["train"]
        self.n_pooled = len(part.texts)
        self.labels = pooled.labels.ids(part.labels, part.source)
        self.folds = fold_indices(self.labels, options.folds, base.seed)
        self.n_blocks = len(self.pretrained.model.trf_blocks)
        self.unit_costs: list[float] = []  # seconds per cost unit of each candidate measured
        self.prefix_seconds = self.search_seconds = 0.0
        self.base_prefix_seconds = 0.0  # the first pass: the base reading, every depth it needs
        self.filled: set[tuple] = set()  # (reading, depth) held in the store
        self.base_tokens = self._tokens(base)
        self.token_counts = {_reading(base): int(self.base_tokens.lengths.sum())}  # by reading
        self.baseline: Measured | None = None  # the TF-IDF baseline's out-of-fold figures

    def run(self) -> list[Entry]:
        tokens = self.base_tokens
        space = candidates(
            self.base, self.n_blocks, bool((tokens.full_lengths > tokens.max_length).any())
        )
        self._fill_store(self.base, [c.config(self.base) for c in space])
        self.base_prefix_seconds = self.prefix_seconds
        entries: list[Entry] = []
        for candidate in space:
            self._try(candidate, entries)
        base_entry = entries[0]
        better = [e for e in entries[1:] if e.measured and e.rank_key() < base_entry.rank_key()]
        ranked = [e.candidate for e in sorted(better, key=Entry.rank_key)]
        joined = combined(self.base, ranked, self.n_blocks)
        if joined is not None:
            self._try(joined, entries)
        self._blend_with_baseline(entries)
        self.search_seconds = time.perf_counter() - self.began
        return entries

    def _blend_with_baseline(self, entries: list[Entry]) -> None:
        """Each measured candidate blended with the TF-IDF baseline, its weight chosen on the
        out-of-fold probabilities of both; the best blend joins the ranking (where it does
        better, the final run blends)."""
        self.baseline = baseline_out_of_fold(self.pooled, self.folds, self.base.seed)
        blends = [self._blended(e) for e in entries if e.measured]
        best = min(blends, key=Entry.rank_key)
        entries.append(best)
        figures = best.measured.metrics
        self.say(
            f"{best.candidate.name} (model weight {best.config.ensemble_weight}): cv accuracy "
            f"{figures['accuracy']:.4f} ({figures['n_errors']} errors); "
            f"the baseline alone {self.baseline.metrics['accuracy']:.4f}"
        )

    def _blended(self, entry: Entry) -> Entry:
        """``entry`` blended with the baseline at the weight best on their out-of-fold
        probabilities."""
        model, baseline = entry.measured.probabilities, self.baseline.probabilities
        weight = choose_weight(self.labels, model, baseline)
        seconds = entry.measured.seconds + self.baseline.seconds
        names = self.pooled.labels.names
        figures = measured(self.labels, blend(model, baseline, weight), names, seconds)
        changes = {**entry.candidate.changes, "ensemble": "baseline", "ensemble_weight": weight}
        candidate = Candidate(f"{entry.candidate.name}, blended with the baseline", changes)
        return Entry(candidate, candidate.config(self.base), figures, "measured")

    def summary(self) -> dict:
        baseline = self.baseline.metrics
        return {
            "baseline_alone": {
                "cv_accuracy": round(baseline["accuracy"], 4),
                "cv_errors": baseline["n_errors"],
                "cv_log_loss": round(self.baseline.log_loss, 4),
            },
            "folds": self.options.folds,
            "texts": self.n_pooled,
            "budget_seconds": self.options.budget,
            "search_seconds": round(self.search_seconds, 1),
            "prefix_seconds": round(self.prefix_seconds, 1),
            "base_recipe": as_plain(self.base),
        }

    def _tokens(self, config: TrainConfig) -> TokenizedTexts:
        """The pooled texts as ``config`` reads them."""
        model, tokenizer = self.pretrained.model, self.pretrained.tokenizer
        max_length = max_length_within(config.max_length, model.context_length)
        texts, chunks = self.pooled.parts["train"].texts, config.chunks is not None
        return tokenize(
            tokenizer, texts, max_length, config.truncate, config.template, chunks=chunks
        )

    def _fill_store(self, reading: TrainConfig, configs: list[TrainConfig]) -> None:
        """The frozen-prefix states, in one pass, of the pooled texts as ``reading`` reads them,
        at every depth that those of ``configs`` reading them the same way need."""
        began, key = time.perf_counter(), _reading(reading)
        depths = {prefix_depth(c, self.n_blocks) for c in configs if _reading(c) == key} - {0}
        depths -= {depth for held, depth in self.filled if held == key}
        if not depths:
            return
        ids = self._tokens(reading).ids
        pad_id = self.pretrained.tokenizer.pad_id
        self.store.fill(self.pretrained.model, ids, depths, pad_id, key[-1])
        self.filled |= {(key, depth) for depth in depths}
        seconds = time.perf_counter() - began
        self.prefix_seconds += seconds
        self.say(f"frozen prefix at depths {sorted(depths)}: {seconds:.0f} s")

    def _try(self, candidate: Candidate, entries: list[Entry]) -> None:
        """Cross-validate ``candidate`` if it is new and its estimated time fits the budget."""
        config = candidate.config(self.base)
        if any(as_plain(e.config) == as_plain(config) for e in entries):
            return
        scale = self._token_count(config) / self.token_counts[_reading(self.base)]
        units = cost_units(config, self.n_blocks) * self.options.folds * scale
        estimate = units * self._seconds_per_unit() + self._prefix_estimate(config, scale)
        final_run = self._final_run_estimate(entries, estimate)
        left = self.options.budget - (time.perf_counter() - self.began) - final_run
        if entries and estimate > left:
            entries.append(Entry(candidate, config, None, f"skipped: ~{estimate:.0f} s > budget"))
            self.say(f"skip {candidate.name}: ~{estimate:.0f} s, {max(left, 0):.0f} s left")
            return
        self._fill_store(config, [config])
        measured = cross_validate(config, self.pooled, self.pretrained, self.store, self.folds)
        self.unit_costs.append(measured.seconds / units)
        entries.append(Entry(candidate, config, measured, "measured"))
        self.say(
            f"{candidate.name}: cv accuracy {measured.metrics['accuracy']:.4f} "
            f"({measured.metrics['n_errors']} errors), log loss {measured.log_loss:.4f}, "
            f"{measured.seconds:.0f} s"
        )

    def _token_count(self, config: TrainConfig) -> int:
        """How many tokens the pooled texts are as ``config`` reads them (counted once per
        reading)."""
        key = _reading(config)
        if key not in self.token_counts:
            self.token_counts[key] = int(self._tokens(config).lengths.sum())
        return self.token_counts[key]

    def _prefix_estimate(self, config: TrainConfig, scale: float) -> float:
        """The frozen prefix ``config`` still needs: none where the store holds it, else the
        base reading's scaled by ``scale``, its share of tokens."""
        depth = prefix_depth(config, self.n_blocks)
        if depth == 0 or (_reading(config), depth) in self.filled:
            return 0.0
        return self.base_prefix_seconds * scale

    def _seconds_per_unit(self) -> float:
        """The median cost of a unit over the candidates measured (0 before the first)."""
        return statistics.median(self.unit_costs) if self.unit_costs else 0.0

    def _final_run_estimate(self, entries: list[Entry], estimate: float) -> float:
        """The final run if the dearest candidate so far (or the next, estimated) wins: its
        training (cross-validation trains k times on (k - 1)/k of the texts, the final run once
        on all of them) and the frozen prefix of the test texts."""
        cv_seconds = [e.measured.seconds for e in entries if e.measured]
        test_prefix = self.base_prefix_seconds * self.n_test / self.n_pooled
        return max([*cv_seconds, estimate]) / (self.options.folds - 1) + test_prefix


def _reading(config: TrainConfig) -> tuple[str, str]:
    """What decides the sequences a recipe's frozen prefix reads (besides the texts, template
    and length, which every candidate shares): chunks or the truncation side, and precision."""
    side = "chunks" if config.chunks is not None else config.truncate
    return side, resolve_precision(config.precision, "cpu")


def _pooled(splits: Splits) -> Splits:
    """The training and validation examples as one training part; the test split stays out."""
    train = splits.parts["train"]
    validation = splits.parts.get("validation")
    if validation is None:
        return Splits({"train": train}, splits.labels)
    both = replace(
        train,
        source=f"{train.source} + {validation.source}",
        texts=train.texts + validation.texts,
        labels=[*train.labels, *validation.labels],
        rows=train.rows + validation.rows,
        dropped_empty=[],
    )
    return Splits({"train": both}, splits.labels)


def _refit_data(splits: Splits, pooled: Splits, folder: Path) -> DataSource:
    """The final run's data written to ``folder``: train + validation as its training file
    (with the label names beside it), and the test split if there is one."""
    parts: dict[str, LabelledTexts] = {"train": pooled.parts["train"]}
    if "test" in splits.parts:
        parts["test"] = splits.parts["test"]
    folder.mkdir(parents=True)
    paths = write_split(parts, folder, fmt="jsonl")
    _write_label_names(pooled, folder)
    return DataSource(train=paths["train"], test=paths.get("test"))


def _write_label_names(splits: Splits, folder: Path) -> None:
    """``labels.json`` in ``folder``: the display name of each label value."""
    labels = splits.labels
    names = {str(v): n for v, n in zip(labels.values, labels.names, strict=True)}
    (folder / LABEL_NAMES_FILE).write_text(json.dumps(names, indent=2), encoding="utf-8")


def _data_in_run(run_dir: RunDir, source: DataSource) -> DataSource:
    """``source`` pointing at the copies of its files in the run folder's split folder."""
    return replace(
        source,
        train=run_dir.split / f"train{source.train.suffix}",
        test=None if source.test is None else run_dir.split / f"test{source.test.suffix}",
    )
