"""Classifiers to and from other tools. ``gptclf export``: a run as a Hugging Face folder that
``transformers`` loads as ``*ForSequenceClassification`` (``hf``), or as an ONNX graph of the
classifier with its tokenizer (``onnx``); what the target cannot express is refused with the
reason. ``gptclf import``: a ``*ForSequenceClassification`` folder as a run folder that
``eval``, ``predict`` and ``serve`` use."""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer as HFTokenizerBackend

from gptclf.classifier import SequenceClassifier, build_classifier
from gptclf.data.labels import LabelMap
from gptclf.decision import Decision
from gptclf.errors import GptclfError
from gptclf.models import GPTConfig, LlamaConfig, family_of
from gptclf.onnx_runtime import export_graph
from gptclf.options import as_plain
from gptclf.recipe import DEFAULT_MAX_LENGTH, max_length_within, recipe
from gptclf.run import RunConfig, RunDir, load_run_model
from gptclf.run.checks import checked_labels
from gptclf.run.model import save_run_model
from gptclf.tokenizers import HFTokenizer, Tokenizer, gpt2_hf_tokenizer, set_prefix
from gptclf.weights import load_local
from gptclf.weights.files import read_config, read_tensor
from gptclf.weights.huggingface import HF_ACTIVATIONS, hf_model_type, llama_names

FORMATS = ("hf", "onnx")
LABEL_VALUES = "gptclf_label_values"  # class i's label in the training data, for import
PROBLEM_TYPES = {False: "single_label_classification", True: "multi_label_classification"}
DECISION = "gptclf_decision"  # the threshold on p(class 1) and its rule (temperature: folded in)
KEPT_SIDE = {"head": "right", "tail": "left"}  # our --truncate: the part kept; theirs: the side cut
HF_CLASS_PREFIX = {"gpt2": "GPT2", "llama": "Llama", "mistral": "Mistral"}
HF_CLASS_PREFIX |= {
    "qwen2": "Qwen2",
    "qwen3": "Qwen3",
    "olmo2": "Olmo2",
    "gemma3_text": "Gemma3Text",
}


def export_run(run_dir: Path, fmt: str, out: Path) -> list[str]:
    """Write the run in ``run_dir`` to the new folder ``out`` in format ``fmt`` (written whole,
    then renamed into place); the names of the files written."""
    if fmt not in FORMATS:
        raise GptclfError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if out.exists():
        raise GptclfError(f"{out}: already exists; export writes a new folder")
    network, tokenizer, config = load_run_model(RunDir(run_dir), "fp32")
    _fold_temperature(network, config.decision_rule.temperature)
    reason = unexpressible(config, network, fmt)
    if reason:
        raise GptclfError(f"{run_dir}: cannot export to {fmt}: {reason}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as work:
        folder = Path(work, "export")
        folder.mkdir()
        if fmt == "hf":
            _write_hf(folder, network, config)
            _write_model_card(folder / "README.md", RunDir(run_dir), config)
        else:
            export_graph(network, folder / "model.onnx")
            _write_json(folder / "config.json", _labels_config(config))
        _write_tokenizer(folder, tokenizer, config)
        folder.rename(out)
    return sorted(p.name for p in out.iterdir())


def import_hf(folder: Path, out: Path) -> None:
    """Make the new run folder ``out`` from the Hugging Face sequence classifier in ``folder``
    (GPT-2 or a Llama-like model): standalone, reading the last token with a bias-free head as
    transformers does, in float32."""
    hf_config = read_config(folder) or {}
    labels = hf_config.get("id2label")
    kind = (hf_config.get("architectures") or [""])[0]
    if not kind.endswith("ForSequenceClassification") or not labels:
        raise GptclfError(
            f"{folder}/config.json: not a *ForSequenceClassification with id2label ({kind!r})"
        )
    if out.exists():
        raise GptclfError(f"{out}: already exists; import writes a new run folder")
    model, tokenizer = load_local(folder)
    if isinstance(tokenizer, HFTokenizer) and tokenizer.suffix_ids:
        raise GptclfError(
            f"{folder}/tokenizer.json adds end tokens after every text, which gptclf does not; "
            "remove them from its post_processor if the classifier was trained without them"
        )
    label_map = _imported_labels(folder, hf_config)
    reading = read_config(folder, "tokenizer_config.json") or {}
    longest = reading.get("model_max_length")  # unset: a huge number
    wanted = longest if isinstance(longest, int) and 0 < longest < 1 << 20 else DEFAULT_MAX_LENGTH
    max_length = max_length_within(wanted, model.context_length)
    side = {cut: kept for kept, cut in KEPT_SIDE.items()}.get(
        reading.get("truncation_side", "right")
    )
    if side is None:
        raise GptclfError(f"{folder}/tokenizer_config.json: truncation_side must be left or right")
    spec = dict(pooling="last-token", head_bias=False, ensemble="none", precision="fp32")
    options = recipe(model=str(folder), truncate=side, max_length=max_length, **spec)
    classifier = build_classifier(model, options.classifier_spec(len(label_map)))
    score = read_tensor(folder, "score.weight")  # the rest was read with the model
    if score is None or score.shape != classifier.head.weight.shape:
        raise GptclfError(
            f"{folder}: score.weight must be the class head, of shape "
            f"{tuple(classifier.head.weight.shape)}"
        )
    with torch.no_grad():
        classifier.head.weight.copy_(score)
    config = RunConfig(
        decision=_imported_decision(folder, hf_config),
        base_model=str(folder),
        base_sha256=None,
        standalone=True,
        family=family_of(model).name,
        architecture=asdict(model.cfg),
        labels=label_map.to_json(),
        max_length=max_length,
        pad_to=None,
        tokenizer=tokenizer.name if isinstance(tokenizer, HFTokenizer) else "gpt2",
        special_ids={
            "eos_id": tokenizer.eos_id,
            "bos_id": tokenizer.bos_id,
            "pad_id": _first_set(hf_config.get("pad_token_id"), tokenizer.pad_id),
        },
        prefix_ids=list(tokenizer.prefix_ids),
        train=as_plain(options),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as work:
        run_dir = RunDir(Path(work, "run"))
        run_dir.root.mkdir()
        save_run_model(run_dir, classifier, config, tokenizer, [])
        run_dir.root.rename(out)


def _imported_labels(folder: Path, hf_config: dict) -> LabelMap:
    """Class ``i`` is shown as ``id2label[i]`` and stands for the label value gptclf's export
    kept (``LABEL_VALUES``), else for ``i`` itself, as Hugging Face datasets store class labels:
    data labelled either way is read."""
    labels = hf_config["id2label"]
    if set(labels) != {str(i) for i in range(len(labels))}:
        raise GptclfError(f"{folder}/config.json: id2label must name classes 0..{len(labels) - 1}")
    names = [labels[str(i)] for i in range(len(labels))]
    values = hf_config.get(LABEL_VALUES, list(range(len(names))))
    problem = hf_config.get("problem_type") or PROBLEM_TYPES[False]
    if problem not in PROBLEM_TYPES.values():
        raise GptclfError(f"{folder}/config.json: problem_type {problem!r} is not classification")
    multi_label = problem == PROBLEM_TYPES[True]
    try:
        label_map = checked_labels({"values": values, "names": names, "multi_label": multi_label})
    except GptclfError as exc:
        raise GptclfError(f"{folder}/config.json: {LABEL_VALUES} or id2label: {exc}") from None
    values = [str(value) for value in label_map.values]
    for i, name in enumerate(names):
        if name in values and values.index(name) != i:
            raise GptclfError(
                f"{folder}/config.json: id2label names class {i} {name!r}, the label of "
                f"class {values.index(name)}; labels in data would be ambiguous"
            )
    return label_map


def _imported_decision(folder: Path, hf_config: dict) -> dict | None:
    """The threshold and rule a gptclf export kept (its temperature is in the head)."""
    kept = hf_config.get(DECISION)
    if kept is None:
        return None
    try:
        return Decision.from_json({**kept, "temperature": 1.0}).to_json()
    except (GptclfError, TypeError) as exc:
        raise GptclfError(f"{folder}/config.json: {DECISION}: {exc}") from None


def _first_set(*values: int | None) -> int | None:
    return next((v for v in values if v is not None), None)


def unexpressible(config: RunConfig, network: SequenceClassifier, fmt: str) -> str | None:
    """Why the run cannot be exported to ``fmt`` as it computes, or None."""
    recipe = config.recipe
    if config.ensemble is not None:
        return "it blends with a TF-IDF baseline (train with --ensemble none)"
    if recipe.template is not None:
        return "it frames texts with a template, which a tokenizer alone does not apply"
    if recipe.chunks is not None:
        return "it reads long texts in chunks, which the graph alone does not combine"
    if recipe.truncate not in KEPT_SIDE:
        return (
            f"it keeps both ends of long texts (--truncate {recipe.truncate}); tokenizers cut one"
        )
    if recipe.attend_to_padding or config.pad_to:
        return "it reads padded batches the book's way (--preset book), which others do not"
    if fmt == "onnx":
        return None
    if recipe.pooling != "last-token" or recipe.concat_depths:
        return (
            "transformers' sequence classifiers read the last token of the top block only "
            f"(this run: --pooling {recipe.pooling}"
            + (" with --concat-depths" if recipe.concat_depths else "")
            + "; train with --pooling last-token)"
        )
    if network.head.bias is not None and isinstance(network.language_model.cfg, LlamaConfig):
        return (
            "its class head has a bias, which *ForSequenceClassification cannot hold and an "
            "RMSNorm cannot absorb (train with --no-head-bias)"
        )
    return None


def _fold_temperature(network: SequenceClassifier, temperature: float) -> None:
    """Divide the class head by the run's temperature: its logits are then the calibrated
    ones, in any tool."""
    with torch.no_grad():
        network.head.weight /= temperature
        if network.head.bias is not None:
            network.head.bias /= temperature


def _write_hf(folder: Path, network: SequenceClassifier, config: RunConfig) -> None:
    cfg = network.language_model.cfg
    n_layers = len(network.language_model.trf_blocks)  # fewer than the base's with --depth
    if isinstance(cfg, GPTConfig):
        tensors, hf_config = _gpt2_tensors(network), _gpt2_config(cfg, n_layers)
    else:
        tensors, hf_config = _llama_tensors(network), _llama_config(cfg, n_layers)
    model_type = hf_config["model_type"]
    hf_config |= {
        "architectures": [f"{HF_CLASS_PREFIX[model_type]}ForSequenceClassification"],
        **_labels_config(config),
    }
    save_file({k: v.contiguous() for k, v in tensors.items()}, folder / "model.safetensors")
    _write_json(folder / "config.json", hf_config)


def _gpt2_tensors(network: SequenceClassifier) -> dict[str, torch.Tensor]:
    """Our GPT-2 under transformers' names (Conv1D weights stored transposed, query, key and
    value fused), the head's bias folded into the final norm's shift: W(s + d) = Ws + b for the
    shortest d, so that the bias-free ``score`` gives the same logits."""
    lm, state = network.language_model, network.language_model.state_dict()
    out = {
        "transformer.wte.weight": state["tok_emb.weight"],
        "transformer.wpe.weight": state["pos_emb.weight"],
        "transformer.ln_f.weight": state["final_norm.scale"],
        "transformer.ln_f.bias": state["final_norm.shift"],
        "score.weight": network.head.weight.detach(),
    }
    if network.head.bias is not None:
        weight, bias = network.head.weight.double(), network.head.bias.double()
        shift = torch.linalg.pinv(weight) @ bias
        if not torch.allclose(weight @ shift, bias, atol=1e-6):  # classes not independent
            raise GptclfError("the class head's bias cannot be folded into the final norm")
        out["transformer.ln_f.bias"] = (state["final_norm.shift"].double() + shift).float()
    for i, block in enumerate(lm.trf_blocks):
        hf, att = f"transformer.h.{i}", block.att
        projections = (att.W_query, att.W_key, att.W_value)
        biases = [
            p.bias if p.bias is not None else torch.zeros(p.out_features) for p in projections
        ]
        out |= {
            f"{hf}.ln_1.weight": block.norm1.scale,
            f"{hf}.ln_1.bias": block.norm1.shift,
            f"{hf}.attn.c_attn.weight": torch.cat([p.weight for p in projections]).T,
            f"{hf}.attn.c_attn.bias": torch.cat(biases),
            f"{hf}.attn.c_proj.weight": att.out_proj.weight.T,
            f"{hf}.attn.c_proj.bias": att.out_proj.bias,
            f"{hf}.ln_2.weight": block.norm2.scale,
            f"{hf}.ln_2.bias": block.norm2.shift,
            f"{hf}.mlp.c_fc.weight": block.ff.layers[0].weight.T,
            f"{hf}.mlp.c_fc.bias": block.ff.layers[0].bias,
            f"{hf}.mlp.c_proj.weight": block.ff.layers[2].weight.T,
            f"{hf}.mlp.c_proj.bias": block.ff.layers[2].bias,
        }
    return {name: t.detach() for name, t in out.items()}


def _gpt2_config(cfg: GPTConfig, n_layers: int) -> dict:
    return {
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.context_length,
        "n_embd": cfg.emb_dim,
        "n_layer": n_layers,
        "n_head": cfg.n_heads,
        "layer_norm_epsilon": cfg.layer_norm_eps,
        "activation_function": "gelu_new",  # the tanh approximation, as the book's GELU
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
    }


def _llama_tensors(network: SequenceClassifier) -> dict[str, torch.Tensor]:
    """Our Llama-like model under transformers' names (the loader's table read backwards)."""
    lm = network.language_model
    top, block = llama_names(lm.cfg, column=1)
    top.pop("out_head.weight", None)  # the class head goes to score
    state = lm.state_dict()
    out = {theirs: state[ours] for ours, theirs in top.items()}
    for i in range(len(lm.trf_blocks)):
        out |= {
            f"model.layers.{i}.{theirs}": state[f"trf_blocks.{i}.{ours}"]
            for ours, theirs in block.items()
        }
    out["score.weight"] = network.head.weight
    return {name: t.detach() for name, t in out.items()}


def _llama_config(cfg: LlamaConfig, n_layers: int) -> dict:
    rope = {"rope_type": "default", "rope_theta": cfg.rope_base}
    if cfg.rope_factor is not None:
        rope |= {
            "rope_type": "llama3",
            "factor": cfg.rope_factor,
            "low_freq_factor": cfg.rope_low_freq_factor,
            "high_freq_factor": cfg.rope_high_freq_factor,
            "original_max_position_embeddings": cfg.rope_original_context,
        }
    activation = next(theirs for theirs, ours in HF_ACTIVATIONS.items() if ours == cfg.activation)
    config = {
        "model_type": hf_model_type(cfg),
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.emb_dim,
        "intermediate_size": cfg.hidden_dim,
        "num_hidden_layers": n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_groups,
        "head_dim": cfg.attention_head_dim,
        "max_position_embeddings": cfg.context_length,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_theta": cfg.rope_base,
        "rope_parameters": rope,
        "rope_scaling": rope,
        "sliding_window": cfg.sliding_window,
        "hidden_act": activation,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": False,
    }
    if config["model_type"] == "gemma3_text":
        config |= _gemma3_config(cfg, n_layers, rope) | {"hidden_activation": activation}
    return config


def _gemma3_config(cfg: LlamaConfig, n_layers: int, rope: dict) -> dict:
    """Gemma 3's attention settings: its scale, which layers see every key, and the rotation of
    each kind of layer."""
    scalar = cfg.attention_scale**-2 if cfg.attention_scale else cfg.attention_head_dim
    windowed = {"rope_type": "default", "rope_theta": cfg.rope_local_base}
    return {
        "query_pre_attn_scalar": round(scalar) if abs(scalar - round(scalar)) < 1e-6 else scalar,
        "layer_types": [
            "full_attention" if cfg.layer_window(i) is None else "sliding_attention"
            for i in range(n_layers)
        ],
        "rope_local_base_freq": cfg.rope_local_base,
        "rope_parameters": {"full_attention": rope, "sliding_attention": windowed},
        "rope_scaling": None,
    }


def _labels_config(config: RunConfig) -> dict:
    """The labels, whether a text has one or several (transformers' ``problem_type``: softmax
    or each label's sigmoid) and the pad token, as transformers' configs name them, and the
    label values of gptclf's data (names are only what is shown) for an import to read."""
    names = config.label_map.names
    return {
        "problem_type": PROBLEM_TYPES[config.label_map.multi_label],
        "id2label": {str(i): name for i, name in enumerate(names)},
        "label2id": {name: i for i, name in enumerate(names)},
        LABEL_VALUES: list(config.label_map.values),
        DECISION: {k: v for k, v in config.decision_rule.to_json().items() if k != "temperature"},
        "pad_token_id": config.special_ids["pad_id"],
        "eos_token_id": config.special_ids["eos_id"],
    }


def _write_tokenizer(folder: Path, tokenizer: Tokenizer, config: RunConfig) -> None:
    """``tokenizer.json`` and the settings a ``PreTrainedTokenizerFast`` reads: length kept,
    side cut, end and pad tokens."""
    hf = tokenizer if isinstance(tokenizer, HFTokenizer) else gpt2_hf_tokenizer()
    backend = HFTokenizerBackend.from_str(hf.backend.to_str())
    set_prefix(backend, hf.prefix_ids)  # the start tokens gptclf reads, no end tokens
    (folder / "tokenizer.json").write_text(backend.to_str(), encoding="utf-8")
    word = hf.backend.id_to_token
    settings = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": config.tokens_kept,
        "truncation_side": KEPT_SIDE[config.recipe.truncate],
        "padding_side": "right",
        "eos_token": word(tokenizer.eos_id),
        "pad_token": word(tokenizer.pad_id),
    }
    if hf.prefix_ids:
        settings["bos_token"] = word(hf.prefix_ids[0])
    _write_json(folder / "tokenizer_config.json", settings)


def _decision_lines(config: RunConfig) -> list[str]:
    """What the model card says of the run's temperature and threshold, where it has them."""
    decision, lines = config.decision_rule, []
    if decision.temperature != 1.0:
        lines.append(
            f"Its probabilities are calibrated on the validation split by temperature "
            f"{decision.temperature:.4g}, folded into `score.weight`."
        )
    if config.label_map.multi_label:
        thresholds = decision.threshold or [0.5] * len(config.label_map)
        shown = ", ".join(
            f"{name} {t:.4g}" for name, t in zip(config.label_map.names, thresholds, strict=True)
        )
        lines.append(
            "Multi-label: a text gets every label whose probability (the sigmoid of its logit, "
            "as transformers' pipeline computes for this problem_type) reaches the label's "
            f"threshold: {shown}"
            + (
                f", chosen on the validation split by {decision.rule}."
                if decision.threshold
                else "."
            )
        )
    elif decision.threshold is not None:
        positive = config.label_map.names[1]
        lines.append(
            f"It predicts {positive} when p({positive}) >= {decision.threshold:.6g}, a threshold "
            f"chosen on the validation split by {decision.rule} (`{DECISION}` in config.json); "
            "the pipeline's top label is the more probable one: apply the threshold to its "
            "probabilities."
        )
    return ["", *lines] if lines else []


def _write_model_card(path: Path, run_dir: RunDir, config: RunConfig) -> None:
    """The model card: base model, labels, the data the run was trained on, its recipe and
    its validation and test metrics."""
    metrics = json.loads(run_dir.metrics.read_text()) if run_dir.metrics.is_file() else {}
    data = {name: p.name for name, p in sorted(_split_files(run_dir).items())}
    rows = [
        f"| {split} | {m['n']} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} |"
        for split in ("validation", "test")
        if (m := metrics.get(split))
    ]
    recipe = "\n".join(f"{name}: {value!r}" for name, value in sorted(config.train.items()))
    card = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "---",
        f"# A text classifier on {config.base_model}, trained with gptclf",
        "",
        f"Labels: {', '.join(config.label_map.names)}. Reads the last token of each text "
        f"(at most {config.tokens_kept} tokens, cut at the {KEPT_SIDE[config.recipe.truncate]}).",
        *_decision_lines(config),
        "",
        "## Data",
        "",
        *(f"- {name}: `{file}`" for name, file in data.items()),
        "",
        "## Metrics",
        "",
        f"| split | texts | {'subset accuracy' if config.label_map.multi_label else 'accuracy'} "
        "| macro F1 |",
        "| --- | ---: | ---: | ---: |",
        *rows,
        "",
        "## Recipe (`gptclf train` options)",
        "",
        "```",
        recipe,
        "```",
        "",
    ]
    path.write_text("\n".join(card), encoding="utf-8")


def _split_files(run_dir: RunDir) -> dict[str, Path]:
    """The split files the run kept."""
    folder = run_dir.split
    return {p.stem: p for p in folder.iterdir() if p.is_file()} if folder.is_dir() else {}


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
