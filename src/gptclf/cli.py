"""The ``gptclf`` command line."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path

from gptclf.audit import AuditOptions
from gptclf.data.dataset import READING_OPTIONS, DataSource
from gptclf.distributed import DEVICES, is_main_process, launched_in_parallel
from gptclf.errors import GptclfError
from gptclf.evaluate import EvalOptions
from gptclf.explain import ExplainOptions
from gptclf.interop import FORMATS
from gptclf.options import add_options, build, given
from gptclf.predict_files import PredictOptions
from gptclf.recipe import TrainConfig
from gptclf.registry import DEFAULT_MODEL, MODELS
from gptclf.run.folder import RunDir
from gptclf.signals import TERMINATED, sigterm_interrupts, was_terminated
from gptclf.tune.options import TuneOptions


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
    text_ids = tokenizer.encode(args.prompt)
    if not text_ids:
        raise GptclfError("the prompt is empty")
    prompt_ids = tokenizer.prefix_ids + text_ids
    ids = generate_greedy(pretrained.model, prompt_ids, args.max_new_tokens, tokenizer.eos_id)
    print(args.prompt + tokenizer.decode(ids[len(prompt_ids) :]))


def _cmd_data_built_in(args: argparse.Namespace) -> None:
    import pandas as pd

    from gptclf.data.dataset import prepare_built_in

    if args.info:
        print(_built_in_info(args.data_command))
        return
    source = build(DataSource, {**given(args, DataSource), "dataset": args.data_command})
    paths = prepare_built_in(source, args.out, log=_note)
    for split in ("train", "validation", "test"):
        rows = len(pd.read_csv(paths[split]))
        print(f"{split:<10}  {rows:>5} rows  {paths[split]}")
    print(f"labels      {paths['labels']}")


def _built_in_info(name: str) -> str:
    if name == "sms-spam":
        from gptclf.data.sms_spam import SMS_SPAM_INFO as info
    elif name == "spamassassin":
        from gptclf.data.spamassassin import SPAMASSASSIN_INFO as info
    else:
        from gptclf.data.newsgroups import NEWSGROUPS_INFO as info
    return info


def _reading_options(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name in READING_OPTIONS}


def _cmd_data_inspect(args: argparse.Namespace) -> None:
    from gptclf.data.dataset import check_every_text_has_tokens, label_names_beside
    from gptclf.data.labels import LabelMap
    from gptclf.data.readers import read_labelled
    from gptclf.data.summary import format_summary, summarize_split
    from gptclf.data.tokenized import tokenize
    from gptclf.recipe import max_length_within
    from gptclf.registry import load_tokenizer

    data = read_labelled(args.file, labels_required=False, **_reading_options(args))
    labels = None
    if data.labels is not None:
        names = label_names_beside(args.file)
        labels = LabelMap.from_labels(data.labels, names, data.source, data.multi_label)
    tokenizer, context_length = load_tokenizer(args.model)
    max_length = max_length_within(args.max_length, context_length)
    tokens = tokenize(tokenizer, data.texts, max_length, args.truncate, pairs=data.pairs)
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

    _check_folder(args.out)
    data = read_labelled(args.file, **_reading_options(args))
    parts = stratified_split(data, tuple(args.fractions), args.split_seed)
    for name, path in write_split(parts, args.out).items():
        print(f"{name:<10}  {len(parts[name].texts):>6} rows  {path}")
    _report_dropped(data)


def _cmd_data_audit(args: argparse.Namespace) -> None:
    from gptclf.atomic import check_writable
    from gptclf.audit import audit_labels, format_audit, write_audit
    from gptclf.data.dataset import label_names_beside
    from gptclf.data.labels import LabelMap
    from gptclf.data.readers import read_labelled
    from gptclf.recipe import recipe

    options = build(AuditOptions, given(args, AuditOptions))
    config = recipe(args.preset, **given(args, TrainConfig))
    if args.out:
        check_writable(args.out)
    data = read_labelled(args.file, **_reading_options(args))
    if data.multi_label or data.pairs is not None:
        raise GptclfError(
            f"{data.source}: the audit ranks one label per text, not sets of labels or pairs"
        )
    labels = LabelMap.from_labels(data.labels, label_names_beside(args.file), source=data.source)
    audit = audit_labels(data, labels, config, options)
    print(format_audit(audit, options.top, options.by, options.folds))
    if args.out:
        write_audit(audit, args.out)
        print(f"every row, ranked: {args.out}")
    _report_dropped(data)


def _cmd_train(args: argparse.Namespace) -> None:
    from gptclf.distributed import distributed_context
    from gptclf.training import train

    with distributed_context(args.device) as dist:
        config, source, run_dir = dist.on_main(lambda: _train_settings(args))
        train(config, source, run_dir, resume=args.resume is not None, quiet=args.quiet, dist=dist)
        if dist.is_main:
            print(run_dir)


def _cmd_tune(args: argparse.Namespace) -> None:
    from gptclf.tune.search import tune

    config, source, run_dir = _train_settings(args)
    tune(config, source, run_dir, build(TuneOptions, given(args, TuneOptions)), quiet=args.quiet)
    print(run_dir)


def _train_settings(args: argparse.Namespace) -> tuple[TrainConfig, DataSource, Path]:
    """The recipe, data and run folder of the run resumed, or of a new one: the defaults, under
    the preset, under the ``--config`` file, under the flags given."""
    from gptclf.options import as_plain
    from gptclf.recipe import options_of_run, read_options, recipe

    flags = {**given(args, TrainConfig), **given(args, DataSource)}
    if args.resume is not None:
        if flags or args.config or args.preset or args.out:
            raise GptclfError("--resume continues a run with its own options; give no others")
        run_dir = RunDir(args.resume)
        run_dir.create(resume=True)
        return *options_of_run(run_dir.options), args.resume
    in_file = read_options(args.config) if args.config else ({}, {})
    where = str(args.config) if args.config else None
    file_recipe = recipe(args.preset, source=where, **in_file[0])
    file_data = build(DataSource, in_file[1], where)
    config = recipe(**{**as_plain(file_recipe), **given(args, TrainConfig)})
    source = build(DataSource, {**as_plain(file_data), **given(args, DataSource)})
    return config, source, args.out or RunDir.new(config.model).root


def _cmd_eval(args: argparse.Namespace) -> None:
    from gptclf.baseline import baseline_metrics
    from gptclf.evaluate import evaluate, fit_run_baseline, write_evaluation
    from gptclf.metrics import format_metrics
    from gptclf.mistakes import confident_mistakes, format_outcomes, outcomes

    options = build(EvalOptions, given(args, EvalOptions))
    run_dir = RunDir(args.run_dir)
    baseline = fit_run_baseline(run_dir) if args.compare_baseline else None
    reading = _reading_options(args) if args.data else None
    evaluation = evaluate(run_dir, args.data, reading, args.threshold, args.device)
    metrics = dict(evaluation.metrics)
    if baseline is not None:
        texts, names = evaluation.data.texts, evaluation.labels.names
        metrics["baseline"] = baseline_metrics(baseline, texts, evaluation.truth, names)
    write_evaluation(replace(evaluation, metrics=metrics), run_dir)
    mistakes = None
    if options.errors is not None:
        mistakes = confident_mistakes(outcomes(evaluation), options.errors)
    if args.json:
        shown = {} if mistakes is None else {"errors": [asdict(o) for o in mistakes]}
        print(json.dumps({**metrics, **shown}))
        return
    print(format_metrics(metrics, metrics.get("baseline")))
    if mistakes:
        print(f"the {len(mistakes)} most confident of {metrics['n_errors']} mistakes:")
        print(format_outcomes(mistakes))
    elif mistakes is not None:
        print("no mistakes")


def _cmd_report(args: argparse.Namespace) -> None:
    from gptclf.atomic import check_writable
    from gptclf.evaluate import evaluate
    from gptclf.report import write_report

    run_dir = RunDir(args.run_dir)
    if args.out is not None:
        check_writable(args.out)  # before the model is measured
    has_test = run_dir.split_file("test") is not None
    test = evaluate(run_dir, device=args.device) if has_test else None
    print(write_report(run_dir, test, args.out))


def _cmd_cache(args: argparse.Namespace) -> None:
    from gptclf.store import clear_store, store_folder, store_info

    folder = store_folder()
    if args.action == "clear":
        entries, size = clear_store(folder)
        print(f"{folder}: removed {entries} entries ({size / 1e6:.1f} MB)")
        return
    info = store_info(folder)
    if args.json:
        print(json.dumps(info))
        return
    when = {k: _local_time(info[k]) for k in ("least_recent_use", "most_recent_use")}
    print(
        f"folder:  {info['folder']}\n"
        f"entries: {info['entries']} ({info['bytes'] / 1e6:.1f} MB of "
        f"{info['bound_bytes'] / 1e9:g} GB; $GPTCLF_STORE_GB sets the bound)\n"
        f"used:    {when['least_recent_use']} to {when['most_recent_use']}"
    )


def _local_time(seconds: float | None) -> str:
    return "-" if seconds is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def _cmd_predict(args: argparse.Namespace) -> None:
    from gptclf.distributed import distributed_context
    from gptclf.onnx_runtime import require_cpu
    from gptclf.predict import Classifier
    from gptclf.predict_files import check_texts, predict_file, predict_texts, text_line

    options = build(PredictOptions, given(args, PredictOptions))
    if bool(args.input) != bool(args.output):
        raise GptclfError("--input and --output go together")
    if args.input and args.texts:
        raise GptclfError("give texts or --input FILE, not both")
    if not args.input and not args.texts:
        raise GptclfError("nothing to classify: give texts or --input FILE --output FILE")
    if launched_in_parallel() and not args.input:
        raise GptclfError("under torchrun, predict classifies files: give --input and --output")
    if args.pair and len(args.pair) != len(args.texts):
        raise GptclfError(
            f"{len(args.texts)} texts need {len(args.texts)} --pair, not {len(args.pair)}"
        )
    pairs = args.pair or None
    examples = list(zip(args.texts, pairs, strict=True)) if pairs else args.texts
    check_texts(examples, options.on_empty, lambda i: f"text {i + 1}")
    if options.runtime == "onnx":
        require_cpu(args.device)
    with distributed_context(args.device) as dist:

        def load() -> Classifier:
            return Classifier.from_pretrained(args.run_dir, options.runtime).to(dist.device)

        if args.input:
            reading = (args.text_column, args.encoding, dist, args.text_pair_column)
            tally = predict_file(load, args.input, args.output, options, *reading)
            if dist.is_main:
                _note(f"{tally.classified} rows classified into {args.output}")
                _note_if(tally.note(options.on_empty, "row"))
            return
        classifier = load()
    rows, tally = predict_texts(classifier, args.texts, options, pairs)
    for i, prediction in rows:
        pair = None if pairs is None else pairs[i]
        print(text_line(args.texts[i], prediction, args.json, classifier.labels.multi_label, pair))
    _note_if(tally.note(options.on_empty, "text"))


def _cmd_explain(args: argparse.Namespace) -> None:
    from gptclf.atomic import check_writable, write_text_atomic
    from gptclf.distributed import distributed_context
    from gptclf.explain import explanation_html, format_explanation
    from gptclf.predict import Classifier

    options = build(ExplainOptions, given(args, ExplainOptions))
    if args.html:
        check_writable(args.html)
    with distributed_context(args.device) as dist:  # one process: the device, checked
        classifier = Classifier.from_pretrained(args.run_dir).to(dist.device)
        explanation = classifier.explain(args.text, options.method, options.label)
    if args.json:
        print(json.dumps(explanation.to_json(), ensure_ascii=False))
    else:
        colour = options.colour == "always" or (options.colour == "auto" and sys.stdout.isatty())
        print(format_explanation(explanation, colour))
    if args.html:
        write_text_atomic(args.html, explanation_html(explanation))
        _note(f"written: {args.html}")


def _cmd_baseline(args: argparse.Namespace) -> None:
    from gptclf.baseline import train_baseline
    from gptclf.data.dataset import load_splits
    from gptclf.metrics import format_metrics

    source = build(DataSource, given(args, DataSource))
    if args.split_out is not None:
        _check_folder(args.split_out)
    splits = load_splits(source, args.split_out)  # without --split-out, kept in memory
    _, metrics = train_baseline(splits, seed=source.split_seed)
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

    api_key = os.environ.get(API_KEY_ENV) or None
    settings = build(ServeSettings, {**given(args, ServeSettings), "api_key": api_key})
    app = app_for_run(args.run_dir, settings)
    sock = listening_socket(args.host, args.port)
    if settings.api_key is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        _note(f"warning: {args.host} is reachable from other machines and {API_KEY_ENV} is unset")
    print(f"serving {args.run_dir} on {url_of(sock)}", flush=True)
    serve(app, sock)


def _report_dropped(data) -> None:
    from gptclf.data.cells import listed_rows

    if data.dropped_empty:
        rows = listed_rows(data.dropped_empty)
        print(f"dropped {len(data.dropped_empty)} row(s) with empty text: {rows}")


def _cmd_export(args: argparse.Namespace) -> None:
    from gptclf.interop import export_run

    files = export_run(args.run_dir, args.format, args.out)
    _note(f"{args.out}: {', '.join(files)}")


def _cmd_import(args: argparse.Namespace) -> None:
    from gptclf.interop import import_hf

    import_hf(args.folder, args.out)
    _note(f"{args.out}: a run folder for eval, predict and serve")


def _note(message: str) -> None:
    print(message, file=sys.stderr)


def _note_if(message: str | None) -> None:
    if message:
        _note(message)


def _check_folder(folder: Path) -> None:
    """That files can be written in ``folder`` (made if missing), before any slow work."""
    from gptclf.atomic import check_writable

    check_writable(folder / "train.csv")


def _add_recipe_command(commands, name: str, help: str) -> argparse.ArgumentParser:
    """A command that takes data and a recipe (the flags, a preset or a file) and writes a run."""
    command = commands.add_parser(name, help=help)
    add_options(command, DataSource)
    command.add_argument("--preset", choices=["book"], help="a complete recipe (book: chapter 6)")
    command.add_argument("--config", type=Path, help="YAML or JSON file of options (flags win)")
    add_options(command, TrainConfig)
    command.add_argument("--out", type=Path, help="run folder (default: a new one under runs/)")
    command.add_argument("--quiet", action="store_true")
    return command


def _version() -> str:
    """The installed distribution's version (what ``pip show gptclf`` says)."""
    try:
        return importlib.metadata.version("gptclf")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gptclf", description="Turn a pretrained GPT-style language model into a classifier."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="list the known models and whether they are here")
    models.set_defaults(run=_cmd_models)

    generate = commands.add_parser("generate", help="complete a prompt greedily with a model")
    generate.add_argument("prompt")
    generate.add_argument("--model", default=DEFAULT_MODEL, help="a model name or a local path")
    generate.add_argument("--max-new-tokens", type=int, default=20)
    generate.set_defaults(run=_cmd_generate)

    _add_data_commands(commands.add_parser("data", help="prepare and inspect labelled text"))

    train = _add_recipe_command(commands, "train", "finetune a model into a classifier")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue an interrupted run")
    _add_device_option(train)
    train.set_defaults(run=_cmd_train, data_parallel=True)

    tune = _add_recipe_command(
        commands, "tune", "choose a recipe by cross-validation on train + validation, train it"
    )
    add_options(tune, TuneOptions)
    tune.set_defaults(run=_cmd_tune, resume=None)

    evaluate = commands.add_parser("eval", help="measure a trained classifier on labelled data")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--data", type=Path, help="labelled file (default: the run's test split)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument(
        "--threshold",
        type=float,
        help="p(second class) cut-off, two classes; multi-label: every label's "
        "(default: the run's)",
    )
    add_options(evaluate, EvalOptions, keep_defaults=True)
    add_options(evaluate, TrainConfig, ["compare_baseline"], keep_defaults=True)
    add_options(evaluate, DataSource, READING_OPTIONS, keep_defaults=True)
    _add_device_option(evaluate)
    evaluate.set_defaults(run=_cmd_eval)

    report = commands.add_parser(
        "report", help="a run's data, recipe, curves, metrics and mistakes as one HTML file"
    )
    report.add_argument("run_dir", type=Path)
    report.add_argument(
        "--out", type=Path, help="the HTML file to write (default: the run folder's report.html)"
    )
    _add_device_option(report)
    report.set_defaults(run=_cmd_report)

    predict = commands.add_parser("predict", help="classify texts with a trained classifier")
    predict.add_argument("run_dir", type=Path)
    predict.add_argument("texts", nargs="*", help="texts to classify")
    predict.add_argument("--input", type=Path, help="CSV/TSV/JSONL file of texts")
    predict.add_argument(
        "--output", type=Path, help="CSV or JSONL file for the predictions (folders made)"
    )
    add_options(
        predict, DataSource, ["text_column", "text_pair_column", "encoding"], keep_defaults=True
    )
    predict.add_argument(
        "--pair", action="append", help="for a model of text pairs: each text's pair, in order"
    )
    predict.add_argument("--json", action="store_true", help="print JSON lines")
    add_options(predict, PredictOptions, keep_defaults=True)
    _add_device_option(predict)
    predict.set_defaults(run=_cmd_predict, data_parallel=True)

    explain = commands.add_parser("explain", help="which tokens pushed a text's decision")
    explain.add_argument("run_dir", type=Path)
    explain.add_argument("text", help="the text to explain")
    add_options(explain, ExplainOptions, keep_defaults=True)
    explain.add_argument("--html", type=Path, help="also write the shaded text as an HTML page")
    explain.add_argument("--json", action="store_true", help="print one JSON object")
    _add_device_option(explain)
    explain.set_defaults(run=_cmd_explain)

    baseline = commands.add_parser("baseline", help="TF-IDF + logistic regression on the same data")
    add_options(baseline, DataSource)
    baseline.add_argument("--split-out", type=Path, help="folder for a split made on the fly")
    baseline.add_argument("--json", action="store_true", help="print one JSON object")
    baseline.set_defaults(run=_cmd_baseline)

    _add_serve_command(commands)

    export = commands.add_parser(
        "export", help="the classifier for transformers (hf) or ONNX Runtime (onnx)"
    )
    export.add_argument("run_dir", type=Path)
    export.add_argument("--format", choices=FORMATS, required=True, help="what to write")
    export.add_argument("--out", type=Path, required=True, help="the new folder to write")
    export.set_defaults(run=_cmd_export)

    imported = commands.add_parser(
        "import", help="a Hugging Face *ForSequenceClassification folder as a run folder"
    )
    imported.add_argument("folder", type=Path)
    imported.add_argument("--out", type=Path, required=True, help="the new run folder")
    imported.set_defaults(run=_cmd_import)

    cache = commands.add_parser("cache", help="the on-disk store of frozen-prefix states")
    cache.add_argument("action", choices=["info", "clear"], help="show it, or empty it")
    cache.add_argument("--json", action="store_true", help="info: print one JSON object")
    cache.set_defaults(run=_cmd_cache)
    return parser


def _add_data_commands(data: argparse.ArgumentParser) -> None:
    data_commands = data.add_subparsers(dest="data_command", required=True)
    for name, what, options in (
        ("sms-spam", "the SMS Spam Collection", ["protocol"]),
        ("spamassassin", "the SpamAssassin public corpus", []),
        ("20news", "20 Newsgroups (by date, subsampled per class)", ["per_class"]),
    ):
        built_in = data_commands.add_parser(name, help=f"prepare the splits of {what}")
        add_options(built_in, DataSource, options, keep_defaults=True)
        built_in.add_argument("--out", type=Path, help="folder for the split CSVs (default: cache)")
        built_in.add_argument("--info", action="store_true", help="show citation and licence")
        built_in.set_defaults(run=_cmd_data_built_in)

    inspect = data_commands.add_parser("inspect", help="summarise a labelled file, checking it")
    inspect.add_argument("file", type=Path)
    add_options(inspect, DataSource, READING_OPTIONS, keep_defaults=True)
    add_options(inspect, TrainConfig, ["model", "max_length", "truncate"], keep_defaults=True)
    inspect.set_defaults(run=_cmd_data_inspect)

    audit = data_commands.add_parser(
        "audit", help="rank the rows most likely mislabelled (cross-validation, confident learning)"
    )
    audit.add_argument("file", type=Path)
    add_options(audit, DataSource, READING_OPTIONS, keep_defaults=True)
    add_options(audit, AuditOptions, keep_defaults=True)
    audit.add_argument("--preset", choices=["book"], help="a complete recipe (book: chapter 6)")
    add_options(audit, TrainConfig)
    audit.add_argument("--out", type=Path, help="CSV file for every row, ranked")
    audit.set_defaults(run=_cmd_data_audit)

    split = data_commands.add_parser("split", help="split one labelled file, stratified, seeded")
    split.add_argument("file", type=Path)
    split.add_argument("--out", type=Path, required=True, help="folder for the split files")
    add_options(split, DataSource, [*READING_OPTIONS, "fractions"], keep_defaults=True)
    split.add_argument(
        "--seed", dest="split_seed", type=int, default=DataSource.split_seed, help="split seed"
    )
    split.set_defaults(run=_cmd_data_split)


def _add_serve_command(commands: argparse._SubParsersAction) -> None:
    from gptclf.serve import ServeSettings

    serve = commands.add_parser("serve", help="classify over HTTP, with a page to try it")
    serve.add_argument("run_dir", type=Path)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="0: any free port")
    add_options(serve, ServeSettings)
    serve.set_defaults(run=_cmd_serve, own_signals=True)  # uvicorn's graceful stop


def _add_device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help="cuda: under torchrun each process uses the GPU of its local rank",
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
    torchrun every process raises it) and exit status 2. SIGTERM is handled like Ctrl-C (files
    being written are removed), then one line and exit status 143 (128 + SIGTERM); ``serve``
    handles its signals itself."""
    try:
        args = _parse(argv)
        if launched_in_parallel() and not getattr(args, "data_parallel", False):
            raise GptclfError(
                f"gptclf {args.command} runs in one process; start it without torchrun"
            )
        with nullcontext() if getattr(args, "own_signals", False) else sigterm_interrupts():
            args.run(args)
    except BaseException as exc:
        if was_terminated(exc):  # first: SIGTERM may have set off any other error
            if is_main_process():
                print("gptclf: terminated (SIGTERM)", file=sys.stderr)
            return TERMINATED
        if not isinstance(exc, GptclfError):
            raise
        if is_main_process():
            print(f"gptclf: error: {exc}", file=sys.stderr)
        return 2
    return 0
