"""``gptclf predict`` over texts and files: its options, the lines and records it writes, and
streaming prediction over files of any size, in order, with several processes if launched so."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from functools import partial
from itertools import chain
from pathlib import Path
from typing import TextIO

import numpy as np

from gptclf.atomic import atomic_path, check_writable
from gptclf.data.cells import SHOWN_ROWS, listed_rows
from gptclf.data.streaming import text_chunks
from gptclf.distributed import LOCAL, DistributedContext
from gptclf.errors import GptclfError
from gptclf.onnx_runtime import runtime_option
from gptclf.options import at_least, option
from gptclf.predict import LABEL_JOINER, NO_TEXT, ON_EMPTY_HINT, Classifier, Prediction

ON_EMPTY = ("error", "skip", "mark")
OUTPUT_FORMATS = {".csv": False, ".jsonl": True, ".ndjson": True}  # suffix: written as JSON


@dataclass
class PredictOptions:
    """How ``gptclf predict`` classifies texts and files."""

    on_empty: str = option(
        "error",
        "a text or --input row with no text to classify (empty, or nothing the tokenizer can "
        "represent): an error; skipped, left out of the output; or marked, written with an "
        "empty label and empty probabilities. Skipped and marked rows are counted on stderr",
        choices=ON_EMPTY,
    )
    batch_size: int = option(32, "texts per model call", **at_least(1))
    chunk_rows: int = option(1024, "rows of --input read and classified at once", **at_least(1))
    runtime: str = runtime_option()


@dataclass
class Tally:
    """Texts classified, and those with no text to classify that were skipped or marked: how
    many, and the numbers of the first few."""

    classified: int = 0
    empty: int = 0
    first_empty: list[int] = field(default_factory=list)

    def count(self, number: int, probabilities: np.ndarray | None) -> None:
        if probabilities is not None:
            self.classified += 1
            return
        self.empty += 1
        if len(self.first_empty) < SHOWN_ROWS:
            self.first_empty.append(number)

    def note(self, on_empty: str, noun: str) -> str | None:
        """The message, e.g. "2 rows with nothing to classify skipped: rows 4, 9"; None if none."""
        if not self.empty:
            return None
        nouns = noun + ("s" if self.empty > 1 else "")
        done = "skipped" if on_empty == "skip" else "written with an empty label"
        listed = listed_rows(self.first_empty, self.empty)
        return f"{self.empty} {nouns} with nothing to classify {done}: {nouns} {listed}"


def as_record(
    text: str, prediction: Prediction | None, multi_label: bool = False, pair: str | None = None
) -> dict:
    """A prediction as a JSON object (with the text's ``pair`` where it has one); a text with
    none has label and probability null and no probabilities (multi-label: ``labels`` null)."""
    read = {"text": text} | ({} if pair is None else {"pair": pair})
    if prediction is None:
        empty = {"labels": None} if multi_label else {"label": None, "probability": None}
        return {**read, **empty, "probabilities": {}}
    if prediction.labels is not None:
        labels, probabilities = list(prediction.labels), prediction.probabilities
        return {**read, "labels": labels, "probabilities": probabilities}
    record = {k: v for k, v in asdict(prediction).items() if k != "labels"}
    return {**read, **record}


def text_line(
    text: str,
    prediction: Prediction | None,
    as_json: bool,
    multi_label: bool = False,
    pair: str | None = None,
) -> str:
    """One text as ``gptclf predict`` prints it: a JSON object, or label, probability and text
    (then its pair, where it has one) between tabs (label and probability empty where there is
    no prediction); multi-label, the labels decided and their probabilities, each joined by
    ``LABEL_JOINER``."""
    if as_json:
        return json.dumps(as_record(text, prediction, multi_label, pair))
    read = text if pair is None else f"{text}\t{pair}"
    if prediction is None:
        return f"\t\t{read}"
    if prediction.labels is not None:
        chosen = prediction.labels
        shown = LABEL_JOINER.join(f"{prediction.probabilities[n]:.4f}" for n in chosen)
        return f"{LABEL_JOINER.join(chosen)}\t{shown}\t{read}"
    return f"{prediction.label}\t{prediction.probability:.4f}\t{read}"


def predict_texts(
    classifier: Classifier,
    texts: Sequence[str],
    options: PredictOptions,
    pairs: Sequence[str] | None = None,
) -> tuple[list[tuple[int, Prediction | None]], Tally]:
    """The position of each text with its prediction (None: no text to classify, marked),
    those skipped left out, and the tally."""
    probabilities = classifier.probabilities_or_none(
        texts, lambda i: f"text {i + 1}", options.on_empty, options.batch_size, pairs
    )
    tally, rows = Tally(), []
    for number, p in enumerate(probabilities, 1):
        tally.count(number, p)
        if p is not None or options.on_empty == "mark":
            rows.append((number - 1, None if p is None else classifier.prediction(p)))
    return rows, tally


def check_texts(
    texts: Sequence[str] | Sequence[tuple[str, str]], on_empty: str, where: Callable[[int], str]
) -> None:
    """Before the model loads: an empty text (or either text of a pair) is an error with
    ``on_empty`` "error" (a text the tokenizer cannot represent is found later, when it
    tokenizes)."""
    empty = [
        i for i, text in enumerate(texts) if not all(text if isinstance(text, tuple) else [text])
    ]
    if on_empty == "error" and empty:
        raise GptclfError(f"{where(empty[0])}: {NO_TEXT}; {ON_EMPTY_HINT}")


def output_is_json(path: Path) -> bool:
    """Whether predictions go to ``path`` as JSON lines (else CSV), by its suffix."""
    if path.suffix.lower() not in OUTPUT_FORMATS:
        raise GptclfError(f"{path}: --output must be .csv or .jsonl")
    return OUTPUT_FORMATS[path.suffix.lower()]


def predict_file(
    classifier: Classifier | Callable[[], Classifier],
    input_path: Path,
    output_path: Path,
    options: PredictOptions | None = None,
    text_column: str | None = None,
    encoding: str = "utf-8",
    dist: DistributedContext = LOCAL,
    pair_column: str | None = None,
) -> Tally:
    """Classify every row of ``input_path`` (CSV/TSV/JSONL) into ``output_path`` (CSV or JSONL
    by suffix), in input order, chunk by chunk so memory stays bounded; the output appears only
    when complete. Both files are checked before any slow work: the output's suffix, that it is
    no folder and that its folder takes files (a missing folder is made when the output is
    written); the input's header, text column and first chunk. ``classifier`` may be a function
    that loads it, called after the checks. With several ranks each classifies its share of
    every chunk and the main rank writes. With ``pair_column``, each row's text and pair are
    classified together (a model of text pairs)."""
    options = options or PredictOptions()
    as_json = output_is_json(output_path)
    dist.on_main(lambda: check_writable(output_path))
    with text_chunks(input_path, text_column, encoding, options.chunk_rows, pair_column) as chunks:
        first = next(chunks)
        check_texts(first, options.on_empty, lambda i: f"{input_path}: row {i + 1}")
        if not isinstance(classifier, Classifier):
            classifier = classifier()
        rows = _classified_rows(classifier, chain([first], chunks), input_path, options, dist)
        with ExitStack() as stack:
            target = stack.enter_context(atomic_path(output_path)) if dist.is_main else os.devnull
            out = stack.enter_context(open(target, "w", encoding="utf-8", newline=""))
            return _write(rows, out, classifier, as_json, options.on_empty)


Example = str | tuple[str, str]  # a text, or a text and its pair


def _unzipped(examples: Sequence[Example]) -> tuple[list[str], list[str] | None]:
    """The texts of ``examples`` and, where they are pairs, the pairs."""
    if examples and isinstance(examples[0], tuple):
        return [text for text, _ in examples], [pair for _, pair in examples]
    return list(examples), None


def _classify_rows(
    classifier: Classifier,
    examples: list[Example],
    first_row: int,
    input_path: Path,
    options: PredictOptions,
    positions: slice,
) -> list[np.ndarray | None]:
    """Class probabilities of the texts (or pairs) of one chunk at ``positions`` (None: no
    text, skipped or marked); errors name a row by its number in the file, the chunk starting
    at ``first_row``."""
    rows = range(len(examples))[positions]
    texts, pairs = _unzipped([examples[i] for i in rows])
    return classifier.probabilities_or_none(
        texts,
        lambda i: f"{input_path}: row {first_row + rows[i] + 1}",
        options.on_empty,
        options.batch_size,
        pairs,
    )


def _classified_rows(
    classifier: Classifier,
    chunks: Iterable[list[Example]],
    input_path: Path,
    options: PredictOptions,
    dist: DistributedContext,
) -> Iterator[tuple[int, Example, np.ndarray | None]]:
    """Each row's number, text (or pair) and class probabilities (None: no text). Every rank
    reads the chunk and classifies its share of the rows; every rank gets them all, in order."""
    first_row = 0
    for examples in chunks:
        classify = partial(_classify_rows, classifier, examples, first_row, input_path, options)
        numbers = range(first_row + 1, first_row + len(examples) + 1)
        yield from zip(numbers, examples, dist.gather_shards(classify), strict=True)
        first_row += len(examples)


def _write(
    rows: Iterable[tuple[int, Example, np.ndarray | None]],
    out: TextIO,
    classifier: Classifier,
    as_json: bool,
    on_empty: str,
) -> Tally:
    """Write the rows as CSV or JSON lines (those with no text left out when skipped)."""
    names, multi_label = classifier.labels.names, classifier.labels.multi_label
    writer = None if as_json else csv.writer(out, lineterminator="\n")
    if writer:
        read = ["text", "pair"] if classifier.takes_pairs else ["text"]
        decided = ["labels"] if multi_label else ["label", "probability"]
        writer.writerow([*read, *decided, *[f"p_{n}" for n in names]])
    tally = Tally()
    for number, example, p in rows:
        tally.count(number, p)
        if p is None and on_empty == "skip":
            continue
        text, pair = example if isinstance(example, tuple) else (example, None)
        read = [text] if pair is None else [text, pair]
        prediction = None if p is None else classifier.prediction(p)
        if writer is None:
            out.write(json.dumps(as_record(text, prediction, multi_label, pair)) + "\n")
        elif prediction is None:
            writer.writerow([*read, *[""] * (len(names) + 2 - multi_label)])
        elif multi_label:
            chosen = LABEL_JOINER.join(prediction.labels)
            writer.writerow([*read, chosen, *[f"{v:.6f}" for v in p]])
        else:
            probability = f"{prediction.probability:.6f}"
            writer.writerow([*read, prediction.label, probability, *[f"{v:.6f}" for v in p]])
    return tally
