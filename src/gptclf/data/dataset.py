"""Where training data comes from: a built-in data set (SMS spam, SpamAssassin, 20 Newsgroups),
one file split on the fly, or
separate train/validation/test files; read, checked, and given one label map."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from gptclf.data.cells import listed_rows
from gptclf.data.labels import LabelMap
from gptclf.data.readers import LabelledTexts, read_labelled
from gptclf.data.splits import SPLIT_NAMES, stratified_split, write_split
from gptclf.data.summary import SplitSummary, summarize_split
from gptclf.data.tokenized import TokenizedTexts, tokenize
from gptclf.errors import GptclfError
from gptclf.options import option
from gptclf.tokenizers import Tokenizer

BUILT_IN_DATASETS = ("sms-spam", "spamassassin", "20news")
LABEL_NAMES_FILE = "labels.json"


DATA = "data (one of --dataset, --data, --train)"


@dataclass
class DataSource:
    """Exactly one of ``dataset``, ``data`` or ``train`` (with optional validation/test)."""

    dataset: str | None = option(
        None, "a built-in dataset", choices=(None, *BUILT_IN_DATASETS), group=DATA
    )
    protocol: str = option(
        "book", "how the built-in SMS data is split", choices=("book", "full"), group=DATA
    )
    per_class: tuple[int, int, int] = option(
        (200, 40, 100),
        "examples per class in the built-in 20news train, validation and test splits",
        metavar=("TRAIN", "VAL", "TEST"),
        valid=lambda counts: min(counts) >= 1,
        rule="at least 1 each",
        group=DATA,
    )
    data: Path | None = option(None, "one labelled file, split on the fly", group=DATA)
    train: Path | None = option(None, "training file", group=DATA)
    validation: Path | None = option(None, "validation file", flags=("--val",), group=DATA)
    test: Path | None = option(None, "test file", group=DATA)
    text_column: str | None = option(
        None, "column holding the text (default: detected)", group=DATA
    )
    label_column: str | None = option(
        None, "column holding the label (default: detected)", group=DATA
    )
    text_pair_column: str | None = option(
        None,
        "column holding a second text classified together with the text (question and answer, "
        "claim and evidence), joined as --template says",
        group=DATA,
    )
    label_separator: str | None = option(
        None,
        "multi-label: the label column holds several labels joined by this, e.g. '|' "
        "(JSONL and Parquet lists need no separator)",
        group=DATA,
    )
    label_columns: str | None = option(
        None, "multi-label: a 0/1 column per label, comma-separated names: a,b,c", group=DATA
    )
    encoding: str = option("utf-8", "text encoding of the file", group=DATA)
    strict: bool = option(False, "empty texts are an error", group=DATA)
    fractions: tuple[float, float, float] = option(
        (0.7, 0.1, 0.2), "split of --data", metavar=("TRAIN", "VAL", "TEST"), group=DATA
    )
    split_seed: int = option(123, "seed of the --data split", group=DATA)

    def reading(self) -> dict:
        """The options of reading a labelled file."""
        return {name: getattr(self, name) for name in READING_OPTIONS}


READING_OPTIONS = (
    "text_column",
    "text_pair_column",
    "label_column",
    "label_separator",
    "label_columns",
    "encoding",
    "strict",
)


@dataclass
class Splits:
    """Labelled texts per split, their shared label map, and the file each split lives in."""

    parts: dict[str, LabelledTexts]
    labels: LabelMap
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def has_pairs(self) -> bool:
        """Whether each example is a pair of texts."""
        return self.parts["train"].pairs is not None

    def require_single_texts(self, what: str) -> None:
        """Refuse pairs of texts where ``what`` reads one text per example."""
        if self.has_pairs:
            raise GptclfError(f"{what} reads one text per example, not pairs of texts")


def _split_files(source: DataSource) -> tuple[dict[str, Path], bool]:
    """The file of each split, and whether they were split from one file just now."""
    ways = [source.dataset is not None, source.data is not None, source.train is not None]
    if sum(ways) != 1:
        raise GptclfError("give exactly one of --dataset, --data FILE, or --train FILE")
    if source.dataset is not None:
        if source.dataset not in BUILT_IN_DATASETS:
            raise GptclfError(
                f"unknown dataset {source.dataset!r}; built in: {', '.join(BUILT_IN_DATASETS)}"
            )
        paths = prepare_built_in(source)
        return {name: paths[name] for name in SPLIT_NAMES}, False
    if source.data is not None:
        return {"data": source.data}, True
    files = {"train": source.train, "validation": source.validation, "test": source.test}
    return {name: path for name, path in files.items() if path is not None}, False


def prepare_built_in(source: DataSource, out_dir: Path | None = None, log=None) -> dict[str, Path]:
    """Fetch (once) and split the built-in data set ``source.dataset``; the paths of its split
    files and ``labels``."""
    if source.dataset == "sms-spam":
        from gptclf.data.sms_spam import prepare_sms_spam

        return prepare_sms_spam(source.protocol, out_dir, log=log)
    if source.dataset == "spamassassin":
        from gptclf.data.spamassassin import prepare_spamassassin

        return prepare_spamassassin(out_dir, log=log)
    from gptclf.data.newsgroups import prepare_newsgroups

    return prepare_newsgroups(source.per_class, out_dir, log=log)


def _read(path: Path, source: DataSource) -> LabelledTexts:
    return read_labelled(path, **source.reading())


def label_names_beside(train_file: Path) -> dict | None:
    """Display names for label values from a ``labels.json`` beside the training file."""
    path = train_file.parent / LABEL_NAMES_FILE
    if not path.is_file():
        return None
    try:
        names = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GptclfError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(names, dict):
        raise GptclfError(f"{path}: expected an object mapping label values to names")
    return names


def load_splits(source: DataSource, split_dir: Path | None = None) -> Splits:
    """Read (and if needed split and write to ``split_dir``) the data, with one label map made
    from the training labels; validation or test labels never seen in training are an error.
    A split made without ``split_dir`` is kept in memory only (no ``files``)."""
    files, split_now = _split_files(source)
    if split_now:
        parts = stratified_split(_read(files["data"], source), source.fractions, source.split_seed)
        files = write_split(parts, split_dir) if split_dir is not None else {}
        names = None
    else:
        parts = {name: _read(path, source) for name, path in files.items()}
        names = label_names_beside(files["train"])
    train = parts["train"]
    labels = LabelMap.from_labels(train.labels, names, train.source, train.multi_label)
    for part in parts.values():
        labels.targets(part.labels, part.source)
    return Splits(parts, labels, files)


def tokenize_splits(
    splits: Splits,
    tokenizer: Tokenizer,
    max_length: int,
    side: str = "head",
    template: str | None = None,
    chunks: bool = False,
) -> tuple[dict[str, TokenizedTexts], list[SplitSummary]]:
    """Token ids of every split (cached) and the summary shown before training."""
    tokens = {
        name: tokenize(
            tokenizer, part.texts, max_length, side, template, chunks=chunks, pairs=part.pairs
        )
        for name, part in splits.parts.items()
    }
    for name, part in splits.parts.items():
        check_every_text_has_tokens(part, tokens[name])
    summaries = [
        summarize_split(name, part, tokens[name], splits.labels)
        for name, part in splits.parts.items()
    ]
    return tokens, summaries


def check_every_text_has_tokens(data: LabelledTexts, tokens: TokenizedTexts) -> None:
    """A text made only of characters the vocabulary cannot represent has no tokens: an error."""
    empty = [row for row, n in zip(data.rows, tokens.text_lengths, strict=True) if n == 0]
    if empty:
        raise GptclfError(
            f"{data.source}: the tokenizer turns the text of row(s) {listed_rows(empty)} "
            "into no tokens"
        )
