"""The training recipe: every option of ``gptclf train`` (besides the data), declared once with
its default, choices and help, and the presets that set many at once."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path

from gptclf.atomic import write_text_atomic
from gptclf.classifier import POOLINGS, ClassifierSpec
from gptclf.data.dataset import DataSource
from gptclf.data.tokenized import PAIR_SLOT, TEXT_SLOT, TRUNCATE_SIDES, is_template
from gptclf.decision import CALIBRATIONS, DECIDE_PATTERN, DECIDE_SHOWN
from gptclf.errors import GptclfError
from gptclf.options import as_plain, at_least, build, option, read_config_file
from gptclf.precision import PRECISIONS
from gptclf.registry import DEFAULT_MODEL
from gptclf.trainable import TRAINABLE_PATTERN, TRAINABLE_SHOWN

model_option = partial(option, group="model")
optimisation_option = partial(option, group="optimisation")
output_option = partial(option, group="evaluation and output")
DEFAULT_MAX_LENGTH = 512
CHUNKS = ("mean", "max")  # how the logits of a text's chunks combine


def _shell_text(text: str) -> str:
    """A template typed in a shell: the two characters backslash and n make a newline."""
    return text.replace("\\n", "\n")


@dataclass
class TrainConfig:
    model: str = model_option(
        DEFAULT_MODEL,
        "model name or path (--weights PATH: the same)",
        flags=("--model", "--weights"),
    )
    init: str = model_option(
        "pretrained",
        "random: the architecture with random weights",
        choices=("pretrained", "random"),
    )
    pooling: str = model_option("last-token+mean", "which hidden states are read", choices=POOLINGS)
    head_bias: bool = model_option(
        True,
        "no bias in the class head, as in Hugging Face's *ForSequenceClassification: what "
        "gptclf export --format hf needs to carry a Llama-like classifier exactly",
        flags=("--no-head-bias",),
    )
    depth: int | None = model_option(
        None,
        "read the features after the bottom N blocks; the blocks above never run (default: all)",
        **at_least(1),
    )
    concat_depths: tuple[int, ...] | None = model_option(
        None,
        "also read the features after these bottom blocks, side by side with the top's "
        "(blocks from the lowest up run every epoch)",
        valid=lambda depths: all(d >= 1 for d in depths),
        rule="block counts of 1 or more",
        metavar="N",
    )
    trainable: str = model_option(
        "last-block",
        TRAINABLE_SHOWN.replace(", ", " | "),
        valid=lambda v: re.fullmatch(TRAINABLE_PATTERN, v) is not None,
        rule=f"one of {TRAINABLE_SHOWN}",
    )
    lora_rank: int = model_option(8, "LoRA rank", **at_least(1))
    lora_alpha: float = model_option(16.0, "LoRA scaling numerator")
    lora_targets: tuple[str, ...] = model_option(
        ("qv",), "qv | attention | mlp | all | module-name suffixes"
    )
    lora_blocks: int | None = model_option(
        None, "LoRA adapters in the top N blocks only (default: all)"
    )
    attend_to_padding: bool = model_option(
        False, "no attention mask on padded batches (the book's way)"
    )
    epochs: int = optimisation_option(4, "passes over the training data", **at_least(1))
    batch_size: int = optimisation_option(8, "texts per batch", **at_least(1))
    grad_accumulation: int = optimisation_option(1, "batches per optimizer step", **at_least(1))
    lr: float = optimisation_option(
        5e-4, "peak learning rate", valid=lambda v: v > 0, rule="positive"
    )
    weight_decay: float = optimisation_option(0.1, "AdamW weight decay")
    decay: str = optimisation_option(
        "all", "weight decay on every parameter, or on matrices only", choices=("all", "matrices")
    )
    label_smoothing: float = optimisation_option(
        0.0, "cross-entropy label smoothing", valid=lambda v: 0 <= v < 1, rule="in [0, 1)"
    )
    warmup: float = optimisation_option(
        0.1, "fraction of steps warming up linearly", valid=lambda v: 0 <= v < 1, rule="in [0, 1)"
    )
    schedule: str = optimisation_option(
        "cosine", "learning-rate decay after warm-up", choices=("constant", "linear", "cosine")
    )
    max_grad_norm: float | None = optimisation_option(
        1.0, "clip gradients to this norm (0: no clipping)"
    )
    class_weights: str | None = optimisation_option(
        None, "weigh the loss by inverse class frequency", choices=(None, "balanced")
    )
    seed: int = optimisation_option(123, "seed of the head, adapters and batch order")
    max_length: int | None = optimisation_option(
        None,
        f"tokens kept per text (default: the context, at most {DEFAULT_MAX_LENGTH})",
        **at_least(1),
    )
    pad_to: str | None = optimisation_option(
        None, "pad every batch to the longest training text", choices=(None, "longest")
    )
    truncate: str = optimisation_option(
        "head", "which part of a too-long text to keep", choices=TRUNCATE_SIDES
    )
    chunks: str | None = optimisation_option(
        None,
        "read a too-long text whole instead, in chunks that overlap by a quarter, and combine "
        "the chunks' class logits by their mean or maximum",
        choices=(None, *CHUNKS),
    )
    template: str | None = optimisation_option(
        None,
        'text around each message, e.g. "SMS: {text}\\nSpam?"; for text pairs also {pair}, '
        'e.g. "Question: {text}\\nAnswer: {pair}\\nRelevant?" (pairs\' default: '
        '"{text}\\n\\n{pair}")',
        parse=_shell_text,
        valid=is_template,
        rule=f"text with {TEXT_SLOT} in it once, and {PAIR_SLOT} at most once after it",
    )
    drop_last: bool = optimisation_option(False, "drop the last, smaller batch of an epoch")
    precision: str = optimisation_option(
        "auto", "auto: bfloat16 where the CPU computes it natively", choices=PRECISIONS
    )
    cache: bool = optimisation_option(
        True,
        "run the frozen bottom blocks every epoch instead of caching them",
        flags=("--no-cache",),
    )
    store: bool = optimisation_option(
        True,
        "compute the frozen-prefix states anew instead of reading and keeping them in gptclf's "
        "on-disk store (see gptclf cache info)",
        flags=("--no-store",),
    )
    ensemble: str = output_option(
        "auto",
        "blend the class probabilities with the TF-IDF baseline's (fitted on the training "
        "split); auto: where a validation split or --ensemble-weight can weigh the blend",
        choices=("auto", "baseline", "none"),
    )
    ensemble_weight: float | None = output_option(
        None,
        "the model's weight in the blend with the baseline (default: chosen on validation)",
        valid=lambda v: 0 <= v <= 1,
        rule="in [0, 1]",
    )
    decide: str = output_option(
        "argmax",
        "how two classes are decided: the more probable, or by a threshold on p(second class) "
        "chosen on the validation split for the best F1, the best precision with recall at "
        "least R, or the best recall with precision at least P (e.g. precision@0.99)",
        valid=lambda v: re.fullmatch(DECIDE_PATTERN, v) is not None,
        rule=f"one of {DECIDE_SHOWN}, R and P in (0, 1]",
    )
    calibrate: str | None = output_option(
        None,
        "calibrate the probabilities: a temperature dividing the logits, fitted on the "
        "validation split (before --decide chooses its threshold)",
        choices=CALIBRATIONS,
    )
    eval_every: int | None = output_option(
        None, "also evaluate every N optimizer steps", **at_least(1)
    )
    eval_batches: int | None = output_option(
        None, "evaluate on the first N batches only", **at_least(1)
    )
    early_stopping: int | None = output_option(
        None,
        "stop after PATIENCE epochs without a better validation metric",
        **at_least(1),
        metavar="PATIENCE",
    )
    metric: str = output_option(
        "accuracy",
        "validation metric of --early-stopping and --keep best",
        choices=("accuracy", "macro_f1", "loss"),
    )
    keep: str = output_option(
        "last",
        "weights kept at the end: the last epoch's or the best validation epoch's",
        choices=("best", "last"),
    )
    full: bool = output_option(False, "write every tensor: a standalone model file")
    compare_baseline: bool = output_option(
        False,
        "also fit the TF-IDF baseline on the training split (eval: the run's) and show its "
        "figures beside the model's",
    )
    report_to: str | None = output_option(
        None,
        "also report the options, every logged figure, the final metrics and the plots to "
        "TensorBoard (RUN/tensorboard/; pip install 'gptclf[tensorboard]') or MLflow "
        "(MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_NAME; pip install 'gptclf[mlflow]')",
        choices=(None, "tensorboard", "mlflow"),
    )
    book_loop: bool = option(
        False, "shuffle with the global RNG and log exactly as chapter 6 does", cli=False
    )

    def classifier_spec(self, n_classes: int, with_lora: bool = True) -> ClassifierSpec:
        """The classifier this recipe builds for ``n_classes`` (its LoRA adapters left out
        where they are already merged into the weights)."""
        lora = self.lora() if with_lora else None
        return ClassifierSpec(
            n_classes,
            self.pooling,
            self.attend_to_padding,
            lora,
            self.depth,
            self.concat_depths or (),
            self.head_bias,
        )

    def lora(self) -> dict | None:
        """``apply_lora``'s settings where LoRA trains (its blocks counted from the top; None:
        all), else None."""
        if self.trainable != "lora":
            return None
        return {
            "rank": self.lora_rank,
            "alpha": self.lora_alpha,
            "targets": list(self.lora_targets),
            "blocks": None if self.lora_blocks is None else list(range(-self.lora_blocks, 0)),
        }

    def caches_prefix(self) -> bool:
        """Whether the frozen-prefix cache may run: it is enabled and the batches are
        dynamically padded with an attention mask (the book's fixed padding reads pad tokens)."""
        return self.cache and not self.attend_to_padding and not self.pad_to


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
        ensemble="none",
    ),
}


def max_length_within(max_length: int | None, context_length: int) -> int:
    """Tokens kept per text: ``max_length``, or else DEFAULT_MAX_LENGTH, within the context."""
    return min(max_length or DEFAULT_MAX_LENGTH, context_length)


def recipe(preset: str | None = None, source: str | None = None, **values) -> TrainConfig:
    """A preset's settings (if any) with ``values`` on top, checked; a wrong or unknown option is
    an error naming ``source`` (the file it came from), or its flag."""
    if preset is not None and preset not in PRESETS:
        raise GptclfError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    return build(TrainConfig, {**PRESETS.get(preset, {}), **values}, source)


def write_options(path: Path, config: TrainConfig, source: DataSource) -> None:
    """Every option of a run, recipe and data, as YAML that ``read_options`` reads back."""
    import yaml

    values = {**as_plain(config), **as_plain(source)}
    write_text_atomic(path, yaml.safe_dump(values, sort_keys=False, allow_unicode=True))


def read_options(path: Path) -> tuple[dict, dict]:
    """The recipe's and the data's options in a YAML or JSON file, each by name; a name that is
    neither's is an error."""
    values = read_config_file(path)
    recipe_names = {f.name for f in fields(TrainConfig)}
    data_names = {f.name for f in fields(DataSource)}
    unknown = sorted(set(values) - recipe_names - data_names)
    if unknown:
        raise GptclfError(f"{path}: unknown option(s) {', '.join(unknown)}")
    return (
        {k: v for k, v in values.items() if k in recipe_names},
        {k: v for k, v in values.items() if k in data_names},
    )


def options_of_run(path: Path) -> tuple[TrainConfig, DataSource]:
    """The recipe and data of a run, from the options file ``write_options`` wrote."""
    recipe_values, data_values = read_options(path)
    return recipe(source=str(path), **recipe_values), build(DataSource, data_values, str(path))
