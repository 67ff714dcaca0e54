"""Parity of every model family with Hugging Face ``transformers``, as a table: the tiny random
configurations that the tests prove each family on (``tests/conftest.py``), saved by
``transformers``, loaded by gptclf, and compared in float32 on a right-padded batch:

- ``lm``: max |our logits - theirs| over the real tokens of the ``*ForCausalLM``;
- ``classifier``: max |difference| of the last-token classifier against
  ``*ForSequenceClassification`` with the same (bias-free) head.

    .venv/bin/python benchmarks/parity.py [--out benchmarks/results]

Writes ``parity.json`` and ``parity.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
import transformers

from gptclf.atomic import write_text_atomic
from gptclf.classifier import SequenceClassifier
from gptclf.weights import load_local

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import (  # the tests' own configurations, not a copy
    LLAMA_LIKE_MODELS,
    byte_tokenizer_json,
    max_diff_on_real_tokens,
    padded_batch,
    save_llama_like,
    save_tiny_llama,
)

N_CLASSES = 3
LENGTHS = (9, 5, 2, 9)


def save_gpt2(folder: Path):
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=101, n_positions=32, n_embd=48, n_layer=2, n_head=4, resid_pdrop=0.0
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    model.save_pretrained(folder)
    return model, transformers.GPT2ForSequenceClassification


def saved(kind: str, folder: Path):
    if kind == "gpt2":
        return save_gpt2(folder)
    if kind == "llama2":
        model = save_tiny_llama(folder, tie_embeddings=True)
        return model, transformers.LlamaForSequenceClassification
    return save_llama_like(kind, folder)


def measure(kind: str, folder: Path) -> dict:
    reference, classifier_class = saved(kind, folder)
    if kind != "gpt2":
        (folder / "tokenizer.json").write_text(byte_tokenizer_json())
    model, _ = load_local(folder)
    vocab = reference.config.vocab_size
    ids, mask = padded_batch(vocab - 1, LENGTHS)
    with torch.no_grad():
        theirs_lm = reference(input_ids=ids, attention_mask=mask).logits
        lm = max_diff_on_real_tokens(model(ids, mask), theirs_lm, mask)
    pad = vocab - 1  # never drawn as a real token
    theirs = classifier_class.from_pretrained(folder, num_labels=N_CLASSES, pad_token_id=pad).eval()
    ours = SequenceClassifier(model, n_classes=N_CLASSES).eval()
    with torch.no_grad():
        ours.head.weight.copy_(theirs.score.weight)
        ours.head.bias.zero_()
        padded = torch.where(mask.bool(), ids, pad)
        expected = theirs(input_ids=padded, attention_mask=mask).logits
        gap = (ours(padded, mask) - expected).abs().max()
    return {"family": kind, "lm": lm, "classifier": gap.item()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    rows = []
    for kind in ["gpt2", "llama2", *LLAMA_LIKE_MODELS]:
        with tempfile.TemporaryDirectory() as folder:
            rows.append(measure(kind, Path(folder)))
        print(f"{kind:8} lm {rows[-1]['lm']:.1e}  classifier {rows[-1]['classifier']:.1e}")
    lines = ["| family | LM logits, max abs diff | last-token classifier, max abs diff |"]
    lines += ["| --- | --- | --- |"]
    lines += [f"| {r['family']} | {r['lm']:.1e} | {r['classifier']:.1e} |" for r in rows]
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "parity.json", json.dumps(rows, indent=2) + "\n")
    write_text_atomic(args.out / "parity.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
