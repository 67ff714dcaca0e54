"""``gptclf report``: a run's story in one self-contained HTML file (its styles inline, its
pictures as data URIs, no script): the data, the recipe, the training curves, the validation and
test metrics (and the baseline's where the run compared), the confusion matrix, the
precision-recall and calibration pictures, the test texts it got wrong, the most confident
first, and those it was least sure about."""

from __future__ import annotations

import base64
import dataclasses
import html
import tempfile
from pathlib import Path

from gptclf.atomic import write_text_atomic
from gptclf.data.summary import PERCENTILES, class_balance
from gptclf.evaluate import Evaluation, write_pictures
from gptclf.metrics import headline_figures
from gptclf.mistakes import Outcome, confident_mistakes, least_sure, outcomes
from gptclf.options import default_of
from gptclf.recipe import TrainConfig
from gptclf.run import RunConfig, RunDir, read_run_config
from gptclf.run.record import read_metrics

MISTAKES_SHOWN = 200  # the most confident; the report says how many more there are
LEAST_SURE_SHOWN = 10
INLINED_PICTURES = ("reliability", "precision_recall")  # the confusion matrix is a table

STYLE = """
:root { color-scheme: light dark; --fg: #1f2328; --bg: #fff; --muted: #59636e;
  --line: #d1d9e0; --wrong: #b42318; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9198a1; --line: #3d444d;
    --wrong: #ff7b72; }
}
body { font: 15px/1.5 system-ui, sans-serif; color: var(--fg); background: var(--bg);
  max-width: 64rem; margin: 0 auto; padding: 1rem 1.5rem 4rem; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid var(--line); padding-bottom: .2rem;
  margin-top: 2.2rem; }
.muted, caption { color: var(--muted); }
table { border-collapse: collapse; margin: 0.6rem 0; }
caption { text-align: left; caption-side: top; padding-bottom: .3rem; }
th, td { border-bottom: 1px solid var(--line); padding: .25rem .8rem .25rem 0;
  text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.text { white-space: pre-wrap; overflow-wrap: anywhere; max-width: 36rem; }
.wrong { color: var(--wrong); font-weight: 600; }
figure { display: inline-block; width: 30rem; max-width: 100%; margin: .5rem 1rem .5rem 0; }
img { width: 100%; height: auto; background: #fff; border: 1px solid var(--line); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; }
dt { color: var(--muted); } dd { margin: 0; }
"""


def write_report(run_dir: RunDir, test: Evaluation | None, out: Path | None = None) -> Path:
    """Write the report of the run in ``run_dir`` to ``out`` (default: the run folder's
    ``report.html``), ``test`` being the run measured on its test split (None: it has none)."""
    path = out or run_dir.report
    write_text_atomic(path, report_html(run_dir, test))
    return path


def report_html(run_dir: RunDir, test: Evaluation | None) -> str:
    """The report of the run in ``run_dir`` as one HTML document."""
    config = read_run_config(run_dir)
    recorded = read_metrics(run_dir)
    decided = outcomes(test) if test is not None else []
    sections = [
        _overview(run_dir, config, recorded),
        _data_section(recorded.get("data")),
        _recipe_section(config),
        _training_section(run_dir, recorded),
        _metrics_section(recorded, test),
        _pictures_section(test),
        _mistakes_section(decided, test),
        _least_sure_section(decided),
    ]
    title = f"gptclf report: {run_dir.root.name}"
    return (
        f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<h1>{_e(title)}</h1>\n" + "\n".join(sections) + "\n</body>\n</html>\n"
    )


def _e(value: object) -> str:
    """``value`` as HTML text."""
    return html.escape(str(value), quote=True)


def _table(
    header: list[str], rows: list[list[str]], caption: str = "", styles: dict | None = None
) -> str:
    """An HTML table of already-escaped cells; ``styles`` maps a column to its CSS class."""
    styles = styles or {}

    def cells(tag: str, row: list[str]) -> str:
        return "".join(
            f'<{tag} class="{styles[i]}">{cell}</{tag}>'
            if i in styles
            else f"<{tag}>{cell}</{tag}>"
            for i, cell in enumerate(row)
        )

    head = f"<thead><tr>{cells('th', header)}</tr></thead>"
    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    shown = f"<caption>{_e(caption)}</caption>" if caption else ""
    return f"<table>{shown}{head}<tbody>{body}</tbody></table>"


def _numeric(*columns: int) -> dict:
    """``styles`` of :func:`_table` that right-align ``columns``."""
    return dict.fromkeys(columns, "n")


def _overview(run_dir: RunDir, config: RunConfig, recorded: dict) -> str:
    """What the model is and when it was trained."""
    facts = {
        "run folder": str(run_dir.root),
        "base model": config.base_model,
        "labels": ", ".join(config.label_map.names)
        + (" (multi-label)" if config.label_map.multi_label else ""),
        "trained": recorded.get("finished_at", "not recorded"),
        "tokens per text": f"up to {config.max_length}",
    }
    if config.ensemble:
        weight = config.ensemble["weight"]
        facts["blends"] = f"with the TF-IDF baseline, the model's weight {weight}"
    if config.decision:
        facts["decides by"] = ", ".join(f"{k} {v}" for k, v in config.decision.items())
    listed = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts.items())
    return f"<dl>{listed}</dl>"


def _data_section(summaries: list[dict] | None) -> str:
    """Each split's rows, class balance, token lengths and truncated texts."""
    if not summaries:
        return "<h2>Data</h2><p class=muted>This run did not record its data summary.</p>"
    lengths_shown = [*(f"p{p}" for p in PERCENTILES), "max"]
    header = ["split", "rows", "dropped empty", "class balance"]
    header += [f"tokens {' / '.join(lengths_shown)}", "truncated"]
    rows = []
    for s in summaries:
        balance = class_balance(s["class_counts"], s["rows"])
        lengths = " / ".join(str(s["token_percentiles"].get(k, "-")) for k in lengths_shown)
        truncated = f"{s['truncated']} (over {s['max_length']} tokens)"
        row = [s["name"], str(s["rows"]), str(s["dropped_empty"]), balance, lengths, truncated]
        rows.append([_e(cell) for cell in row])
    return "<h2>Data</h2>" + _table(header, rows, styles=_numeric(1, 2))


def _recipe_section(config: RunConfig) -> str:
    """The recipe's options, those changed from their defaults first."""
    recipe = config.recipe
    changed, unchanged = [], []
    for f in dataclasses.fields(TrainConfig):
        value = getattr(recipe, f.name)
        row = [_e(f.name.replace("_", "-")), _e(_plain(value))]
        (unchanged if value == default_of(f) else changed).append(row)
    table = _table(["option", "value"], changed, "changed from the defaults")
    rest = _table(["option", "value"], unchanged)
    return (
        f"<h2>Recipe</h2>{table}<details><summary>the {len(unchanged)} options left at "
        f"their defaults</summary>{rest}</details>"
    )


def _plain(value: object) -> str:
    return "-" if value is None else str(value)


def _training_section(run_dir: RunDir, recorded: dict) -> str:
    """The loss and accuracy curves, and how long training took."""
    facts = [
        ("epochs run", recorded.get("epochs_run")),
        ("best validation epoch", recorded.get("best_epoch")),
        ("preparing (load, tokenize, frozen prefix)", _seconds(recorded.get("prepare_seconds"))),
        ("training", _seconds(recorded.get("train_seconds"))),
        (
            "trainable parameters",
            f"{recorded['trainable_parameters']:,} of {recorded['total_parameters']:,}"
            if "trainable_parameters" in recorded
            else None,
        ),
    ]
    listed = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts if v is not None)
    figures = [
        _figure(path.read_bytes(), f"training {metric}")
        for metric, path in run_dir.curves.items()
        if path.is_file()
    ]
    return "<h2>Training</h2>" + f"<dl>{listed}</dl>" + "".join(figures)


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:.1f} s"


def _figure(png: bytes, caption: str) -> str:
    """A PNG inlined as a data URI, with its caption."""
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img src="{uri}" alt="{_e(caption)}">'
        f"<figcaption class=muted>{_e(caption)}</figcaption></figure>"
    )


def _metrics_section(recorded: dict, test: Evaluation | None) -> str:
    """The headline figures on validation and test, the baseline's beside them where the run
    compared with it."""
    measured = {name: recorded[name] for name in ("validation", "test") if name in recorded}
    if test is not None:
        measured["test"] = test.metrics
    baseline = recorded.get("baseline", {})
    columns = [(f"model, {name}", m) for name, m in measured.items()]
    columns += [(f"baseline, {n}", baseline[n]) for n in ("validation", "test") if n in baseline]
    if not columns:
        return "<h2>Metrics</h2><p class=muted>This run has no validation or test metrics.</p>"
    figures = [dict(headline_figures(metrics)) for _, metrics in columns]
    rows = [
        [_e(name), *(_e(f.get(name, "-")) for f in figures)]
        for name, _ in headline_figures(columns[0][1])
    ]
    header = ["metric", *(_e(name) for name, _ in columns)]
    note = f"<p class=muted>baseline: {_e(baseline['model'])}</p>" if "model" in baseline else ""
    styles = _numeric(*range(1, len(header)))
    return "<h2>Metrics</h2>" + _table(header, rows, styles=styles) + note


def _pictures_section(test: Evaluation | None) -> str:
    """The test split's confusion matrix (a table), precision-recall and reliability."""
    if test is None:
        return "<h2>Test split</h2><p class=muted>The run has no test split.</p>"
    parts = ["<h2>Test split</h2>"]
    if "confusion_matrix" in test.metrics:
        parts.append(_confusion_table(test.metrics))
    with tempfile.TemporaryDirectory() as folder:
        paths = {name: Path(folder) / f"{name}.png" for name in INLINED_PICTURES}
        for name in write_pictures(test, paths):
            parts.append(_figure(paths[name].read_bytes(), name.replace("_", "-")))
    return "".join(parts)


def _confusion_table(metrics: dict) -> str:
    """The confusion matrix, rows the true class and columns the predicted one."""
    names = metrics["labels"]
    header = ["true \\ predicted", *(_e(n) for n in names)]
    rows = [
        [_e(name), *(str(count) for count in counts)]
        for name, counts in zip(names, metrics["confusion_matrix"], strict=True)
    ]
    return _table(header, rows, "confusion matrix", _numeric(*range(1, len(header))))


def _mistakes_section(decided: list[Outcome], test: Evaluation | None) -> str:
    """The test texts decided wrong, the most confident first."""
    if test is None:
        return ""
    wrong = confident_mistakes(decided)
    if not wrong:
        return "<h2>Mistakes</h2><p>None: every test text was decided right.</p>"
    shown = wrong[:MISTAKES_SHOWN]
    more = len(wrong) - len(shown)
    caption = (
        f"{len(wrong)} of {len(decided)} test texts, the most confident first"
        + (f" (the first {len(shown)} shown)" if more else "")
        + f"; rows of {test.path}"
    )
    return "<h2>Mistakes</h2>" + _outcome_table(shown, caption)


def _least_sure_section(decided: list[Outcome]) -> str:
    """The test texts closest to being decided otherwise."""
    if not decided:
        return ""
    shown = least_sure(decided, LEAST_SURE_SHOWN)
    caption = "the test texts closest to being decided otherwise (margin 0: on the edge)"
    return "<h2>Least sure</h2>" + _outcome_table(shown, caption, margin=True)


def _outcome_table(shown: list[Outcome], caption: str, margin: bool = False) -> str:
    header = ["row", "text", "true", "predicted", "probability", *(["margin"] if margin else [])]
    rows = []
    for o in shown:
        text = o.text if o.pair is None else f"{o.text}\n— {o.pair}"
        predicted = f'<span class="wrong">{_e(o.predicted)}</span>' if o.wrong else _e(o.predicted)
        row = [str(o.row), _e(text), _e(o.truth), predicted, f"{o.probability:.4f}"]
        rows.append(row + ([f"{o.margin:.4f}"] if margin else []))
    return _table(header, rows, caption, {**_numeric(0, 4, 5), 1: "text"})
