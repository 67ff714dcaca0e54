"""Speed of gptclf on this machine, every ratio against a baseline measured in the same run.

    .venv/bin/python benchmarks/speed.py [--parts training end-to-end inference]
        [--out benchmarks/results] [--baseline-epochs N]

Parts (default: all), each writing its own table into ``speed.md`` beside the others' last
tables (``speed.json`` keeps every part's figures):

**training**: the loops on the SMS book split, each phase in its own process (its peak RSS its
own), each starting with the machine's float32 and bfloat16 matmul peak measured in that process:
1. gpt2-small (random weights), last block trainable, 5 epochs: the book-style loop (``--preset
   book``: padded to the longest text, position -1, no cache, float32), a plain AdamW loop over
   ``transformers.GPT2ForSequenceClassification`` with the same layers frozen, batches padded to
   their longest text, in float32 and in its best CPU setting (bfloat16 autocast, evaluation under
   ``torch.inference_mode``), and gptclf's default path;
2. the same four for the offline default model (smollm2-135m) with the default recipe's
   learning rate and epochs, with test accuracy.
FLOPs are counted as 2 x weights x rows for every linear layer run forward (padding included: it
is computed) and 4 x for its backward pass when the layer trains; where a classifier reads one
position, the last block's queries, attention output and feed-forward run for that position
only, and only that is counted. ``--baseline-epochs N`` runs the book and transformers loops for
N epochs only and scales their loop time to the full count (every epoch costs the same there);
their accuracy is then not reported.

**end-to-end**: ``gptclf train`` as a user runs it, wall time and peak RSS of the whole command:
1,600 emails of the quality suite's SpamAssassin set (its train and validation splits and 400 of
its test split; texts cut at the default 512 tokens) and the SMS demo (``make demo``'s training),
each with ``--no-store`` (every run computes the frozen prefix: the path before the store), with
an empty store (cold) and again on the same data (warm); the demo also with ``--precision int8``.

**inference**: the demo trained reading the last token without the TF-IDF blend (what the
pipeline can express), in bfloat16 and in int8, and the bfloat16 run computed by ONNX Runtime
on its int8 graph (``--runtime onnx``), on the 300 test messages against the
``transformers`` text-classification pipeline over the same weights, in float32 and in its best
CPU setting (bfloat16 weights, under ``torch.inference_mode`` as pipelines run): messages/s at
batch 8 and 64, accuracy beside each, and the latency of single messages through
``Classifier.predict`` and the pipeline; then the latency of the default demo (bfloat16, int8,
ONNX Runtime) through ``Classifier.predict`` and ``gptclf serve`` over HTTP, and under
``torch.compile`` (its compile time beside it).

Writes ``speed.md`` and ``speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

GPT2_EPOCHS = 5
# (loop, its precision where the loop is not gptclf's: gptclf's resolves its own)
TRAINING_LOOPS = (
    ("book", "fp32"),
    ("transformers", "fp32"),
    ("transformers", "bf16"),
    ("gptclf", "auto"),
)
TEST_MESSAGES = 300
LATENCY_MESSAGES = 100


# -- measuring ------------------------------------------------------------------------------------
def matmul_peak(dtype: torch.dtype, seconds_per_try: float = 1.0) -> float:
    """Best GFLOP/s of large matmuls (square and transformer-shaped), the best of two tries."""
    best = 0.0
    for m, k, n in ((2048, 2048, 2048), (4096, 4096, 4096), (4096, 1024, 4096), (8192, 768, 3072)):
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        a @ b
        for _ in range(2):
            runs, began = 0, time.perf_counter()
            while time.perf_counter() - began < seconds_per_try:
                a @ b
                runs += 1
            best = max(best, 2 * m * k * n * runs / (time.perf_counter() - began) / 1e9)
    return best


class FlopCounter:
    """FLOPs (int8 operations for int8 layers) of every linear layer call, whichever
    implementation: 2 x weights x rows forward, 6 x when the layer's weight trains under autograd
    (forward + backward). Layers whose weights
    train are counted apart from frozen ones."""

    def __init__(self):
        from transformers.pytorch_utils import Conv1D  # transformers' GPT-2 linear layers

        from gptclf.precision import Int8Linear

        self.layer_types = (nn.Linear, Conv1D, Int8Linear)
        self.frozen = 0
        self.trained_forward = 0
        self.trained_with_grad = 0
        self.handle = nn.modules.module.register_module_forward_hook(self._count)

    def _count(self, module, args, output) -> None:
        if not isinstance(module, self.layer_types):
            return
        rows = args[0].numel() // args[0].shape[-1]
        weight = getattr(module, "weight", None)
        if weight is None:  # an int8 layer: its weight is int8 and frozen
            weight = module.weight_t
        flops = 2 * weight.numel() * rows
        if not weight.requires_grad:
            self.frozen += flops
        elif torch.is_grad_enabled():
            self.trained_with_grad += 3 * flops
        else:
            self.trained_forward += flops

    @property
    def total(self) -> int:
        return self.frozen + self.trained_forward + self.trained_with_grad


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the data, as token ids -----------------------------------------------------------------------
def book_split(model: str, work: Path) -> tuple[dict, object]:
    """{split: (texts, token ids, label ids)} of the SMS book split, and the model's tokenizer."""
    from gptclf.data.dataset import DataSource, load_splits
    from gptclf.registry import load_tokenizer

    splits = load_splits(DataSource(dataset="sms-spam"), work / "split")
    tokenizer, _ = load_tokenizer(model)
    data = {}
    for name, part in splits.parts.items():
        ids = [x[:512] for x in tokenizer.encode_batch(list(part.texts))]
        data[name] = (list(part.texts), ids, splits.labels.ids(part.labels, part.source))
    return data, tokenizer


# -- phases (each runs in a child process) --------------------------------------------------------
def peaks_here() -> dict:
    """This process's float32 and bfloat16 matmul peaks (GFLOP/s), measured before a phase."""
    return {
        "fp32": round(matmul_peak(torch.float32), 1),
        "bf16": round(matmul_peak(torch.bfloat16), 1),
    }


def gptclf_config(spec: dict):
    from gptclf.recipe import recipe

    random = spec["model"] == "gpt2-small"
    preset = "book" if spec["loop"] == "book" else None
    overrides = {"model": spec["model"], "epochs": spec["epochs"]}
    if random:
        overrides["init"] = "random"
    if spec["loop"] == "book" and not random:  # the book's mechanics, the default recipe's lr
        overrides["lr"] = recipe().lr
    return recipe(preset, **overrides)


def phase_train_gptclf(spec: dict, work: Path) -> dict:
    """The book-style loop (``--preset book``) or gptclf's default path, through ``train()``."""
    from gptclf.data.dataset import DataSource
    from gptclf.precision import resolve_precision
    from gptclf.training import train

    config = gptclf_config(spec)
    peak = peaks_here()
    counter = FlopCounter()
    began = time.perf_counter()
    metrics = train(config, DataSource(dataset="sms-spam"), Path(spec["run_dir"]), quiet=True)
    wall = time.perf_counter() - began
    return {
        "wall_s": wall,
        "loop_s": metrics["train_seconds"],
        "prefix_s": metrics["prepare_seconds"] if metrics["frozen_prefix_blocks"] else None,
        "flops": counter.total,
        "prefix_flops": counter.frozen if metrics["frozen_prefix_blocks"] else None,
        "train_flops": counter.trained_with_grad,
        "precision": resolve_precision(config.precision),
        "peak": peak,
        "test_accuracy": metrics["test"]["accuracy"],
        "peak_rss_mb": peak_rss_mb(),
    }


def hf_gpt2(n_classes: int, pad_id: int) -> nn.Module:
    """``transformers``' gpt2-small classifier with random weights and no dropout."""
    import transformers

    torch.manual_seed(123)
    config = transformers.GPT2Config(
        num_labels=n_classes, pad_token_id=pad_id, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0
    )
    return transformers.GPT2ForSequenceClassification(config)


def hf_llama(ours: nn.Module, labels: list[str], pad_id: int) -> nn.Module:
    """``transformers``' Llama classifier holding the very weights of our Llama model (converted
    through the loader's own name map); its class head stays as initialised."""
    import transformers

    from gptclf.weights.huggingface import llama_rules

    cfg = ours.cfg
    config = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.emb_dim,
        intermediate_size=cfg.hidden_dim,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_groups,
        head_dim=cfg.attention_head_dim,
        max_position_embeddings=cfg.context_length,
        rope_theta=cfg.rope_base,
        rms_norm_eps=cfg.rms_norm_eps,
        tie_word_embeddings=cfg.tie_embeddings,
        id2label=dict(enumerate(labels)),
        pad_token_id=pad_id,
    )
    torch.manual_seed(123)
    model = transformers.LlamaForSequenceClassification(config)
    state = ours.state_dict()
    converted = {rule.tensor: state[rule.param] for rule in llama_rules(cfg)}
    missing, unexpected = model.load_state_dict(converted, strict=False)
    if unexpected or set(missing) - {"score.weight"}:
        raise RuntimeError(f"weights did not convert: {missing} {unexpected}")
    return model


def hf_blocks(model: nn.Module) -> nn.ModuleList:
    return model.transformer.h if hasattr(model, "transformer") else model.model.layers


def hf_top(model: nn.Module) -> list[nn.Module]:
    """What trains, as in the book: the last block, the final norm and the class head."""
    final_norm = model.transformer.ln_f if hasattr(model, "transformer") else model.model.norm
    return [hf_blocks(model)[-1], final_norm, model.score]


def padded(ids: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(x) for x in ids)
    inputs = torch.full((len(ids), longest), pad_id)
    mask = torch.zeros(len(ids), longest, dtype=torch.long)
    for row, x in enumerate(ids):
        inputs[row, : len(x)], mask[row, : len(x)] = torch.tensor(x), 1
    return inputs, mask


def hf_accuracy(
    model: nn.Module, ids: list, labels: list, pad_id: int, batch: int, bf16: bool = False
) -> float:
    model.eval()
    correct = 0
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        for i in range(0, len(ids), batch):
            inputs, mask = padded(ids[i : i + batch], pad_id)
            logits = model(input_ids=inputs, attention_mask=mask).logits
            correct += int((logits.argmax(-1) == torch.tensor(labels[i : i + batch])).sum())
    return correct / len(ids)


def phase_train_transformers(spec: dict, work: Path) -> dict:
    """A plain AdamW loop over a ``transformers`` classifier: batches padded to their longest
    text, in float32 or under bfloat16 autocast (``spec["precision"]``), the validation split
    measured after every epoch as gptclf does."""
    bf16 = spec["precision"] == "bf16"
    config = gptclf_config({**spec, "loop": "gptclf"})
    peak = peaks_here()
    began = time.perf_counter()
    data, tokenizer = book_split(spec["model"], work)
    if spec["model"] == "gpt2-small":
        model = hf_gpt2(2, tokenizer.pad_id)
    else:
        from gptclf.registry import load_pretrained

        model = hf_llama(load_pretrained(spec["model"]).model, ["ham", "spam"], tokenizer.pad_id)
    for p in model.parameters():
        p.requires_grad = False
    for module in hf_top(model):
        for p in module.parameters():
            p.requires_grad = True
    lr = 5e-5 if spec["model"] == "gpt2-small" else config.lr
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=config.weight_decay)
    counter = FlopCounter()
    _, ids, labels = data["train"]
    generator = torch.Generator().manual_seed(123)
    loop_began = time.perf_counter()
    for _ in range(spec["epochs"]):
        model.train()
        order = torch.randperm(len(ids), generator=generator).tolist()
        for i in range(0, len(order), config.batch_size):
            rows = order[i : i + config.batch_size]
            inputs, mask = padded([ids[r] for r in rows], tokenizer.pad_id)
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                logits = model(input_ids=inputs, attention_mask=mask).logits
            loss = F.cross_entropy(logits.float(), torch.tensor([labels[r] for r in rows]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        hf_accuracy(model, *data["validation"][1:], tokenizer.pad_id, config.batch_size, bf16)
    loop = time.perf_counter() - loop_began
    test_accuracy = hf_accuracy(model, *data["test"][1:], tokenizer.pad_id, config.batch_size, bf16)
    return {
        "wall_s": time.perf_counter() - began,
        "loop_s": loop,
        "prefix_s": None,
        "flops": counter.total,
        "prefix_flops": None,
        "train_flops": counter.trained_with_grad,
        "precision": spec["precision"],
        "peak": peak,
        "test_accuracy": test_accuracy,
        "peak_rss_mb": peak_rss_mb(),
    }


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.array(seconds) * 1000, q))


def hf_pipeline(classifier, bf16: bool):
    """The ``transformers`` text-classification pipeline over the classifier's very weights (as
    ``LlamaForSequenceClassification``), in float32 or with bfloat16 weights."""
    import transformers

    tokenizer, head = classifier.tokenizer, classifier.network.head
    language_model = classifier.network.language_model
    hf = hf_llama(language_model, classifier.labels.names, tokenizer.pad_id).eval()
    hf.score = nn.Linear(head.in_features, head.out_features, bias=head.bias is not None)
    hf.score.load_state_dict(head.state_dict())
    pad_token = tokenizer.backend.id_to_token(tokenizer.pad_id)
    hf_tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer.backend, pad_token=pad_token
    )
    model = hf.to(torch.bfloat16) if bf16 else hf
    return transformers.pipeline(
        "text-classification", model=model, tokenizer=hf_tokenizer, device="cpu", top_k=None
    )


def pipeline_probabilities(outputs: list, names: list[str]) -> np.ndarray:
    return np.array([[{d["label"]: d["score"] for d in r}[n] for n in names] for r in outputs])


def latency(one, texts: list[str]) -> dict:
    """p50 and p99 in ms of ``one(text)`` over ``texts``, after one call to warm up."""
    one(texts[0])
    seconds = []
    for text in texts:
        began = time.perf_counter()
        one(text)
        seconds.append(time.perf_counter() - began)
    return {"p50_ms": percentile_ms(seconds, 50), "p99_ms": percentile_ms(seconds, 99)}


def served_latency(run_dir: str, texts: list[str], flags: tuple[str, ...] = ()) -> dict:
    """Latency of single texts posted to ``gptclf serve`` (one kept-alive connection, serve's
    ``flags``), from the request's sending to its answer's reading."""
    import http.client
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "gptclf", "serve", run_dir, "--port", str(port), *flags]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(600):  # up to a minute to load
            try:
                connection.request("GET", "/v1/model")
                connection.getresponse().read()
                break
            except OSError:
                connection.close()
                time.sleep(0.1)

        def one(text: str) -> None:
            body = json.dumps({"text": text})
            connection.request("POST", "/v1/classify", body, {"Content-Type": "application/json"})
            answer = connection.getresponse()
            answer.read()
            if answer.status != 200:
                raise RuntimeError(f"serve answered {answer.status}")

        return latency(one, texts)
    finally:
        server.terminate()
        server.wait(timeout=60)


def phase_infer(spec: dict, work: Path) -> dict:
    """Messages/s on the test split and single-message latency: gptclf's bf16 and int8 runs,
    and its bf16 run computed by ONNX Runtime (int8 graph), against the pipeline in float32 and
    bfloat16, with the accuracy of each; the default recipe's latency also under
    ``torch.compile``."""
    from gptclf import Classifier

    peak = peaks_here()
    ours = {name: Classifier.from_pretrained(path) for name, path in spec["runs"].items()}
    ours["ONNX Runtime int8"] = Classifier.from_pretrained(spec["runs"]["bf16"], "onnx")
    data = book_split("smollm2-135m", work)[0]["test"]
    texts, truth = data[0][:TEST_MESSAGES], np.array(data[2][:TEST_MESSAGES])
    names = next(iter(ours.values())).labels.names
    theirs = {
        "pipeline (fp32)": hf_pipeline(ours["bf16"], bf16=False),
        "pipeline (bf16)": hf_pipeline(ours["bf16"], bf16=True),
    }
    counter = FlopCounter()
    results: dict = {"peak": peak, "throughput": {}, "latency": {}}

    def timed(name: str, batch: int, run) -> np.ndarray:
        run()  # warm-up
        before, began = counter.total, time.perf_counter()
        probabilities = run()
        seconds = time.perf_counter() - began
        results["throughput"][f"{name} b{batch}"] = {
            "row": name,
            "batch": batch,
            "messages_per_s": len(texts) / seconds,
            "gflops": (counter.total - before) / seconds / 1e9,
            "accuracy": float(np.mean(probabilities.argmax(1) == truth)),
        }
        return probabilities

    for batch in (8, 64):
        for name, classifier in ours.items():
            timed(
                f"gptclf ({name})", batch, lambda c=classifier, b=batch: c.predict_proba(texts, b)
            )
        for name, pipe in theirs.items():
            timed(
                name,
                batch,
                lambda p=pipe, b=batch: pipeline_probabilities(
                    p(texts, batch_size=b, truncation=True, max_length=512), names
                ),
            )
    ones = texts[:LATENCY_MESSAGES]
    for name, classifier in ours.items():
        results["latency"][f"gptclf ({name}), Classifier.predict"] = latency(
            lambda t, c=classifier: c.predict([t]), ones
        )
    for name, pipe in theirs.items():
        results["latency"][name] = latency(lambda t, p=pipe: p(t, truncation=True), ones)
    defaults = {**spec["default_runs"], "ONNX Runtime int8": spec["default_runs"]["bf16"]}
    for name, path in defaults.items():
        runtime = "onnx" if name == "ONNX Runtime int8" else "torch"
        default = Classifier.from_pretrained(path, runtime).warm_up()
        results["latency"][f"gptclf default recipe ({name}), Classifier.predict"] = latency(
            lambda t, c=default: c.predict([t]), ones
        )
        results["latency"][f"gptclf default recipe ({name}), serve over HTTP"] = served_latency(
            path, ones, ("--runtime", runtime)
        )
    compiled = Classifier.from_pretrained(spec["default_runs"]["bf16"])
    compiled.network = torch.compile(compiled.network, dynamic=True)
    began = time.perf_counter()
    compiled.warm_up()
    results["compile_s"] = time.perf_counter() - began
    results["latency"]["gptclf default recipe (bf16, torch.compile), Classifier.predict"] = latency(
        lambda t: compiled.predict([t]), ones
    )
    results["peak_rss_mb"] = peak_rss_mb()
    return results


PHASES = {
    "train-book": phase_train_gptclf,
    "train-gptclf": phase_train_gptclf,
    "train-transformers": phase_train_transformers,
    "infer": phase_infer,
}


# -- the run --------------------------------------------------------------------------------------
def in_child(phase: str, spec: dict, work: Path, script: str = __file__) -> dict:
    """Run one phase of ``script`` in a fresh process; its result is the last line it prints."""
    command = [sys.executable, script, "--phase", phase, "--spec", json.dumps(spec)]
    command += ["--work", str(work)]
    print(f"{phase} {spec.get('model', '')}...", file=sys.stderr, flush=True)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def full_count(result: dict, measured: int, epochs: int) -> dict:
    """Loop time scaled from ``measured`` epochs to ``epochs`` (every epoch costs the same)."""
    if measured == epochs:
        return {**result, "epochs_measured": measured}
    loop = result["loop_s"] * epochs / measured
    return {
        **result,
        "wall_s": result["wall_s"] - result["loop_s"] + loop,
        "loop_s": loop,
        "test_accuracy": None,
        "epochs_measured": measured,
    }


def run_training(args: argparse.Namespace, work: Path) -> dict:
    from gptclf.recipe import recipe

    rows = []
    for model, epochs in (("gpt2-small", GPT2_EPOCHS), ("smollm2-135m", recipe().epochs)):
        tokens = sum(len(x) for x in book_split(model, work)[0]["train"][1])
        for loop, precision in TRAINING_LOOPS:
            measured = epochs if loop == "gptclf" else min(epochs, args.baseline_epochs or epochs)
            run_dir = work / f"{model}-{loop}-{precision}"
            spec = {"model": model, "loop": loop, "epochs": measured, "run_dir": str(run_dir)}
            result = in_child(f"train-{loop}", {**spec, "precision": precision}, work)
            result["gflops"] = result["flops"] / result["wall_s"] / 1e9  # as measured
            result = full_count(result, measured, epochs)
            result.update(model=model, loop=loop, epochs=epochs)
            result["tokens_per_s"] = epochs * tokens / result["wall_s"]
            rows.append(result)
    return {"threads": torch.get_num_threads(), "rows": rows}


# -- end to end: gptclf train as a user runs it ---------------------------------------------------
SPAMASSASSIN_TEST_KEPT = 400  # with its train (1,000) and validation (200) splits: 1,600 emails


def spamassassin_1600(work: Path) -> list[str]:
    """The data flags of 1,600 emails of the quality suite's SpamAssassin set: its train and
    validation splits, and 400 of its test split (stratified, seeded)."""
    import pandas as pd
    from quality import prepare_dataset, split_files
    from sklearn.model_selection import train_test_split

    prepare_dataset("spamassassin")
    files = split_files("spamassassin")
    test = pd.read_csv(files["test"])
    kept, _ = train_test_split(
        test, train_size=SPAMASSASSIN_TEST_KEPT, stratify=test["label"], random_state=0
    )
    kept.to_csv(work / "spamassassin-test-400.csv", index=False)
    return [
        "--train",
        str(files["train"]),
        "--val",
        str(files["validation"]),
        "--test",
        str(work / "spamassassin-test-400.csv"),
    ]


def timed_train(flags: list[str], out: Path, store: Path) -> dict:
    """``gptclf train`` in its own process: wall time, peak RSS and what metrics.json says."""
    env = {**os.environ, "GPTCLF_STORE": str(store)}
    command = [sys.executable, "-m", "gptclf", "train", *flags, "--out", str(out), "--quiet"]
    began = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - began
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed (status {status})")
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "wall_s": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "prepare_s": metrics["prepare_seconds"],
        "loop_s": metrics["train_seconds"],
        "prefix_states": metrics["prefix_states"],
        "test_errors": metrics["test"]["n_errors"],
        "test_n": metrics["test"]["n"],
        "test_accuracy": metrics["test"]["accuracy"],
        "run_dir": str(out),
    }


def run_end_to_end(work: Path) -> dict:
    """Each data set: --no-store, then a cold and a warm store (the demo also in int8)."""
    data = {
        "SpamAssassin, 1,600 emails": (spamassassin_1600(work), ("bf16",)),
        "SMS demo (make demo's training)": (["--dataset", "sms-spam"], ("bf16", "int8")),
    }
    rows = []
    for name, (flags, precisions) in data.items():
        for precision in precisions:
            store = work / f"store-{len(rows)}"
            cases = [("no store", ["--no-store"]), ("cold store", []), ("warm store", [])]
            if precision == "int8":
                cases = cases[1:]
            for case, extra in cases:
                print(f"end-to-end: {name}, {precision}, {case}...", file=sys.stderr, flush=True)
                out = work / f"run-{len(rows)}"
                result = timed_train([*flags, *extra, "--precision", precision], out, store)
                rows.append({"data": name, "precision": precision, "case": case, **result})
    return {"rows": rows}


def demo_runs(work: Path, flags: list[str]) -> dict[str, str]:
    """The demo trained in bfloat16 and in int8 with ``flags``: their run folders."""
    runs = {}
    for precision in ("bf16", "int8"):
        out = work / f"demo-{precision}{''.join(flags)}"
        options = ["--dataset", "sms-spam", "--precision", precision, *flags]
        runs[precision] = timed_train(options, out, work / "store-inference")["run_dir"]
    return runs


def run_inference(work: Path) -> dict:
    """The pipeline can only read the last token: its rows and gptclf's beside them classify
    with a classifier trained so (``--pooling last-token --ensemble none``, the same function);
    the default demo's latency is measured too."""
    same = demo_runs(work, ["--pooling", "last-token", "--ensemble", "none"])
    default = demo_runs(work, [])
    return in_child("infer", {"runs": same, "default_runs": default}, work)


PARTS = {
    "training": run_training,
    "end-to-end": lambda args, work: run_end_to_end(work),
    "inference": lambda args, work: run_inference(work),
}


def percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%"


def training_table(part: dict) -> str:
    rows = part["rows"]
    peaks = [row["peak"] for row in rows]
    fp32, bf16 = ([p[dtype] for p in peaks] for dtype in ("fp32", "bf16"))
    lines = [
        "## Training loops (SMS book split)",
        "",
        f"Matmul peak ({part['threads']} threads), measured in each phase's process before it "
        f"ran: float32 {min(fp32):.0f}-{max(fp32):.0f} GFLOP/s, bfloat16 {min(bf16):.0f}-"
        f"{max(bf16):.0f} GFLOP/s. Every share of the peak is against its own phase's.",
        "",
        "| model | loop | epochs (measured) | wall | tokens/s | peak RSS | test acc | "
        "GFLOP/s (share of peak) | gptclf faster by |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        ours = next(r for r in rows if r["model"] == row["model"] and r["loop"] == "gptclf")
        peak_of_row = row["peak"][row["precision"]]
        rate = row["gflops"]
        accuracy = "—" if row["test_accuracy"] is None else f"{row['test_accuracy']:.2%}"
        lines.append(
            f"| {row['model']} | {row['loop']} ({row['precision']}) | {row['epochs']} "
            f"({row['epochs_measured']}) | {row['wall_s']:.0f} s | {row['tokens_per_s']:.0f} | "
            f"{row['peak_rss_mb']:.0f} MB | {accuracy} | {rate:.0f} ({percent(rate, peak_of_row)}) "
            f"| {row['wall_s'] / ours['wall_s']:.1f}x |"
        )
    lines += ["", "gptclf's phases (bf16 share of the bfloat16 peak):", ""]
    lines += [
        "| model | phase | time | GFLOP/s | share of peak |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        if row["loop"] != "gptclf":
            continue
        peak_of_row = row["peak"][row["precision"]]
        phases = [("frozen prefix, once", row["prefix_flops"], row["prefix_s"])]
        phases.append(("training epochs", row["train_flops"], row["loop_s"]))
        for name, flops, seconds in phases:
            if flops:
                rate = flops / seconds / 1e9
                lines.append(
                    f"| {row['model']} | {name} | {seconds:.0f} s | {rate:.0f} | "
                    f"{percent(rate, peak_of_row)} |"
                )
    return "\n".join(lines)


def end_to_end_table(part: dict) -> str:
    lines = [
        "## End to end: `gptclf train` as a user runs it",
        "",
        "Wall time of the whole command (start, load, prefix, training, test, files written); "
        "prepare: loading, tokenizing and the frozen prefix; each ratio against the same data's "
        "`--no-store` run.",
        "",
        "| data | precision | frozen prefix | wall | prepare | training loop | peak RSS | "
        "states read / computed | test errors | faster by |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    for row in part["rows"]:
        base = next(r for r in part["rows"] if r["data"] == row["data"] and r["case"] == "no store")
        states = row["prefix_states"]
        lines.append(
            f"| {row['data']} | {row['precision']} | {row['case']} | {row['wall_s']:.0f} s | "
            f"{row['prepare_s']:.0f} s | {row['loop_s']:.0f} s | {row['peak_rss_mb']:.0f} MB | "
            f"{states['read']:,} / {states['computed']:,} | {row['test_errors']} of "
            f"{row['test_n']} ({row['test_accuracy']:.2%}) | "
            f"{base['wall_s'] / row['wall_s']:.1f}x |"
        )
    return "\n".join(lines)


def inference_table(part: dict) -> str:
    peak = part["peak"]
    lines = [
        f"## Inference ({TEST_MESSAGES} SMS test messages, the demo's classifier)",
        "",
        f"Matmul peak: float32 {peak['fp32']:.0f}, bfloat16 {peak['bf16']:.0f} GFLOP/s. Every "
        "row classifies with the demo's recipe read at the last token and not blended "
        "(`--pooling last-token --ensemble none`: what the pipeline can express, so both compute "
        "the same function); each ratio against the pipeline in float32 at the same batch size.",
        "",
        "| batch | row | messages/s | ratio | GFLOP/s | accuracy |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    rows = part["throughput"].values()
    for row in rows:
        base = next(r for r in rows if r["batch"] == row["batch"] and r["row"] == "pipeline (fp32)")
        gflops = f"{row['gflops']:.0f}" if row["gflops"] else "-"  # ONNX Runtime's: not counted
        lines.append(
            f"| {row['batch']} | {row['row']} | {row['messages_per_s']:.1f} | "
            f"{row['messages_per_s'] / base['messages_per_s']:.1f}x | {gflops} | "
            f"{row['accuracy']:.2%} |"
        )
    lines += [
        "",
        f"Single messages ({LATENCY_MESSAGES} test messages, one at a time):",
        "",
        "| path | p50 | p99 |",
        "| --- | ---: | ---: |",
    ]
    for name, row in part["latency"].items():
        lines.append(f"| {name} | {row['p50_ms']:.1f} ms | {row['p99_ms']:.1f} ms |")
    if "compile_s" in part:
        lines += ["", f"`torch.compile` took {part['compile_s']:.0f} s before its first answer."]
    return "\n".join(lines)


TABLES = {"training": training_table, "end-to-end": end_to_end_table, "inference": inference_table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--baseline-epochs",
        type=int,
        help="run the book and transformers loops for this many epochs and scale their time",
    )
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=json.loads, default={}, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(PHASES[args.phase](args.spec, args.work)))
        return
    with tempfile.TemporaryDirectory() as work:
        for name in args.parts:  # each part's figures written as soon as it is done
            write_part(args.out, name, PARTS[name](args, Path(work)))


def write_part(out: Path, name: str, part: dict) -> None:
    """Put ``part`` into speed.json beside the other parts' last figures; rewrite speed.md."""
    path = out / "speed.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    results[name] = {**part, "date": time.strftime("%Y-%m-%d")}
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    text = "\n\n".join(
        f"{TABLES[n](p)}\n\n(measured {p['date']})" for n, p in results.items() if n in TABLES
    )
    (out / "speed.md").write_text(f"# Speed on this machine\n\n{text}\n")
    print(TABLES[name](results[name]), flush=True)


if __name__ == "__main__":
    main()
