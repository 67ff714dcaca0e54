"""The trained model on disk: ``config.json`` (base model and its SHA-256, architecture, labels,
lengths, tokenizer, and the recipe it was trained with) and ``classifier.safetensors``, holding
only the tensors training changed (megabytes for a last-block or LoRA model) or, when
standalone, every tensor."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from safetensors.torch import save_file

from gptclf.atomic import atomic_path, write_text_atomic
from gptclf.classifier import ClassifierSpec, SequenceClassifier, build_classifier
from gptclf.data.labels import LabelMap
from gptclf.data.tokenized import frame, template_ids
from gptclf.decision import Decision
from gptclf.errors import GptclfError
from gptclf.lora import merge_lora
from gptclf.models import FAMILIES, LanguageModel
from gptclf.precision import frozen_linears, resolve_precision, set_frozen_precision
from gptclf.recipe import TrainConfig, recipe
from gptclf.run import checks
from gptclf.run.folder import RunDir
from gptclf.tokenizers import HFTokenizer, Tokenizer, gpt2_tokenizer, with_prefix
from gptclf.trainable import set_trainable, trainable_parameters


@dataclass
class RunConfig:
    """``config.json``: what loading the model needs besides its weights. How the model reads
    texts (pooling, truncation, template, precision, LoRA) is the recipe's, kept whole in
    ``train``."""

    base_model: str  # registry name or path of the pretrained weights
    base_sha256: str | None  # None for a randomly initialised base (always standalone)
    standalone: bool  # every tensor is in the weights file
    family: str
    architecture: dict
    labels: dict
    max_length: int  # tokens kept per text
    pad_to: int | None  # every batch padded to this many tokens (the book's way)
    tokenizer: str  # "gpt2", or the name of a Hugging Face tokenizer
    special_ids: dict  # the tokenizer's eos_id, bos_id and pad_id
    train: dict  # the resolved recipe
    prefix_ids: list = field(default_factory=list)  # put before every text (none in older runs)
    weights: dict | None = None  # the weights file's SHA-256 and tensor shapes, once written
    ensemble: dict | None = None  # the blended baseline's weight and files' SHA-256, if any
    decision: dict | None = None  # the temperature and threshold chosen on validation, if any

    def __post_init__(self) -> None:
        """Every field checked, so that a damaged or edited config fails here, naming it."""
        checks.check_base(self.base_model, self.base_sha256, self.standalone)
        family = checks.checked_family(self.family)
        if isinstance(self.architecture, dict):
            self.architecture = family.upgrade(self.architecture)
        checks.check_architecture(family, self.architecture)
        self._labels = checks.checked_labels(self.labels)
        architecture = self.architecture
        checks.check_lengths(self.max_length, self.pad_to, architecture["context_length"])
        checks.check_tokenizer(self.tokenizer, self.special_ids, architecture["vocab_size"])
        checks.check_prefix(self.prefix_ids, architecture["vocab_size"])
        if not isinstance(self.train, dict):
            raise GptclfError(f"train must be a mapping of options, not {self.train!r}")
        self._recipe = recipe(source="train", **self.train)
        checks.check_ensemble(self.ensemble, len(self._labels))
        self._decision = Decision.from_json(self.decision)
        self._decision.check_fits(len(self._labels), self._labels.multi_label)

    @property
    def recipe(self) -> TrainConfig:
        return self._recipe

    @property
    def label_map(self) -> LabelMap:
        return self._labels

    @property
    def decision_rule(self) -> Decision:
        """How the run calibrates its probabilities and decides."""
        return self._decision

    @property
    def tokens_kept(self) -> int:
        """How many tokens of a text (with its template) the model reads: as many as in the
        longest training text where batches are padded to it, else ``max_length``."""
        return self.pad_to or self.max_length

    @property
    def pooling(self) -> str:
        return self.recipe.pooling

    @property
    def template(self) -> str | None:
        return self.recipe.template

    def classifier_spec(self) -> ClassifierSpec:
        """The classifier to build around the base model; a standalone model holds its LoRA
        adapters merged into its weights."""
        return self.recipe.classifier_spec(len(self.label_map), with_lora=not self.standalone)


def save_run_model(
    run_dir: RunDir,
    classifier: SequenceClassifier,
    config: RunConfig,
    tokenizer: Tokenizer,
    changed: list[str],
) -> None:
    """Write the weights (``changed`` tensors only, or all when ``config.standalone``) and the
    config, each atomically; the config goes last so a complete config means a complete model."""
    if config.standalone:
        merge_lora(classifier.language_model)
    state = classifier.language_model.state_dict()
    names = sorted(state) if config.standalone else sorted(changed)
    # float32 throughout: frozen layers that ran in bfloat16 hold it exactly
    tensors = {name: state[name].detach().float().contiguous() for name in names}
    with atomic_path(run_dir.weights) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    if config.standalone and isinstance(tokenizer, HFTokenizer):
        write_text_atomic(run_dir.tokenizer, tokenizer.backend.to_str())
    config.weights = checks.weights_record(run_dir.weights, tensors)
    write_text_atomic(run_dir.model_config, json.dumps(asdict(config), indent=2))


def read_run_config(run_dir: RunDir) -> RunConfig:
    """The run's ``config.json``, every field checked."""
    path = run_dir.model_config
    if not path.is_file():
        raise GptclfError(f"{run_dir}: not a trained model (no {path.name})")
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GptclfError(f"{path}: not a gptclf model config ({exc})") from exc
    known = {f.name for f in fields(RunConfig)}
    if not isinstance(stored, dict) or set(stored) - known or {"train", "weights"} - set(stored):
        raise GptclfError(
            f"{path}: not a model config of this gptclf (fields: {', '.join(sorted(known))})"
        )
    try:
        return RunConfig(**stored)
    except TypeError as exc:
        raise GptclfError(f"{path}: not a gptclf model config ({exc})") from exc
    except GptclfError as exc:
        raise GptclfError(f"{path}: {exc}") from exc


def load_run_model(
    run_dir: RunDir, precision: str | None = None
) -> tuple[SequenceClassifier, Tokenizer, RunConfig]:
    """The classifier of a run folder, on its base weights unless it is standalone, once the
    config and the weights are shown to be what training wrote; LoRA adapters are merged into
    the weights; its frozen layers set to ``precision`` (default: the run's)."""
    config = read_run_config(run_dir)
    saved = checks.verified_weights(run_dir.weights, config.weights)
    model, tokenizer = _base(run_dir, config)
    tokenizer = with_prefix(tokenizer, config.prefix_ids)  # as the run was trained
    try:
        classifier = build_classifier(model, config.classifier_spec())
        frame([[0]], config.tokens_kept, around=template_ids(tokenizer, config.template))
    except GptclfError as exc:
        raise GptclfError(f"{run_dir.model_config}: {exc}") from exc
    set_trainable(classifier, config.recipe.trainable)
    classifier.cached_depth = classifier.frozen_prefix() if config.recipe.caches_prefix() else 0
    frozen = frozen_linears(classifier)
    if config.standalone:
        expected = set(model.state_dict())
    else:
        expected = set(trainable_parameters(classifier))
    classifier.requires_grad_(False)
    checks.check_trained_tensors(run_dir.weights, saved, expected)
    _load_saved(model, saved, run_dir.weights, assign=config.standalone)
    merge_lora(model)
    set_frozen_precision(
        classifier, frozen, resolve_precision(precision or config.recipe.precision)
    )
    classifier.eval()
    return classifier, tokenizer, config


def _base(run_dir: RunDir, config: RunConfig) -> tuple[LanguageModel, Tokenizer]:
    """The model the trained tensors go into, and the tokenizer: the verified base model, or
    for a standalone model its architecture with storage-less weights."""
    from gptclf.registry import load_pretrained

    if config.standalone:
        model = FAMILIES[config.family].build(config.architecture)
        return model, _standalone_tokenizer(run_dir, config)
    pretrained = load_pretrained(config.base_model)
    if pretrained.weights_sha256() != config.base_sha256:
        raise GptclfError(
            f"{run_dir} was trained on {config.base_model} with SHA-256 {config.base_sha256}, "
            f"but {pretrained.weights_path} has {pretrained.weights_sha256()}; "
            "use the same base weights (or train with --full for a standalone model)"
        )
    family = FAMILIES[config.family]
    if pretrained.model.cfg != family.config(**config.architecture):  # fields added since: defaults
        raise GptclfError(
            f"{run_dir.model_config}: architecture differs from {config.base_model}'s"
        )
    return pretrained.model, pretrained.tokenizer


def _standalone_tokenizer(run_dir: RunDir, config: RunConfig) -> Tokenizer:
    if config.tokenizer == "gpt2":
        return gpt2_tokenizer()
    if not run_dir.tokenizer.is_file():
        raise GptclfError(f"{run_dir.tokenizer}: file not found")
    return HFTokenizer.from_file(run_dir.tokenizer, **config.special_ids)


def _load_saved(model: torch.nn.Module, saved: dict, source: Path, assign: bool) -> None:
    expected = model.state_dict()
    for name, tensor in saved.items():
        if tensor.shape != expected[name].shape:
            raise GptclfError(
                f"{source}: tensor {name} has shape {tuple(tensor.shape)}, "
                f"the model expects {tuple(expected[name].shape)}"
            )
    model.load_state_dict(saved, strict=assign, assign=assign)
