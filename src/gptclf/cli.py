"""The ``gptclf`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gptclf.errors import GptclfError
from gptclf.registry import DEFAULT_MODEL, MODELS


def _cmd_models(args: argparse.Namespace) -> None:
    rows = [("name", "family", "params", "available", "source")]
    rows += [
        (e.name, e.family, e.parameters, "yes" if e.is_available() else "no", e.source)
        for e in MODELS.values()
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
        )
    print("\nAny local path also works: a .gguf file, a Hugging Face folder or .safetensors file,")
    print("or a state dict saved by the book's code (.pth or .safetensors).")


def _cmd_generate(args: argparse.Namespace) -> None:
    from gptclf.generate import generate_greedy
    from gptclf.registry import load_pretrained

    pretrained = load_pretrained(args.model)
    n_params = sum(p.numel() for p in pretrained.model.parameters()) / 1e6
    seconds = pretrained.load_seconds
    print(f"loaded {args.model} ({n_params:.1f}M parameters) in {seconds:.1f} s", file=sys.stderr)
    tokenizer = pretrained.tokenizer
    prompt_ids = tokenizer.encode(args.prompt)
    if not prompt_ids:
        raise GptclfError("the prompt is empty")
    ids = generate_greedy(pretrained.model, prompt_ids, args.max_new_tokens, tokenizer.eos_id)
    print(args.prompt + tokenizer.decode(ids[len(prompt_ids) :]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gptclf", description="Turn a pretrained GPT-style language model into a classifier."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="list the known models and whether they are here")
    models.set_defaults(run=_cmd_models)

    generate = commands.add_parser("generate", help="complete a prompt greedily with a model")
    generate.add_argument("prompt")
    generate.add_argument("--model", default=DEFAULT_MODEL, help="a model name or a local path")
    generate.add_argument("--max-new-tokens", type=int, default=20)
    generate.set_defaults(run=_cmd_generate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except GptclfError as exc:
        print(f"gptclf: error: {exc}", file=sys.stderr)
        return 2
    return 0
