"""The ``gptclf`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

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


def _cmd_data_sms_spam(args: argparse.Namespace) -> None:
    import pandas as pd

    from gptclf.data.sms_spam import SMS_SPAM_INFO, prepare_sms_spam

    if args.info:
        print(SMS_SPAM_INFO)
        return
    paths = prepare_sms_spam(args.protocol, args.out, log=_note)
    for split in ("train", "validation", "test"):
        rows = len(pd.read_csv(paths[split]))
        print(f"{split:<10}  {rows:>5} rows  {paths[split]}")
    print(f"labels      {paths['labels']}")


def _reading_options(args: argparse.Namespace) -> dict:
    return {
        "text_column": args.text_column,
        "label_column": args.label_column,
        "encoding": args.encoding,
        "strict": args.strict,
    }


def _cmd_data_inspect(args: argparse.Namespace) -> None:
    from gptclf.data.dataset import check_every_text_has_tokens, label_names_beside
    from gptclf.data.labels import LabelMap
    from gptclf.data.readers import read_labelled
    from gptclf.data.summary import format_summary, summarize_split
    from gptclf.data.tokenized import tokenize
    from gptclf.registry import load_tokenizer

    data = read_labelled(args.file, labels_required=False, **_reading_options(args))
    labels = None
    if data.labels is not None:
        names = label_names_beside(args.file)
        labels = LabelMap.from_labels(data.labels, names, source=data.source)
    tokenizer, context_length = load_tokenizer(args.model)
    tokens = tokenize(tokenizer, data.texts, args.max_length or context_length, args.truncate)
    check_every_text_has_tokens(data, tokens)
    print(
        f"{args.file}: text column {data.text_column!r}, label column {data.label_column!r}, "
        f"tokens counted by {args.model}"
    )
    print(format_summary([summarize_split("all", data, tokens, labels)]))
    if data.dropped_empty:
        print(
            f"dropped {len(data.dropped_empty)} row(s) with empty text: {_rows(data.dropped_empty)}"
        )


def _cmd_data_split(args: argparse.Namespace) -> None:
    from gptclf.data.readers import read_labelled
    from gptclf.data.splits import stratified_split, write_split

    data = read_labelled(args.file, **_reading_options(args))
    parts = stratified_split(data, tuple(args.fractions), args.seed)
    for name, path in write_split(parts, args.out).items():
        print(f"{name:<10}  {len(parts[name].texts):>6} rows  {path}")
    if data.dropped_empty:
        print(
            f"dropped {len(data.dropped_empty)} row(s) with empty text: {_rows(data.dropped_empty)}"
        )


def _rows(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:5])
    return shown + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")


def _note(message: str) -> None:
    print(message, file=sys.stderr)


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

    data = commands.add_parser("data", help="prepare and inspect labelled text")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    sms = data_commands.add_parser("sms-spam", help="prepare the SMS Spam Collection splits")
    sms.add_argument("--protocol", choices=["book", "full"], default="book")
    sms.add_argument("--out", type=Path, help="folder for the split CSVs (default: the cache)")
    sms.add_argument("--info", action="store_true", help="show the citation and licence terms")
    sms.set_defaults(run=_cmd_data_sms_spam)

    inspect = data_commands.add_parser("inspect", help="summarise a labelled file, checking it")
    inspect.add_argument("file", type=Path)
    _add_reading_options(inspect)
    inspect.add_argument("--model", default=DEFAULT_MODEL, help="whose tokenizer counts tokens")
    inspect.add_argument("--max-length", type=int, help="tokens kept per text (default: context)")
    inspect.set_defaults(run=_cmd_data_inspect)

    split = data_commands.add_parser("split", help="split one labelled file, stratified, seeded")
    split.add_argument("file", type=Path)
    split.add_argument("--out", type=Path, required=True, help="folder for the split files")
    split.add_argument(
        "--fractions",
        type=float,
        nargs=3,
        default=[0.7, 0.1, 0.2],
        metavar=("TRAIN", "VAL", "TEST"),
    )
    split.add_argument("--seed", type=int, default=123)
    _add_reading_options(split)
    split.set_defaults(run=_cmd_data_split)
    return parser


def _add_reading_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text-column", help="column holding the text (default: detected)")
    parser.add_argument("--label-column", help="column holding the label (default: detected)")
    parser.add_argument("--encoding", default="utf-8", help="text encoding of the file")
    parser.add_argument("--strict", action="store_true", help="empty texts are an error")
    parser.add_argument(
        "--truncate",
        choices=["head", "tail"],
        default="head",
        help="which end of a too-long text to keep",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except GptclfError as exc:
        print(f"gptclf: error: {exc}", file=sys.stderr)
        return 2
    return 0
