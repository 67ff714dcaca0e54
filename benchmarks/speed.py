"""Speed of finetuning and inference on this machine, against the book's chapter-6 loop and
Hugging Face ``transformers``, all measured in one run on the SMS book split.

    .venv/bin/python benchmarks/speed.py [--out benchmarks/results] [--baseline-epochs N]

Phases, each in its own process so that each peak RSS is its own, and each starting with the
machine's float32 and bfloat16 matmul peak measured in that process (the machine's speed drifts
over a long run; every share of the peak is against its own phase's):
1. training gpt2-small (random weights), last block trainable, 5 epochs: the book-style loop
   (``--preset book``: padded to the longest text, position -1, no cache, float32), a plain AdamW
   loop over ``transformers.GPT2ForSequenceClassification`` with the same layers frozen, batches
   padded to their longest text, and gptclf's default path;
2. the same three for the offline default model (smollm2-135m) with the default recipe's learning
   rate and epochs, with test accuracy;
3. inference on the 300 test messages with the model trained in 2: gptclf vs the
   ``transformers`` text-classification pipeline over the same weights, batch 8 and 64, and the
   latency of single messages.

FLOPs are counted as 2 x weights x rows for every linear layer run forward (padding included: it
is computed) and 4 x for its backward pass when the layer trains; where a classifier reads one
position, the last block's queries, attention output and feed-forward run for that position only,
and only that is counted. ``--baseline-epochs
N`` runs the book and transformers loops for N epochs only and scales their loop time to the full
count (every epoch costs the same there); their accuracy is then not reported.
Writes ``speed.md`` (the table) and ``speed.json``.
"""

from __future__ import annotations

import argparse
import json
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
    """FLOPs of every linear layer call, whichever implementation: 2 x weights x rows forward,
    6 x when the layer's weight trains under autograd (forward + backward). Layers whose weights
    train are counted apart from frozen ones."""

    def __init__(self):
        from transformers.pytorch_utils import Conv1D  # transformers' GPT-2 linear layers

        self.layer_types = (nn.Linear, Conv1D)
        self.frozen = 0
        self.trained_forward = 0
        self.trained_with_grad = 0
        self.handle = nn.modules.module.register_module_forward_hook(self._count)

    def _count(self, module, args, output) -> None:
        if not isinstance(module, self.layer_types):
            return
        rows = args[0].numel() // args[0].shape[-1]
        flops = 2 * module.weight.numel() * rows
        if not module.weight.requires_grad:
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


def hf_accuracy(model: nn.Module, ids: list, labels: list, pad_id: int, batch: int) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(ids), batch):
            inputs, mask = padded(ids[i : i + batch], pad_id)
            logits = model(input_ids=inputs, attention_mask=mask).logits
            correct += int((logits.argmax(-1) == torch.tensor(labels[i : i + batch])).sum())
    return correct / len(ids)


def phase_train_transformers(spec: dict, work: Path) -> dict:
    """A plain AdamW loop over a ``transformers`` classifier: batches padded to their longest
    text, float32, the validation split measured after every epoch as gptclf does."""
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
            logits = model(input_ids=inputs, attention_mask=mask).logits
            loss = F.cross_entropy(logits, torch.tensor([labels[r] for r in rows]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        hf_accuracy(model, *data["validation"][1:], tokenizer.pad_id, config.batch_size)
    loop = time.perf_counter() - loop_began
    test_accuracy = hf_accuracy(model, *data["test"][1:], tokenizer.pad_id, config.batch_size)
    return {
        "wall_s": time.perf_counter() - began,
        "loop_s": loop,
        "prefix_s": None,
        "flops": counter.total,
        "prefix_flops": None,
        "train_flops": counter.trained_with_grad,
        "precision": "fp32",
        "peak": peak,
        "test_accuracy": test_accuracy,
        "peak_rss_mb": peak_rss_mb(),
    }


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.array(seconds) * 1000, q))


def phase_infer(spec: dict, work: Path) -> dict:
    """Messages/s on the test split and single-message latency: gptclf vs the pipeline."""
    import transformers

    from gptclf import Classifier

    peak = peaks_here()
    classifier = Classifier.from_pretrained(spec["run_dir"])
    texts = book_split(spec["model"], work)[0]["test"][0][:TEST_MESSAGES]
    tokenizer, head = classifier.tokenizer, classifier.network.head
    language_model = classifier.network.language_model
    hf = hf_llama(language_model, classifier.labels.names, tokenizer.pad_id).eval()
    hf.score = nn.Linear(head.in_features, head.out_features, bias=head.bias is not None)
    hf.score.load_state_dict(head.state_dict())
    pad_token = tokenizer.backend.id_to_token(tokenizer.pad_id)
    hf_tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer.backend, pad_token=pad_token
    )
    pipe = transformers.pipeline(
        "text-classification", model=hf, tokenizer=hf_tokenizer, device="cpu", top_k=None
    )
    counter = FlopCounter()
    results: dict = {"peak": peak}

    def timed(name: str, run) -> None:
        run()  # warm-up
        before, began = counter.total, time.perf_counter()
        out = run()
        seconds = time.perf_counter() - began
        results[name] = {
            "messages_per_s": len(texts) / seconds,
            "gflops": (counter.total - before) / seconds / 1e9,
        }
        return out

    for batch in (8, 64):
        ours_p = timed(f"gptclf_b{batch}", lambda b=batch: classifier.predict_proba(texts, b))
        theirs = timed(
            f"pipeline_b{batch}",
            lambda b=batch: pipe(texts, batch_size=b, truncation=True, max_length=512),
        )
    names = classifier.labels.names
    theirs_p = np.array([[{d["label"]: d["score"] for d in r}[n] for n in names] for r in theirs])
    results["max_probability_difference"] = float(np.abs(theirs_p - ours_p).max())
    for name, one in (
        ("gptclf_latency", lambda t: classifier.predict_proba([t])),
        ("pipeline_latency", lambda t: pipe(t, truncation=True, max_length=512)),
    ):
        one(texts[0])
        seconds = []
        for text in texts[:LATENCY_MESSAGES]:
            began = time.perf_counter()
            one(text)
            seconds.append(time.perf_counter() - began)
        results[name] = {"p50_ms": percentile_ms(seconds, 50), "p99_ms": percentile_ms(seconds, 99)}
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


def run_all(args: argparse.Namespace, work: Path) -> dict:
    from gptclf.recipe import recipe

    results = {"threads": torch.get_num_threads(), "train": [], "infer": None}
    for model, epochs in (("gpt2-small", GPT2_EPOCHS), ("smollm2-135m", recipe().epochs)):
        tokens = sum(len(x) for x in book_split(model, work)[0]["train"][1])
        for loop in ("book", "transformers", "gptclf"):
            measured = epochs if loop == "gptclf" else min(epochs, args.baseline_epochs or epochs)
            run_dir = work / f"{model}-{loop}"
            spec = {"model": model, "loop": loop, "epochs": measured, "run_dir": str(run_dir)}
            result = in_child(f"train-{loop}", spec, work)
            result["gflops"] = result["flops"] / result["wall_s"] / 1e9  # as measured
            result = full_count(result, measured, epochs)
            result.update(model=model, loop=loop, epochs=epochs)
            result["tokens_per_s"] = epochs * tokens / result["wall_s"]
            results["train"].append(result)
    spec = {"model": "smollm2-135m", "run_dir": str(work / "smollm2-135m-gptclf")}
    results["infer"] = in_child("infer", spec, work)
    return results


def percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%"


def table(results: dict) -> str:
    peaks = [row["peak"] for row in results["train"]] + [results["infer"]["peak"]]
    fp32, bf16 = ([p[dtype] for p in peaks] for dtype in ("fp32", "bf16"))
    lines = [
        f"Matmul peak ({results['threads']} threads), measured in each phase's process before it "
        f"ran: float32 {min(fp32):.0f}-{max(fp32):.0f} GFLOP/s, bfloat16 {min(bf16):.0f}-"
        f"{max(bf16):.0f} GFLOP/s. Every share of the peak is against its own phase's.",
        "",
        "| model | loop | epochs (measured) | wall | tokens/s | peak RSS | test acc | "
        "GFLOP/s (share of peak) | gptclf faster by |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in results["train"]:
        ours = next(
            r for r in results["train"] if r["model"] == row["model"] and r["loop"] == "gptclf"
        )
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
    for row in results["train"]:
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
    infer = results["infer"]
    lines += [
        "",
        f"Inference, smollm2-135m classifier, {TEST_MESSAGES} test messages (largest difference "
        f"in a class probability between the two: {infer['max_probability_difference']:.1e}):",
        "",
        "| batch | gptclf msg/s | pipeline msg/s | ratio | gptclf GFLOP/s | pipeline GFLOP/s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for batch in (8, 64):
        ours, theirs = infer[f"gptclf_b{batch}"], infer[f"pipeline_b{batch}"]
        lines.append(
            f"| {batch} | {ours['messages_per_s']:.0f} | {theirs['messages_per_s']:.0f} | "
            f"{ours['messages_per_s'] / theirs['messages_per_s']:.1f}x | "
            f"{ours['gflops']:.0f} ({percent(ours['gflops'], infer['peak']['bf16'])} of bf16) | "
            f"{theirs['gflops']:.0f} ({percent(theirs['gflops'], infer['peak']['fp32'])} of fp32) |"
        )
    ours, theirs = infer["gptclf_latency"], infer["pipeline_latency"]
    lines += [
        "",
        f"Single-message latency ({LATENCY_MESSAGES} messages): gptclf p50 {ours['p50_ms']:.1f} "
        f"ms, p99 {ours['p99_ms']:.1f} ms; pipeline p50 {theirs['p50_ms']:.1f} ms, p99 "
        f"{theirs['p99_ms']:.1f} ms.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
        results = run_all(args, Path(work))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "speed.md").write_text(table(results))
    print(table(results))


if __name__ == "__main__":
    main()
