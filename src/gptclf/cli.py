"""The ``gptclf`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from gptclf.distributed import DEVICES, is_main_process, launched_in_parallel
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
    _report_dropped(data)


def _cmd_data_split(args: argparse.Namespace) -> None:
    from gptclf.data.readers import read_labelled
    from gptclf.data.splits import stratified_split, write_split

    data = read_labelled(args.file, **_reading_options(args))
    parts = stratified_split(data, tuple(args.fractions), args.seed)
    for name, path in write_split(parts, args.out).items():
        print(f"{name:<10}  {len(parts[name].texts):>6} rows  {path}")
    _report_dropped(data)


def _data_source(args: argparse.Namespace):
    from gptclf.data.dataset import DataSource

    return DataSource(
        dataset=args.dataset,
        protocol=args.protocol,
        data=args.data,
        train=args.train,
        validation=args.val,
        test=args.test,
        fractions=tuple(args.fractions),
        seed=args.split_seed,
        **_reading_options(args),
    )


def _cmd_train(args: argparse.Namespace) -> None:
    from gptclf.distributed import distributed_context
    from gptclf.train import train

    with distributed_context(args.device) as dist:
        config, source, run_dir = dist.on_main(lambda: _train_settings(args))
        train(config, source, run_dir, resume=args.resume is not None, quiet=args.quiet, dist=dist)
        if dist.is_main:
            print(run_dir)


def _train_settings(args: argparse.Namespace) -> tuple:
    """The training config, data source and run folder of a new run or of the one resumed."""
    from gptclf.train import config_from, new_run_dir, read_train_config

    if args.resume is not None:
        return *read_train_config(args.resume), args.resume
    data_options = ("train", "test", "val", "data", "preset")
    options = {k: v for k, v in vars(args).items() if k not in data_options}
    options["model"] = args.weights or args.model
    options["lora_targets"] = tuple(args.lora_targets) if args.lora_targets else None
    if args.template:  # "\n" typed in a shell is a backslash and an n
        options["template"] = args.template.replace("\\n", "\n")
    config = config_from(args.preset, **options)
    return config, _data_source(args), args.out or new_run_dir(config.model)


def _cmd_eval(args: argparse.Namespace) -> None:
    from gptclf.artifact import read_run_config
    from gptclf.data.readers import read_labelled
    from gptclf.evaluate import (
        compute_metrics,
        format_metrics,
        plot_confusion_matrix,
        write_metrics,
    )
    from gptclf.predict import Classifier

    labels = read_run_config(args.run_dir).label_map  # bad input fails before the model loads
    data_path = args.data or _own_test_split(args.run_dir)
    data = read_labelled(data_path, **_reading_options(args))
    truth = labels.ids(data.labels, data.source)
    classifier = Classifier.from_pretrained(args.run_dir)
    ids = classifier.token_ids(data.texts, lambda i: f"{data_path}: row {data.rows[i]}")
    probabilities = classifier.probabilities_of_ids(ids)
    metrics = compute_metrics(truth, probabilities, classifier.labels.names, args.threshold)
    metrics["data"] = str(data_path)
    out_dir = args.run_dir / "eval"
    write_metrics(metrics, out_dir / f"{data_path.stem}.json")
    plot_confusion_matrix(metrics, out_dir / f"{data_path.stem}_confusion_matrix.png")
    print(json.dumps(metrics) if args.json else format_metrics(metrics))


def _own_test_split(run_dir: Path) -> Path:
    found = sorted((run_dir / "split").glob("test.*"))
    if not found:
        raise GptclfError(f"{run_dir}: the run has no test split; pass --data FILE")
    return found[0]


def _cmd_predict(args: argparse.Namespace) -> None:
    from dataclasses import asdict

    from gptclf.distributed import distributed_context
    from gptclf.predict import Classifier, predict_file

    if bool(args.input) != bool(args.output):
        raise GptclfError("--input and --output go together")
    if args.input and args.texts:
        raise GptclfError("give texts or --input FILE, not both")
    if not args.input and not args.texts:
        raise GptclfError("nothing to classify: give texts or --input FILE --output FILE")
    if args.chunk_rows < 1:
        raise GptclfError("--chunk-rows must be at least 1")
    if launched_in_parallel() and not args.input:
        raise GptclfError("under torchrun, predict classifies files: give --input and --output")
    with distributed_context(args.device) as dist:
        classifier = Classifier.from_pretrained(args.run_dir).to(dist.device)
        if args.input:
            rows = predict_file(
                classifier,
                args.input,
                args.output,
                args.text_column,
                args.chunk_rows,
                args.batch_size,
                dist,
            )
            if dist.is_main:
                print(f"{rows} rows classified into {args.output}", file=sys.stderr)
            return
    for text, p in zip(args.texts, classifier.predict(args.texts, args.batch_size), strict=True):
        if args.json:
            print(json.dumps({"text": text, **asdict(p)}))
        else:
            print(f"{p.label}\t{p.probability:.4f}\t{text}")


def _cmd_baseline(args: argparse.Namespace) -> None:
    from gptclf.baseline import train_baseline
    from gptclf.data.dataset import load_splits
    from gptclf.evaluate import format_metrics

    splits = load_splits(_data_source(args), args.split_out)
    _, metrics = train_baseline(splits, seed=args.split_seed)
    print(json.dumps(metrics) if args.json else format_metrics(metrics))


def _cmd_serve(args: argparse.Namespace) -> None:
    import os

    from gptclf.serve import (
        API_KEY_ENV,
        ServeSettings,
        app_for_run,
        listening_socket,
        serve,
        url_of,
    )

    settings = ServeSettings(
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        batching=args.batching,
        max_texts=args.max_texts,
        max_chars=args.max_chars,
        max_body_bytes=args.max_body_bytes,
        api_key=os.environ.get(API_KEY_ENV) or None,
    )
    app = app_for_run(args.run_dir, settings)
    sock = listening_socket(args.host, args.port)
    if settings.api_key is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        _note(f"warning: {args.host} is reachable from other machines and {API_KEY_ENV} is unset")
    print(f"serving {args.run_dir} on {url_of(sock)}", flush=True)
    serve(app, sock)


def _report_dropped(data) -> None:
    from gptclf.data.readers import listed_rows

    if data.dropped_empty:
        rows = listed_rows(data.dropped_empty)
        print(f"dropped {len(data.dropped_empty)} row(s) with empty text: {rows}")


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

    train = commands.add_parser("train", help="finetune a model into a classifier")
    _add_data_options(train)
    _add_train_options(train)
    _add_device_option(train)
    train.set_defaults(run=_cmd_train, data_parallel=True)

    evaluate = commands.add_parser("eval", help="measure a trained classifier on labelled data")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--data", type=Path, help="labelled file (default: the run's test split)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--threshold", type=float, help="p(second class) cut-off, two classes")
    _add_reading_options(evaluate)
    evaluate.set_defaults(run=_cmd_eval)

    predict = commands.add_parser("predict", help="classify texts with a trained classifier")
    predict.add_argument("run_dir", type=Path)
    predict.add_argument("texts", nargs="*", help="texts to classify")
    predict.add_argument("--input", type=Path, help="CSV/TSV/JSONL file of texts")
    predict.add_argument("--output", type=Path, help="CSV or JSONL file for the predictions")
    predict.add_argument("--text-column", help="column holding the text (default: detected)")
    predict.add_argument("--json", action="store_true", help="print JSON lines")
    predict.add_argument("--batch-size", type=int, default=32)
    predict.add_argument(
        "--chunk-rows", type=int, default=1024, help="rows of --input read and classified at once"
    )
    _add_device_option(predict)
    predict.set_defaults(run=_cmd_predict, data_parallel=True)

    baseline = commands.add_parser("baseline", help="TF-IDF + logistic regression on the same data")
    _add_data_options(baseline)
    baseline.add_argument("--split-out", type=Path, help="folder for a split made on the fly")
    baseline.add_argument("--json", action="store_true", help="print one JSON object")
    baseline.set_defaults(run=_cmd_baseline)

    serve = commands.add_parser("serve", help="classify over HTTP, with a page to try it")
    serve.add_argument("run_dir", type=Path)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="0: any free port")
    serve.add_argument("--max-batch", type=int, default=64, help="texts per model call")
    serve.add_argument(
        "--max-wait-ms", type=float, default=5.0, help="how long a batch waits to fill"
    )
    serve.add_argument(
        "--no-batching",
        dest="batching",
        action="store_false",
        help="compute every request alone",
    )
    serve.add_argument("--max-texts", type=int, default=256, help="texts per request")
    serve.add_argument("--max-chars", type=int, default=10_000, help="characters per text")
    serve.add_argument("--max-body-bytes", type=int, default=1_000_000, help="request body size")
    serve.set_defaults(run=_cmd_serve)
    return parser


def _add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data (one of --dataset, --data, --train)")
    group.add_argument("--dataset", choices=["sms-spam"], help="a built-in dataset")
    group.add_argument(
        "--protocol",
        choices=["book", "full"],
        default="book",
        help="how the built-in SMS data is split",
    )
    group.add_argument("--data", type=Path, help="one labelled file, split on the fly")
    group.add_argument("--train", type=Path, help="training file")
    group.add_argument("--val", type=Path, help="validation file")
    group.add_argument("--test", type=Path, help="test file")
    group.add_argument(
        "--fractions",
        type=float,
        nargs=3,
        default=[0.7, 0.1, 0.2],
        metavar=("TRAIN", "VAL", "TEST"),
        help="split of --data",
    )
    group.add_argument("--split-seed", type=int, default=123, help="seed of the --data split")
    _add_reading_options(group)


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    """Training options; None means "the preset's value, else the default"."""
    model = parser.add_argument_group("model")
    model.add_argument("--preset", choices=["book"], help="a complete recipe (book: chapter 6)")
    model.add_argument("--model", help=f"model name or path (default {DEFAULT_MODEL})")
    model.add_argument("--weights", help="path to the base weights (same as --model PATH)")
    model.add_argument("--init", choices=["pretrained", "random"])
    model.add_argument("--pooling", choices=["last-token", "last-position", "mean", "first"])
    model.add_argument("--trainable", help="head | last-block | last-blocks:K | all | lora")
    model.add_argument("--lora-rank", type=int)
    model.add_argument("--lora-alpha", type=float)
    model.add_argument("--lora-targets", nargs="+", help="qv | attention | mlp | all | suffixes")
    model.add_argument("--lora-blocks", type=int, help="adapters in the top N blocks only")
    model.add_argument(
        "--attend-to-padding",
        action="store_true",
        default=None,
        help="no attention mask on padded batches (the book's way)",
    )
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int)
    opt.add_argument("--batch-size", type=int)
    opt.add_argument("--grad-accumulation", type=int)
    opt.add_argument("--lr", type=float)
    opt.add_argument("--weight-decay", type=float)
    opt.add_argument("--warmup", type=float, help="fraction of steps warming up linearly")
    opt.add_argument("--schedule", choices=["constant", "linear", "cosine"])
    opt.add_argument("--max-grad-norm", type=float)
    opt.add_argument("--class-weights", choices=["balanced"])
    opt.add_argument("--seed", type=int)
    opt.add_argument("--max-length", type=int, help="tokens kept per text")
    opt.add_argument("--template", help='text around each message, e.g. "SMS: {text}\\nSpam?"')
    opt.add_argument("--pad-to", choices=["longest"], help="pad every batch to the longest text")
    opt.add_argument("--drop-last", action="store_true", default=None)
    opt.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        help="auto: bfloat16 where the CPU computes it natively",
    )
    opt.add_argument(
        "--no-cache",
        dest="cache",
        action="store_false",
        default=None,
        help="run the frozen bottom blocks every epoch instead of caching them",
    )
    run = parser.add_argument_group("evaluation and output")
    run.add_argument("--eval-every", type=int, help="also evaluate every N optimizer steps")
    run.add_argument("--eval-batches", type=int, help="evaluate on the first N batches only")
    run.add_argument("--early-stopping", type=int, metavar="PATIENCE")
    run.add_argument("--metric", choices=["accuracy", "macro_f1", "loss"])
    run.add_argument("--keep", choices=["best", "last"], help="weights kept at the end")
    run.add_argument("--out", type=Path, help="run folder (default: a new one under runs/)")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run")
    run.add_argument("--full", action="store_true", default=None, help="standalone model file")
    run.add_argument("--quiet", action="store_true")


def _add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help="cuda: under torchrun each process uses the GPU of its local rank",
    )


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


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, letting ``predict``'s texts also follow its options (argparse alone stops
    collecting positional arguments at the first option)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if (
        extra
        and getattr(args, "command", None) == "predict"
        and not any(e.startswith("-") for e in extra)
    ):
        args.texts = [*args.texts, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run a command; a ``GptclfError`` is one line on stderr (from the main process only: under
    torchrun every process raises it) and exit status 2."""
    args = _parse(argv)
    try:
        if launched_in_parallel() and not getattr(args, "data_parallel", False):
            raise GptclfError(
                f"gptclf {args.command} runs in one process; start it without torchrun"
            )
        args.run(args)
    except GptclfError as exc:
        if is_main_process():
            print(f"gptclf: error: {exc}", file=sys.stderr)
        return 2
    return 0
