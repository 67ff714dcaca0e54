"""Cross-validation of recipe changes on a data set of the quality suite, the way ``gptclf tune``
measures its candidates, without a budget: to measure changes too dear for tune's budget.

    .venv/bin/python benchmarks/crossval.py spamassassin chunks=mean chunks=max [--folds 3]
    .venv/bin/python benchmarks/crossval.py sms-book concat_depths=20 concat_depths=10,20

The base is the default recipe with the flags every gptclf row of the suite gets on the data set
(``--max-length 256`` on the long-text sets). Each change is ``option=value`` (a list: values
between commas); the base recipe is measured first. A candidate already in the results of the
same folds and base is not measured again. Train and validation are pooled and cut into
stratified folds; the test split is not read. Each candidate is reported alone and blended with
the TF-IDF baseline at the weight best on the out-of-fold probabilities, as tune ranks them.
Writes ``crossval-<data set>.json`` and ``.md`` into ``--out``, keeping the rows of earlier runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from quality import DATASETS, prepare_dataset, suite_splits

from gptclf.atomic import write_text_atomic
from gptclf.ensemble import blend, choose_weight
from gptclf.recipe import recipe
from gptclf.store import PrefixStore
from gptclf.training.prepare import base_model
from gptclf.tune.crossval import baseline_out_of_fold, cross_validate, fold_indices, measured
from gptclf.tune.search import _pooled
from gptclf.tune.space import Candidate


def change(text: str) -> tuple[str, dict]:
    """``option=value`` as a candidate's name and its changes (a value with commas: a list)."""
    name, _, value = text.partition("=")
    if not value:
        raise SystemExit(f"a change is option=value, not {text!r}")
    return text, {name: value.split(",") if "," in value else value}


def base_values(dataset: str) -> dict:
    """The recipe values of the flags every gptclf row gets on ``dataset``."""
    flags = DATASETS[dataset].gptclf_flags
    return {
        flag.lstrip("-").replace("-", "_"): value
        for flag, value in zip(flags[::2], flags[1::2], strict=True)
    }


def figures(ids: list[int], names: list[str], model, baseline) -> dict:
    """A candidate's out-of-fold figures, alone and blended with the baseline."""
    weight = choose_weight(ids, model.probabilities, baseline.probabilities)
    blended = measured(ids, blend(model.probabilities, baseline.probabilities, weight), names, 0)
    return {
        "errors": model.metrics["n_errors"],
        "accuracy": round(model.metrics["accuracy"], 4),
        "log_loss": round(model.log_loss, 4),
        "seconds": model.seconds,
        "blend_errors": blended.metrics["n_errors"],
        "blend_log_loss": round(blended.log_loss, 4),
        "blend_weight": float(weight),
    }


def markdown(dataset: str, results: dict) -> str:
    lines = [
        f"# Cross-validation on {dataset} ({results['folds']} folds, {results['texts']} texts)",
        "",
        f"TF-IDF baseline alone: {results['baseline']['errors']} errors, "
        f"log loss {results['baseline']['log_loss']}. Seconds: the candidate's folds, with the "
        "frozen-prefix pass where it is the first to read the texts its way (the base recipe, "
        "the first chunked candidate).",
        "",
        "| candidate | errors | log loss | seconds | blended: errors | log loss | weight |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in results["candidates"].items():
        lines.append(
            f"| {name} | {row['errors']} | {row['log_loss']} | {row['seconds']:.0f} | "
            f"{row['blend_errors']} | {row['blend_log_loss']} | {row['blend_weight']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=DATASETS)
    parser.add_argument("changes", nargs="*", help="option=value, e.g. chunks=mean")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    prepare_dataset(args.dataset)
    pooled = _pooled(suite_splits(args.dataset))
    base = recipe(**base_values(args.dataset))
    part = pooled.parts["train"]
    ids = pooled.labels.ids(part.labels, part.source)
    folds = fold_indices(ids, args.folds, base.seed)
    pretrained = base_model(base)
    store = PrefixStore.on_disk() if base.store else PrefixStore()
    baseline = baseline_out_of_fold(pooled, folds, base.seed)
    path = args.out / f"crossval-{args.dataset}.json"
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    same = earlier.get("folds") == args.folds and earlier.get("base") == base_values(args.dataset)
    results = {
        "folds": args.folds,
        "texts": len(ids),
        "base": base_values(args.dataset),
        "baseline": {
            "errors": baseline.metrics["n_errors"],
            "log_loss": round(baseline.log_loss, 4),
        },
        "candidates": earlier.get("candidates", {}) if same else {},
    }
    for name, changes in [("base recipe", {}), *map(change, args.changes)]:
        if name in results["candidates"]:
            continue  # measured in an earlier run on the same folds
        config = Candidate(name, changes).config(base)
        model = cross_validate(config, pooled, pretrained, store, folds)
        results["candidates"][name] = figures(ids, pooled.labels.names, model, baseline)
        print(name, results["candidates"][name], flush=True)
        write_text_atomic(path, json.dumps(results, indent=1) + "\n")
        write_text_atomic(path.with_suffix(".md"), markdown(args.dataset, results))


if __name__ == "__main__":
    main()
