"""Finetuning a pretrained language model into a classifier: data, model, the training loop with
its schedule, evaluation during training, early stopping, checkpoints that a resumed run
continues bit for bit, and the run folder with the trained model, its metrics and plots."""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from gptclf.artifact import RunConfig, family_of, save_run_model
from gptclf.atomic import atomic_path, write_text_atomic
from gptclf.classifier import (
    SequenceClassifier,
    batched_logits,
    count_parameters,
    set_trainable,
)
from gptclf.data.batching import Batch, Collator, LengthBucketSampler, TokenDataset
from gptclf.data.dataset import DataSource, Splits, load_splits, tokenize_splits
from gptclf.data.summary import format_summary
from gptclf.distributed import LOCAL, DistributedContext, device_scope
from gptclf.errors import GptclfError
from gptclf.evaluate import compute_metrics, format_metrics, plot_confusion_matrix, write_metrics
from gptclf.plots import plot_training_curves
from gptclf.precision import PRECISIONS, attention_kernel, autocast, resolve_precision
from gptclf.registry import DEFAULT_MODEL, MODELS, Pretrained, load_pretrained
from gptclf.tokenizers import HFTokenizer

TRAIN_CONFIG_FILE = "train_config.json"
CHECKPOINT_DIR = "checkpoint"
SCHEDULES = ("constant", "linear", "cosine")
METRICS = ("accuracy", "macro_f1", "loss")
DEFAULT_MAX_LENGTH = 512


@dataclass
class TrainConfig:
    model: str = DEFAULT_MODEL
    init: str = "pretrained"  # or "random": the architecture with random weights
    pooling: str = "last-token"
    trainable: str = "last-block"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = ("qv",)
    lora_blocks: int | None = None  # adapters in the top N blocks; None: every block
    epochs: int = 8
    batch_size: int = 8
    grad_accumulation: int = 1
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup: float = 0.1  # fraction of the optimizer steps
    schedule: str = "cosine"
    max_grad_norm: float | None = 1.0
    class_weights: str | None = None  # "balanced"
    seed: int = 123
    max_length: int | None = None  # tokens kept per text; default min(context, 512)
    pad_to: str | None = None  # "longest": every batch padded to the longest training text
    truncate: str = "head"
    template: str | None = None  # e.g. "SMS: {text}\nIs it spam?": text around every message
    eval_every: int | None = None  # also evaluate every N optimizer steps
    eval_batches: int | None = None  # evaluate on the first N batches only
    early_stopping: int | None = None  # patience, in epochs without improvement
    metric: str = "accuracy"
    keep: str = "last"  # the "last" epoch's weights, or the "best" validation epoch's
    drop_last: bool = False
    attend_to_padding: bool = False
    cache: bool = True  # run the frozen bottom blocks once and train on their cached output
    precision: str = "auto"  # bf16 autocast where the CPU has it natively, else fp32
    book_loop: bool = False  # shuffle with the global RNG and log exactly as chapter 6 does
    full: bool = False  # standalone artifact with every tensor

    def check(self) -> None:
        choices = {
            "schedule": SCHEDULES,
            "metric": METRICS,
            "keep": ("best", "last"),
            "init": ("pretrained", "random"),
            "class_weights": (None, "balanced"),
            "pad_to": (None, "longest"),
            "precision": PRECISIONS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                shown = ", ".join(str(a) for a in allowed if a is not None)
                raise GptclfError(f"--{name.replace('_', '-')} must be one of {shown}")
        for name in ("epochs", "batch_size", "grad_accumulation"):
            if getattr(self, name) < 1:
                raise GptclfError(f"--{name.replace('_', '-')} must be at least 1")
        if not 0 <= self.warmup < 1:
            raise GptclfError("--warmup is a fraction of the steps, in [0, 1)")
        if self.lr <= 0:
            raise GptclfError("--lr must be positive")


PRESETS: dict[str, dict] = {
    # Chapter 6 exactly: gpt2-small padded to the longest training text, position -1 read
    # without an attention mask, last block + final norm + head trained with AdamW 5e-5 / 0.1,
    # batch 8 with drop_last, 5 epochs, evaluation every 50 steps on 5 batches, seed 123.
    "book": dict(
        model="gpt2-small",
        pad_to="longest",
        pooling="last-position",
        attend_to_padding=True,
        trainable="last-block",
        lr=5e-5,
        weight_decay=0.1,
        batch_size=8,
        drop_last=True,
        epochs=5,
        eval_every=50,
        eval_batches=5,
        seed=123,
        schedule="constant",
        warmup=0.0,
        max_grad_norm=None,
        keep="last",
        book_loop=True,
        max_length=1024,
        cache=False,
        precision="fp32",
    ),
}


def config_from(preset: str | None, **overrides) -> TrainConfig:
    """A preset's settings with explicitly given options on top."""
    base = {}
    if preset is not None:
        if preset not in PRESETS:
            raise GptclfError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        base = PRESETS[preset]
    known = {f.name for f in fields(TrainConfig)}
    given = {k: v for k, v in overrides.items() if v is not None and k in known}
    config = TrainConfig(**{**base, **given})
    config.check()
    return config


@dataclass
class Record:
    kind: str  # "train" or "validation"
    epoch: float
    step: int
    examples_seen: int
    loss: float
    accuracy: float | None = None
    macro_f1: float | None = None


@dataclass
class TrainerState:
    """Everything that evolves during training besides the weights and optimizer."""

    epochs_done: int = 0
    step: int = 0
    examples_seen: int = 0
    best_value: float | None = None
    best_epoch: int | None = None
    epochs_without_improvement: int = 0
    records: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0


class Logger:
    """Progress to the terminal (unless quiet) and every figure to ``metrics.jsonl`` (kept in
    the state only when there is no ``run_dir``: in the processes besides the main one)."""

    def __init__(self, run_dir: Path | None, quiet: bool, state: TrainerState):
        self.path = None if run_dir is None else run_dir / "metrics.jsonl"
        self.quiet = quiet
        self.state = state
        if self.path is not None:
            write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in state.records))

    def say(self, message: str) -> None:
        if not self.quiet:
            tqdm.write(message, file=sys.stdout)

    def record(self, record: Record) -> None:
        entry = {k: v for k, v in asdict(record).items() if v is not None}
        self.state.records.append(entry)
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")


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
    summary: str
    start_block: int  # > 0: datasets hold the hidden states that enter this block
    precision: str  # "bf16" or "fp32"


def _base_model(config: TrainConfig) -> Pretrained:
    if config.init == "pretrained":
        return load_pretrained(config.model)
    if config.model not in MODELS or MODELS[config.model].family != "gpt2":
        raise GptclfError("--init random builds a registered GPT-2 size (e.g. --model gpt2-small)")
    from gptclf.models import GPT2_PRESETS, GPTModel
    from gptclf.tokenizers import gpt2_tokenizer

    torch.manual_seed(config.seed)
    model = GPTModel(GPT2_PRESETS[config.model]).eval()
    return Pretrained(config.model, model, gpt2_tokenizer(), Path(config.model), 0.0)


def _copy_split_files(splits: Splits, split_dir: Path) -> None:
    """Keep the files of the split used with the run (on-the-fly splits are written there)."""
    split_dir.mkdir(parents=True, exist_ok=True)
    for name, path in splits.files.items():
        target = split_dir / f"{name}{path.suffix}"
        if path.resolve() != target.resolve():
            shutil.copyfile(path, target)


def _load_data(source: DataSource, run_dir: Path) -> Splits:
    """Read the data (split on the fly if asked) and keep its split files in the run folder."""
    split_dir = run_dir / "split"
    splits = load_splits(source, split_dir)
    _copy_split_files(splits, split_dir)
    return splits


def prepare(
    config: TrainConfig, source: DataSource, run_dir: Path, dist: DistributedContext = LOCAL
) -> Prepared:
    """Data, model and (when the bottom blocks are frozen) their cached output. The main rank
    reads the data and shares it; the model is on ``dist.device``."""
    splits = dist.on_main(lambda: _load_data(source, run_dir))
    pretrained = _base_model(config)
    model, tokenizer = pretrained.model, pretrained.tokenizer
    max_length = min(config.max_length or DEFAULT_MAX_LENGTH, model.context_length)
    tokens, summaries = tokenize_splits(
        splits, tokenizer, max_length, config.truncate, config.template
    )
    pad_to = int(tokens["train"].lengths.max()) if config.pad_to == "longest" else None
    if pad_to:  # the book cuts validation and test texts to the longest training text
        tokens = {
            name: replace(t, ids=[ids[:pad_to] for ids in t.ids]) for name, t in tokens.items()
        }
    torch.manual_seed(config.seed)  # the class head is initialised under the seed
    classifier = SequenceClassifier(
        model, len(splits.labels), config.pooling, config.attend_to_padding
    )
    if config.trainable == "lora":
        from gptclf.lora import apply_lora

        apply_lora(
            model, config.lora_rank, config.lora_alpha, config.lora_targets, _lora_blocks(config)
        )
    set_trainable(classifier, config.trainable)
    classifier.to(dist.device)
    start_block = _cache_boundary(config, classifier)
    precision = resolve_precision(config.precision, dist.device.type)
    inputs = {name: t.ids for name, t in tokens.items()}
    if start_block:
        inputs = {
            name: _prefix_states(classifier, ids, start_block, tokenizer.pad_id, precision, dist)
            for name, ids in inputs.items()
        }
    datasets = {
        name: TokenDataset(inputs[name], splits.labels.ids(part.labels, part.source))
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
        format_summary(summaries),
        start_block,
        precision,
    )


def _prefix_states(
    classifier: SequenceClassifier,
    sequences: list[list[int]],
    start_block: int,
    pad_id: int,
    precision: str,
    dist: DistributedContext,
) -> list[torch.Tensor]:
    """The hidden states entering ``start_block`` of every sequence, on the device: each rank
    computes those of its share of the sequences, then the ranks exchange them."""

    def compute(positions: slice) -> list[torch.Tensor]:
        with device_scope(dist.device, precision):
            states = classifier.prefix_states(sequences[positions], start_block, pad_id, precision)
        return [state.cpu() for state in states]

    return [state.to(dist.device) for state in dist.gather_shards(compute)]


def cache_allowed(config: TrainConfig) -> bool:
    """Whether the frozen-prefix cache may run: it is enabled and the batches are dynamically
    padded with an attention mask (the book's fixed padding reads pad tokens)."""
    return config.cache and not config.attend_to_padding and not config.pad_to


def _cache_boundary(config: TrainConfig, classifier: SequenceClassifier) -> int:
    """Where the frozen-prefix cache ends: 0 (no cache) unless allowed and some bottom blocks are
    frozen."""
    return classifier.frozen_prefix() if cache_allowed(config) else 0


def _lora_blocks(config: TrainConfig) -> list[int] | None:
    return None if config.lora_blocks is None else list(range(-config.lora_blocks, 0))


def _class_weights(config: TrainConfig, data: TokenDataset, n_classes: int) -> torch.Tensor | None:
    if config.class_weights != "balanced":
        return None
    counts = np.bincount(np.asarray(data.labels), minlength=n_classes)
    return torch.tensor(len(data) / (n_classes * np.maximum(counts, 1)), dtype=torch.float32)


def _lr_factor(config: TrainConfig, total_steps: int) -> Callable[[int], float]:
    warmup_steps = int(config.warmup * total_steps)

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if config.schedule == "linear":
            return max(0.0, 1.0 - progress)
        if config.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return 1.0

    return factor


def share_of_batch(
    batch: Batch, rank: int, world_size: int, class_weights: torch.Tensor | None
) -> tuple[Batch, float]:
    """Rank ``rank``'s rows of a global batch (positions rank, rank + world size, ...) and the
    factor that turns their summed loss into the rank's part of the batch's mean loss: DDP
    averages the ranks' gradients, so world size / the batch's weight (its size, or the sum of
    its class weights as ``F.cross_entropy`` divides by). A rank left without rows gets the first
    row with factor 0: DDP's gradient all-reduce needs every rank's backward."""
    labels = batch.labels
    weight = len(labels) if class_weights is None else float(class_weights[labels].sum())
    if rank >= len(labels):
        return _rows(batch, slice(0, 1)), 0.0
    return _rows(batch, slice(rank, None, world_size)), world_size / weight


def _rows(batch: Batch, rows: slice) -> Batch:
    return Batch(batch.inputs[rows], batch.attention_mask[rows], batch.labels[rows])


def _to(batch: Batch, device: torch.device) -> Batch:
    return Batch(batch.inputs.to(device), batch.attention_mask.to(device), batch.labels.to(device))


class Trainer:
    def __init__(
        self,
        config: TrainConfig,
        prepared: Prepared,
        run_dir: Path,
        quiet: bool,
        dist: DistributedContext = LOCAL,
    ):
        self.config = config
        self.prepared = prepared
        self.classifier = prepared.classifier
        self.dist = dist
        self.device = dist.device
        self.network = dist.wrap(self.classifier)  # what the training forward runs through
        self.run_dir = run_dir
        self.collate = Collator(prepared.pad_id, prepared.pad_to)
        self.train_data = prepared.datasets["train"]
        self.val_data = prepared.datasets.get("validation")
        self.trainable = {
            n: p for n, p in self.classifier.model.named_parameters() if p.requires_grad
        }
        self.optimizer = torch.optim.AdamW(
            self.trainable.values(), lr=config.lr, weight_decay=config.weight_decay, fused=True
        )
        batches_per_epoch = self._batches_per_epoch()
        self.total_steps = config.epochs * math.ceil(batches_per_epoch / config.grad_accumulation)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_factor(config, self.total_steps)
        )
        n_classes = len(prepared.splits.labels)
        self.class_weights = _class_weights(config, self.train_data, n_classes)
        self.state = TrainerState()
        self.best_weights: dict[str, torch.Tensor] | None = None
        self.quiet = quiet

    # -- data ---------------------------------------------------------------------------------
    def _batches_per_epoch(self) -> int:
        n, b = len(self.train_data), self.config.batch_size
        return n // b if self.config.drop_last else math.ceil(n / b)

    def _train_batches(self, epoch: int) -> Iterator:
        if self.config.book_loop:  # torch's shuffling from the global RNG, as the book's loader
            return iter(
                DataLoader(
                    self.train_data,
                    batch_size=self.config.batch_size,
                    shuffle=True,
                    drop_last=self.config.drop_last,
                    collate_fn=self.collate,
                )
            )
        sampler = LengthBucketSampler(
            self.train_data.lengths,
            self.config.batch_size,
            seed=self.config.seed,
            drop_last=self.config.drop_last,
        )
        sampler.set_epoch(epoch)
        return (self.collate([self.train_data[i] for i in batch]) for batch in sampler)

    def _eval_batches(self, data: TokenDataset) -> Iterator:
        if self.config.book_loop:
            return iter(
                DataLoader(data, batch_size=self.config.batch_size, collate_fn=self.collate)
            )
        sampler = LengthBucketSampler(data.lengths, self.config.batch_size, shuffle=False)
        return (self.collate([data[i] for i in batch]) for batch in sampler)

    # -- evaluation -------------------------------------------------------------------------------
    def forward(self, batch: Batch, module: nn.Module | None = None) -> torch.Tensor:
        """Class logits of a batch on the device, computed by ``module`` (the classifier unless
        given: training passes its DDP wrapper)."""
        module = self.classifier if module is None else module
        precision, device = self.prepared.precision, self.device.type
        with autocast(precision, device), attention_kernel(batch.inputs.shape[1], device):
            logits = module(batch.inputs, batch.attention_mask, self.prepared.start_block)
        return logits.float()

    def logits(self, data: TokenDataset) -> torch.Tensor:
        """Class logits of every example, in dataset order, on the CPU; with several ranks each
        computes its share and every rank gets them all."""
        prepared = self.prepared
        ids = list(data.ids)

        def compute(positions: slice) -> torch.Tensor:
            with device_scope(self.device, prepared.precision):
                logits = batched_logits(
                    self.classifier,
                    ids[positions],
                    prepared.pad_id,
                    pad_to=prepared.pad_to,
                    precision=prepared.precision,
                    start_block=prepared.start_block,
                )
            return logits.cpu()

        return self.dist.gather_shards(compute)

    def _batch_logits(self, batch: Batch) -> torch.Tensor:
        """Class logits of a whole batch, on the CPU; with several ranks each computes its rows
        and every rank gets them all."""

        def compute(rows: slice) -> torch.Tensor:
            share = _rows(batch, rows)
            if len(share.labels) == 0:
                return torch.empty(0, self.classifier.head.out_features)
            return self.forward(_to(share, self.device)).cpu()

        return self.dist.gather_shards(compute)

    def _loss(
        self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        return F.cross_entropy(logits, labels, weight=weight, reduction=reduction)

    @torch.inference_mode()
    def _measure(self, batches: Iterator, limit: int | None) -> tuple[float, float, float]:
        """Mean batch loss, accuracy and macro F1 over (the first ``limit``) batches."""
        self.classifier.eval()
        losses, predicted, truth = [], [], []
        for batch in islice(batches, limit):
            logits = self._batch_logits(batch)
            losses.append(self._loss(logits, batch.labels).item())
            predicted.append(logits.argmax(-1))
            truth.append(batch.labels)
        self.classifier.train()
        predicted, truth = torch.cat(predicted), torch.cat(truth)
        accuracy = (predicted == truth).float().mean().item()
        return float(np.mean(losses)), accuracy, _macro_f1(truth, predicted)

    def _record_eval(self, kind: str, batches: Iterator, epoch: float) -> Record:
        loss, accuracy, macro_f1 = self._measure(batches, self.config.eval_batches)
        record = Record(
            kind, epoch, self.state.step, self.state.examples_seen, loss, accuracy, macro_f1
        )
        self.logger.record(record)
        return record

    def _evaluate_now(self, epoch_position: float, recent_losses: list[float]) -> None:
        """Evaluation every N steps. The book measures the loss on the first 5 batches of a fresh
        pass over the training data; otherwise the training loss since the last one is kept."""
        state = self.state
        if self.config.book_loop:
            train = self._record_eval("train", self._train_batches(-1), epoch_position)
        else:
            train = Record(
                "train",
                epoch_position,
                state.step,
                state.examples_seen,
                float(np.mean(recent_losses)),
            )
            self.logger.record(train)
        line = (
            f"Ep {int(epoch_position) + 1} (Step {state.step - 1:06d}): Train loss {train.loss:.3f}"
        )
        if self.val_data is not None:
            val = self._record_eval("validation", self._eval_batches(self.val_data), epoch_position)
            line += f", Val loss {val.loss:.3f}"
        self.logger.say(line)

    # -- training -----------------------------------------------------------------------------
    def _epoch(self, epoch: int) -> tuple[float, float]:
        """One pass over the training data; returns the mean loss and accuracy seen."""
        config = self.config
        self.classifier.train()
        losses, correct, seen, since_eval = [], 0, 0, []
        batches = self._train_batches(epoch)
        batches_per_epoch = self._batches_per_epoch()
        bar = tqdm(
            batches,
            total=batches_per_epoch,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=self.quiet or config.book_loop or not sys.stdout.isatty(),
            leave=False,
            file=sys.stdout,
        )
        for i, batch in enumerate(bar):
            step_ends = (i + 1) % config.grad_accumulation == 0 or i + 1 == batches_per_epoch
            loss, batch_correct = self._train_step(batch, step_ends)
            losses.append(loss)
            since_eval.append(loss)
            correct += batch_correct
            seen += len(batch.labels)
            self.state.examples_seen += len(batch.labels)
            if step_ends:
                self._optimizer_step()
                if config.eval_every and (self.state.step - 1) % config.eval_every == 0:
                    self._evaluate_now(epoch + (i + 1) / batches_per_epoch, since_eval)
                    since_eval = []
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", acc=f"{correct / seen:.1%}")
        return float(np.mean(losses)), correct / max(seen, 1)

    def _train_step(self, batch: Batch, step_ends: bool) -> tuple[float, int]:
        """Forward and backward of a global batch (of this rank's share of it, with gradients
        averaged over the ranks only where the optimizer step ends); the batch's mean loss and
        how many of its examples were classified right."""
        if not self.dist.is_distributed:
            batch = _to(batch, self.device)
            logits = self.forward(batch)
            loss = self._loss(logits, batch.labels)
            (loss / self.config.grad_accumulation).backward()
            return loss.item(), int((logits.argmax(-1) == batch.labels).sum())
        dist = self.dist
        share, factor = share_of_batch(batch, dist.rank, dist.world_size, self.class_weights)
        share = _to(share, self.device)
        with nullcontext() if step_ends else self.network.no_sync():
            logits = self.forward(share, self.network)
            loss = factor * self._loss(logits, share.labels, reduction="sum")
            (loss / self.config.grad_accumulation).backward()
        correct = int((logits.argmax(-1) == share.labels).sum()) if factor else 0
        mean_loss, total_correct = dist.sum([loss.item() / dist.world_size, correct])
        return mean_loss, int(total_correct)

    def _optimizer_step(self) -> None:
        if self.config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.trainable.values(), self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1

    def _end_of_epoch(self, epoch: int, train_loss: float, train_accuracy: float) -> None:
        state, config = self.state, self.config
        if config.book_loop:  # the book measures accuracy on the first 5 batches of each loader
            _, train_accuracy, _ = self._measure(self._train_batches(-1), config.eval_batches)
            self.logger.record(
                Record(
                    "train", epoch + 1, state.step, state.examples_seen, train_loss, train_accuracy
                )
            )
            message = f"Training accuracy: {train_accuracy * 100:.2f}% | "
        else:
            self.logger.record(
                Record(
                    "train", epoch + 1, state.step, state.examples_seen, train_loss, train_accuracy
                )
            )
            message = (
                f"epoch {epoch + 1}/{config.epochs}: "
                f"train loss {train_loss:.3f} acc {train_accuracy:.2%}"
            )
        if self.val_data is None:
            self.logger.say(message)
            return
        val = self._record_eval("validation", self._eval_batches(self.val_data), epoch + 1)
        improved = self._track_best(epoch, val)
        if config.book_loop:
            self.logger.say(message + f"Validation accuracy: {val.accuracy * 100:.2f}%")
        else:
            self.logger.say(
                message + f" | val loss {val.loss:.3f} acc {val.accuracy:.2%} "
                f"macro-F1 {val.macro_f1:.4f}" + (" (best)" if improved else "")
            )

    def _track_best(self, epoch: int, val: Record) -> bool:
        value = getattr(val, self.config.metric)
        better = self.state.best_value is None or (
            value < self.state.best_value
            if self.config.metric == "loss"
            else value > self.state.best_value
        )
        if better:
            self.state.best_value, self.state.best_epoch = value, epoch + 1
            self.state.epochs_without_improvement = 0
            self.best_weights = {n: p.detach().clone() for n, p in self.trainable.items()}
        else:
            self.state.epochs_without_improvement += 1
        return better

    def _should_stop(self) -> bool:
        patience = self.config.early_stopping
        return patience is not None and self.state.epochs_without_improvement >= patience

    def run(self, logger: Logger) -> None:
        self.logger = logger
        if self.config.book_loop and self.state.epochs_done == 0:
            torch.manual_seed(self.config.seed)  # as the book does right before training
        start = time.perf_counter() - self.state.train_seconds
        for epoch in range(self.state.epochs_done, self.config.epochs):
            train_loss, train_accuracy = self._epoch(epoch)
            self._end_of_epoch(epoch, train_loss, train_accuracy)
            self.state.epochs_done = epoch + 1
            self.state.train_seconds = time.perf_counter() - start
            if self._should_stop():
                self.logger.say(
                    f"early stopping: no better validation {self.config.metric} "
                    f"for {self.config.early_stopping} epoch(s)"
                )
                break
            if self.state.epochs_done < self.config.epochs and self.dist.is_main:
                save_checkpoint(self)
        if self.config.keep == "best" and self.best_weights is not None:
            with torch.no_grad():
                for name, param in self.trainable.items():
                    param.copy_(self.best_weights[name])
        if self.config.book_loop:
            self.logger.say(f"Training completed in {self.state.train_seconds / 60:.2f} minutes.")


def _macro_f1(truth: torch.Tensor, predicted: torch.Tensor) -> float:
    scores = []
    for c in torch.unique(torch.cat([truth, predicted])):
        tp = int(((predicted == c) & (truth == c)).sum())
        fp = int(((predicted == c) & (truth != c)).sum())
        fn = int(((predicted != c) & (truth == c)).sum())
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return float(np.mean(scores))


# -- checkpoints ----------------------------------------------------------------------------------
def save_checkpoint(trainer: Trainer) -> None:
    """Weights that train, optimizer moments, best weights, RNG and loop state: safetensors +
    JSON, written atomically, so ``--resume`` continues exactly where the epoch ended."""
    folder = trainer.run_dir / CHECKPOINT_DIR
    tensors = {f"param/{n}": p.detach().contiguous() for n, p in trainer.trainable.items()}
    if trainer.best_weights is not None:
        tensors.update({f"best/{n}": t.contiguous() for n, t in trainer.best_weights.items()})
    optimizer_state = trainer.optimizer.state_dict()
    for index, moments in optimizer_state["state"].items():
        tensors.update(
            {f"optim/{index}/{k}": v.reshape(-1) if v.dim() == 0 else v for k, v in moments.items()}
        )
    tensors["rng/torch"] = torch.get_rng_state()
    meta = {
        "state": asdict(trainer.state),
        "param_groups": optimizer_state["param_groups"],
        "scheduler": trainer.scheduler.state_dict(),  # a function schedule stores as None
    }
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "state.safetensors") as tmp:
        save_file(tensors, str(tmp))
    write_text_atomic(folder / "state.json", json.dumps(meta))


def read_checkpoint(run_dir: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The checkpoint's loop state (JSON) and tensors."""
    folder = run_dir / CHECKPOINT_DIR
    if not (folder / "state.json").is_file():
        raise GptclfError(f"{run_dir}: no checkpoint to resume from")
    meta = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    return meta, load_file(str(folder / "state.safetensors"))


def load_checkpoint(trainer: Trainer, checkpoint: tuple[dict, dict[str, torch.Tensor]]) -> None:
    """Put the trainer where ``read_checkpoint``'s checkpoint left it."""
    meta, tensors = checkpoint
    with torch.no_grad():
        for name, param in trainer.trainable.items():
            param.copy_(tensors[f"param/{name}"])
    best = {n: tensors[f"best/{n}"] for n in trainer.trainable if f"best/{n}" in tensors}
    trainer.best_weights = best or None
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value.reshape(()) if name == "step" else value
    trainer.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    trainer.scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng/torch"])
    trainer.state = TrainerState(**meta["state"])


# -- the run --------------------------------------------------------------------------------------
def new_run_dir(model: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{Path(model).name}"


def _save_config(run_dir: Path, config: TrainConfig, source: DataSource) -> None:
    data = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(source).items()}
    write_text_atomic(
        run_dir / TRAIN_CONFIG_FILE, json.dumps({"train": asdict(config), "data": data}, indent=2)
    )


def read_train_config(run_dir: Path) -> tuple[TrainConfig, DataSource]:
    path = run_dir / TRAIN_CONFIG_FILE
    if not path.is_file():
        raise GptclfError(f"{run_dir}: not a gptclf run folder (no {TRAIN_CONFIG_FILE})")
    stored = json.loads(path.read_text(encoding="utf-8"))
    train = stored["train"]
    train["lora_targets"] = tuple(train["lora_targets"])
    data = {
        k: Path(v) if k in ("data", "train", "validation", "test") and v else v
        for k, v in stored["data"].items()
    }
    data["fractions"] = tuple(data["fractions"])
    return TrainConfig(**train), DataSource(**data)


def _open_run_dir(run_dir: Path, config: TrainConfig, source: DataSource, resume: bool) -> None:
    """Create the run folder with the training config, or check that it may be used."""
    if not resume and run_dir.exists() and any(run_dir.iterdir()):
        raise GptclfError(
            f"{run_dir} already exists and is not empty; "
            "choose another --out or continue it with --resume"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        _save_config(run_dir, config, source)


def train(
    config: TrainConfig,
    source: DataSource,
    run_dir: Path,
    *,
    resume: bool = False,
    quiet: bool = False,
    dist: DistributedContext = LOCAL,
) -> dict:
    """Train, evaluate on the test split once, and write the run folder; returns metrics.json.
    With several ranks (``dist``), every rank trains on its share of each global batch and
    returns the same metrics; only the main rank writes files and prints."""
    dist.on_main(lambda: _open_run_dir(run_dir, config, source, resume))
    began = time.perf_counter()
    prepared = prepare(config, source, run_dir, dist)
    prepare_seconds = time.perf_counter() - began
    quiet = quiet or not dist.is_main
    trainer = Trainer(config, prepared, run_dir, quiet, dist)
    if resume:
        load_checkpoint(trainer, dist.on_main(lambda: read_checkpoint(run_dir)))
    logger = Logger(run_dir if dist.is_main else None, quiet, trainer.state)
    trainable, total = count_parameters(prepared.classifier)
    logger.say(prepared.summary)
    logger.say(f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)")
    trainer.run(logger)
    results = _final_results(trainer, prepared, (trainable, total), prepare_seconds)
    if dist.is_main:
        _write_run_folder(trainer, prepared, config, run_dir, logger, results)
    return results


def _final_results(
    trainer: Trainer, prepared: Prepared, parameters: tuple[int, int], prepare_seconds: float
) -> dict:
    """metrics.json: the run's figures and the validation and test metrics."""
    labels = prepared.splits.labels
    results = {
        "best_epoch": trainer.state.best_epoch,
        "epochs_run": trainer.state.epochs_done,
        "prepare_seconds": round(prepare_seconds, 2),  # load, tokenize, run the frozen prefix
        "frozen_prefix_blocks": prepared.start_block,
        "train_seconds": round(trainer.state.train_seconds, 2),
        "trainable_parameters": parameters[0],
        "total_parameters": parameters[1],
    }
    for name in ("validation", "test"):
        if name in prepared.datasets:
            data = prepared.datasets[name]
            probabilities = trainer.logits(data).softmax(-1).numpy()
            results[name] = compute_metrics(list(data.labels), probabilities, labels.names)
    return results


def _write_run_folder(
    trainer: Trainer,
    prepared: Prepared,
    config: TrainConfig,
    run_dir: Path,
    logger: Logger,
    results: dict,
) -> None:
    """The test metrics shown, plots, the trained model and metrics.json; the checkpoint goes."""
    if "test" in results:
        logger.say("test set:\n" + format_metrics(results["test"]))
        plot_confusion_matrix(results["test"], run_dir / "confusion_matrix.png")
    plot_training_curves(trainer.state.records, run_dir)
    _save_model(trainer, prepared, config, run_dir)
    write_metrics(results, run_dir / "metrics.json")
    shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)


def _save_model(trainer: Trainer, prepared: Prepared, config: TrainConfig, run_dir: Path) -> None:
    model = prepared.classifier.model
    standalone = config.full or config.init == "random"
    lora = None
    if config.trainable == "lora":
        lora = {
            "rank": config.lora_rank,
            "alpha": config.lora_alpha,
            "targets": list(config.lora_targets),
            "blocks": _lora_blocks(config),
        }
        if standalone:
            from gptclf.lora import merge_lora

            merge_lora(model)
            lora = None
    tokenizer = prepared.pretrained.tokenizer
    special = {"eos_id": tokenizer.eos_id, "bos_id": tokenizer.bos_id, "pad_id": tokenizer.pad_id}
    run_config = RunConfig(
        base_model=config.model,
        base_sha256=None if config.init == "random" else prepared.pretrained.weights_sha256(),
        family=family_of(model),
        architecture=asdict(model.cfg),
        labels=prepared.splits.labels.to_json(),
        pooling=config.pooling,
        attend_to_padding=config.attend_to_padding,
        max_length=prepared.max_length,
        pad_to=prepared.pad_to,
        truncate=config.truncate,
        tokenizer="gpt2" if not isinstance(tokenizer, HFTokenizer) else tokenizer.name,
        trainable=config.trainable,
        lora=lora,
        standalone=standalone,
        precision=config.precision,
        template=config.template,
        extra={"tokenizer_special_ids": special, "train": asdict(config)},
    )
    save_run_model(run_dir, prepared.classifier, run_config, tokenizer, list(trainer.trainable))
