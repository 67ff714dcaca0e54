"""The trained model on disk: ``config.json`` (base model and its SHA-256, architecture, labels,
pooling, lengths, tokenizer) and ``classifier.safetensors``, holding only the tensors training
changed (megabytes for a last-block or LoRA model) or, when standalone, every tensor."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from gptclf.atomic import atomic_path, write_text_atomic
from gptclf.classifier import SequenceClassifier
from gptclf.data.labels import LabelMap
from gptclf.errors import GptclfError
from gptclf.models import GPTConfig, GPTModel, LlamaConfig, LlamaModel
from gptclf.tokenizers import HFTokenizer, Tokenizer, gpt2_tokenizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "classifier.safetensors"
TOKENIZER_FILE = "tokenizer.json"
FAMILIES = {"gpt2": (GPTModel, GPTConfig), "llama": (LlamaModel, LlamaConfig)}


@dataclass
class RunConfig:
    base_model: str  # registry name or path of the pretrained weights
    base_sha256: str | None  # None for a randomly initialised base (always standalone)
    family: str
    architecture: dict
    labels: dict
    pooling: str
    attend_to_padding: bool
    max_length: int
    pad_to: int | None
    truncate: str
    tokenizer: str
    trainable: str
    lora: dict | None = None
    standalone: bool = False
    precision: str = "auto"  # resolved on the machine that loads the model
    template: str | None = None  # text put around every message, with a {text} slot
    extra: dict = field(default_factory=dict)  # training settings and data, for the record

    @property
    def label_map(self) -> LabelMap:
        return LabelMap.from_json(self.labels)


def family_of(model: torch.nn.Module) -> str:
    return next(name for name, (cls, _) in FAMILIES.items() if isinstance(model, cls))


def save_run_model(
    run_dir: Path,
    classifier: SequenceClassifier,
    config: RunConfig,
    tokenizer: Tokenizer,
    changed: list[str],
) -> None:
    """Write the weights (``changed`` tensors only, or all when ``config.standalone``) and the
    config, each atomically; the config goes last so a complete config means a complete model."""
    state = classifier.model.state_dict()
    names = sorted(state) if config.standalone else sorted(changed)
    tensors = {name: state[name].detach().contiguous() for name in names}
    with atomic_path(run_dir / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    if config.standalone and isinstance(tokenizer, HFTokenizer):
        write_text_atomic(run_dir / TOKENIZER_FILE, tokenizer.backend.to_str())
    write_text_atomic(run_dir / CONFIG_FILE, json.dumps(asdict(config), indent=2))


def read_run_config(run_dir: Path) -> RunConfig:
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        raise GptclfError(f"{run_dir}: not a trained model (no {CONFIG_FILE})")
    try:
        return RunConfig(**json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError) as exc:
        raise GptclfError(f"{path}: not a gptclf model config ({exc})") from exc


def _standalone_tokenizer(run_dir: Path, config: RunConfig) -> Tokenizer:
    if config.tokenizer == "gpt2":
        return gpt2_tokenizer()
    special = config.extra.get("tokenizer_special_ids", {})
    return HFTokenizer.from_file(run_dir / TOKENIZER_FILE, **special)


def load_run_model(run_dir: Path) -> tuple[SequenceClassifier, Tokenizer, RunConfig]:
    """The classifier of a run folder, on its base weights unless it is standalone; LoRA
    adapters are merged into the weights."""
    from gptclf.lora import apply_lora, merge_lora
    from gptclf.registry import load_pretrained

    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    weights_path = run_dir / WEIGHTS_FILE
    if not weights_path.is_file():
        raise GptclfError(f"{run_dir}: {WEIGHTS_FILE} is missing")
    saved = load_file(str(weights_path))
    if config.standalone:
        model_class, config_class = FAMILIES[config.family]
        with torch.device("meta"):
            model = model_class(config_class(**config.architecture))
        tokenizer = _standalone_tokenizer(run_dir, config)
    else:
        pretrained = load_pretrained(config.base_model)
        if pretrained.weights_sha256() != config.base_sha256:
            raise GptclfError(
                f"{run_dir} was trained on {config.base_model} with SHA-256 {config.base_sha256}, "
                f"but {pretrained.weights_path} has {pretrained.weights_sha256()}; "
                "use the same base weights (or train with --full for a standalone model)"
            )
        model, tokenizer = pretrained.model, pretrained.tokenizer
    classifier = SequenceClassifier(
        model, len(config.label_map), config.pooling, config.attend_to_padding
    )
    if config.lora:
        apply_lora(model, **config.lora)
    _load_saved(model, saved, weights_path, assign=config.standalone)
    if config.lora:
        merge_lora(model)
    classifier.eval()
    return classifier, tokenizer, config


def _load_saved(model: torch.nn.Module, saved: dict, source: Path, assign: bool) -> None:
    expected = model.state_dict()
    unknown = sorted(set(saved) - set(expected))
    if unknown:
        raise GptclfError(f"{source}: tensors {', '.join(unknown[:3])} do not fit this model")
    for name, tensor in saved.items():
        if tensor.shape != expected[name].shape:
            raise GptclfError(
                f"{source}: tensor {name} has shape {tuple(tensor.shape)}, "
                f"the model expects {tuple(expected[name].shape)}"
            )
    if assign and set(saved) != set(expected):
        missing = sorted(set(expected) - set(saved))
        raise GptclfError(f"{source}: missing tensors {', '.join(missing[:3])}")
    model.load_state_dict(saved, strict=assign, assign=assign)
