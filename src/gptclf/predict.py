"""Using a trained classifier: ``Classifier.from_pretrained(run_dir)`` for Python, and streaming
prediction over files of any size for the command line."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gptclf.atomic import atomic_path
from gptclf.classifier import SequenceClassifier
from gptclf.data.labels import LabelMap
from gptclf.data.readers import choose_text_column
from gptclf.data.tokenized import frame, template_ids
from gptclf.distributed import CPU, LOCAL, DistributedContext, device_scope
from gptclf.errors import GptclfError
from gptclf.inference import logits_of
from gptclf.precision import resolve_precision
from gptclf.run import RunConfig, RunDir, load_run_model
from gptclf.tokenizers import Tokenizer


@dataclass(frozen=True)
class Prediction:
    label: str
    probability: float
    probabilities: dict[str, float]


class Classifier:
    """A trained text classifier: tokenizer, network and label names together."""

    def __init__(
        self,
        network: SequenceClassifier,
        tokenizer: Tokenizer,
        labels: LabelMap,
        config: RunConfig,
    ):
        self.network = network
        self.tokenizer = tokenizer
        self.labels = labels
        self.config = config
        self.device = CPU

    @classmethod
    def from_pretrained(cls, run_dir: str | Path) -> Classifier:
        network, tokenizer, config = load_run_model(RunDir(Path(run_dir)))
        return cls(network, tokenizer, config.label_map, config)

    def to(self, device: torch.device | str) -> Classifier:
        """Compute on ``device`` (e.g. ``"cuda:0"``) from now on; returns the classifier."""
        self.device = torch.device(device)
        self.network.to(self.device)
        return self

    def token_ids(
        self, texts: Sequence[str], where: Callable[[int], str] = lambda i: f"text {i + 1}"
    ) -> list[list[int]]:
        """Token ids as the model was trained to read them (same truncation side and length);
        a text without tokens is an error naming it by ``where(index)``."""
        if isinstance(texts, str):
            raise TypeError("predict takes a list of texts; use classify() for one text")
        ids = self.tokenizer.encode_batch(list(texts))
        empty = next((i for i, x in enumerate(ids) if not x), None)
        if empty is not None:
            raise GptclfError(f"{where(empty)}: no text to classify (empty or unrepresentable)")
        around = template_ids(self.tokenizer, self.config.template)
        return frame(ids, self.config.tokens_kept, self.config.recipe.truncate, around).ids

    def probabilities_of_ids(self, ids: list[list[int]], batch_size: int = 32) -> np.ndarray:
        """Class probabilities (n, n_classes), columns in label-id order."""
        if not ids:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        precision = resolve_precision(self.config.recipe.precision, self.device.type)
        with device_scope(self.device, precision):
            logits = logits_of(
                self.network,
                ids,
                self.tokenizer.pad_id,
                precision,
                batch_size=batch_size,
                pad_to=self.config.pad_to,
            )
        return logits.softmax(-1).numpy()

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Class probabilities (n_texts, n_classes), columns in label-id order."""
        return self.probabilities_of_ids(self.token_ids(texts), batch_size)

    def predict(self, texts: Sequence[str], batch_size: int = 32) -> list[Prediction]:
        """The most likely label of each text, its probability and every class's probability."""
        return [self.prediction(p) for p in self.predict_proba(texts, batch_size)]

    def classify(self, text: str) -> str:
        """The label name of one text, like the book's ``classify_review``."""
        return self.predict([text])[0].label

    def prediction(self, probabilities: np.ndarray) -> Prediction:
        best = int(probabilities.argmax())
        return Prediction(
            label=self.labels.names[best],
            probability=float(probabilities[best]),
            probabilities={
                n: float(p) for n, p in zip(self.labels.names, probabilities, strict=True)
            },
        )


def _chunks(path: Path, text_column: str | None, chunk_rows: int) -> Iterator[list[str]]:
    """Texts of a CSV/TSV/JSONL file in chunks of ``chunk_rows``, without reading it whole."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise GptclfError(f"{path}: file not found")
    if suffix in (".csv", ".tsv"):
        reader = pd.read_csv(
            path,
            sep="\t" if suffix == ".tsv" else ",",
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            chunksize=chunk_rows,
        )
    elif suffix in (".jsonl", ".ndjson"):
        reader = pd.read_json(path, lines=True, chunksize=chunk_rows, dtype=False)
    else:
        raise GptclfError(f"{path}: --input must be .csv, .tsv or .jsonl")
    column = None
    try:
        for chunk in reader:
            column = column or choose_text_column(chunk.columns, text_column, str(path))
            yield ["" if pd.isna(t) else str(t) for t in chunk[column]]
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise GptclfError(f"{path}: could not be read ({str(exc).splitlines()[0]})") from exc


def _classify_rows(
    classifier: Classifier,
    texts: list[str],
    first_row: int,
    input_path: Path,
    batch_size: int,
    positions: slice,
) -> list[np.ndarray]:
    """Class probabilities of the texts of one chunk at ``positions``; errors name a row by its
    number in the file, the chunk starting at ``first_row``."""
    rows = range(len(texts))[positions]
    ids = classifier.token_ids(
        [texts[i] for i in rows], lambda i: f"{input_path}: row {first_row + rows[i] + 1}"
    )
    return list(classifier.probabilities_of_ids(ids, batch_size))


def _classified_chunks(
    classifier: Classifier,
    input_path: Path,
    text_column: str | None,
    chunk_rows: int,
    batch_size: int,
    dist: DistributedContext,
) -> Iterator[tuple[list[str], list[np.ndarray]]]:
    """The texts of each chunk of ``input_path`` with their class probabilities. Every rank
    reads the chunk and classifies its share of the rows; every rank gets them all, in order."""
    first_row = 0
    for texts in _chunks(input_path, text_column, chunk_rows):
        classify = partial(_classify_rows, classifier, texts, first_row, input_path, batch_size)
        yield texts, dist.gather_shards(classify)
        first_row += len(texts)


def predict_file(
    classifier: Classifier,
    input_path: Path,
    output_path: Path,
    text_column: str | None = None,
    chunk_rows: int = 1024,
    batch_size: int = 32,
    dist: DistributedContext = LOCAL,
) -> int:
    """Classify every row of ``input_path`` into ``output_path`` (CSV or JSONL by suffix), in
    input order, chunk by chunk so memory stays bounded; the output appears only when complete.
    With several ranks each classifies its share of every chunk and the main rank writes.
    Returns the number of rows."""
    as_json = output_path.suffix.lower() in (".jsonl", ".ndjson")
    if not as_json and output_path.suffix.lower() != ".csv":
        raise GptclfError(f"{output_path}: --output must be .csv or .jsonl")
    chunks = _classified_chunks(classifier, input_path, text_column, chunk_rows, batch_size, dist)
    if not dist.is_main:
        return sum(len(texts) for texts, _ in chunks)
    names = classifier.labels.names
    rows = 0
    with atomic_path(output_path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as out:
        writer = None if as_json else csv.writer(out, lineterminator="\n")
        if writer:
            writer.writerow(["text", "label", "probability", *[f"p_{n}" for n in names]])
        for texts, probabilities in chunks:
            for text, p in zip(texts, probabilities, strict=True):
                prediction = classifier.prediction(p)
                if writer:
                    writer.writerow(
                        [
                            text,
                            prediction.label,
                            f"{prediction.probability:.6f}",
                            *[f"{v:.6f}" for v in p],
                        ]
                    )
                else:
                    out.write(json.dumps({"text": text, **asdict(prediction)}) + "\n")
            rows += len(texts)
    return rows
