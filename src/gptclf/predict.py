"""Using a trained classifier: ``Classifier.from_pretrained(run_dir)`` for Python, and streaming
prediction over files of any size for the command line."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from functools import partial
from itertools import chain
from pathlib import Path
from typing import TextIO

import numpy as np
import torch

from gptclf.atomic import atomic_path, check_writable
from gptclf.classifier import SequenceClassifier
from gptclf.data.batching import Batch
from gptclf.data.cells import SHOWN_ROWS, listed_rows
from gptclf.data.labels import LabelMap
from gptclf.data.streaming import text_chunks
from gptclf.data.tokenized import (
    TokenizedTexts,
    between_ids,
    frame,
    frame_pairs,
    joins_pairs,
    template_ids,
)
from gptclf.decision import decide
from gptclf.distributed import CPU, LOCAL, DistributedContext, device_scope
from gptclf.ensemble import Ensemble
from gptclf.errors import GptclfError
from gptclf.explain import (
    DEFAULT_METHOD,
    Explanation,
    attribution_steps,
    finished,
    token_pieces,
)
from gptclf.inference import class_probabilities, in_length_batches, logits_of, text_logits
from gptclf.onnx_runtime import (
    RUNTIMES,
    OnnxNetwork,
    cached_graph,
    require_cpu,
    runtime_option,
)
from gptclf.options import at_least, option
from gptclf.precision import resolve_precision
from gptclf.run import RunConfig, RunDir, load_run_model
from gptclf.store import PrefixStore
from gptclf.tokenizers import Tokenizer

ON_EMPTY = ("error", "skip", "mark")
LABEL_JOINER = "|"  # between the labels of a multi-label text in CSV and the terminal
OUTPUT_FORMATS = {".csv": False, ".jsonl": True, ".ndjson": True}  # suffix: written as JSON


NO_TEXT = "no text to classify (empty or unrepresentable)"
ON_EMPTY_HINT = "--on-empty skip or mark classifies the rest"


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


@dataclass(frozen=True)
class Prediction:
    """A text's decided label, its probability and every label's probability; for a
    multi-label run ``labels`` lists every label decided (perhaps none), and ``label`` and
    ``probability`` are None."""

    label: str | None
    probability: float | None
    probabilities: dict[str, float]
    labels: tuple[str, ...] | None = None


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


class Classifier:
    """A trained text classifier: tokenizer, network and label names together."""

    def __init__(
        self,
        network: SequenceClassifier,
        tokenizer: Tokenizer,
        labels: LabelMap,
        config: RunConfig,
        ensemble: Ensemble | None = None,
        graph: OnnxNetwork | None = None,
    ):
        self.network = network
        self.tokenizer = tokenizer
        self.labels = labels
        self.config = config
        self.ensemble = ensemble
        self.graph = graph  # computes the logits in place of ``network`` where given
        self.device = CPU

    @classmethod
    def from_pretrained(cls, run_dir: str | Path, runtime: str = "torch") -> Classifier:
        """The classifier of a run folder, computed by PyTorch or (``runtime`` "onnx") by ONNX
        Runtime on the run's int8 graph (exported once; see ``gptclf.onnx_runtime``)."""
        if runtime not in RUNTIMES:
            raise GptclfError(f"--runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
        folder = RunDir(Path(run_dir))
        onnx = runtime == "onnx"
        network, tokenizer, config = load_run_model(folder, "fp32" if onnx else None)
        graph = cached_graph(folder.model_config.read_bytes(), network) if onnx else None
        ensemble = None
        if config.ensemble is not None:
            arrays, vocabulary = folder.baseline_arrays, folder.baseline_vocabulary
            ensemble = Ensemble.load(arrays, vocabulary, config.ensemble)
        return cls(network, tokenizer, config.label_map, config, ensemble, graph)

    def warm_up(self) -> Classifier:
        """Classify one short text, so that the one-time costs of a first call (the kernels'
        set-up, the position tables) are paid before the first real one; returns the
        classifier."""
        self.predict_proba(["warm up"])
        return self

    def to(self, device: torch.device | str) -> Classifier:
        """Compute on ``device`` (e.g. ``"cuda:0"``) from now on; returns the classifier."""
        if self.graph is not None:
            require_cpu(device)
        self.device = torch.device(device)
        self.network.to(self.device)
        return self

    def token_ids(
        self,
        texts: Sequence[str],
        where: Callable[[int], str] = lambda i: f"text {i + 1}",
        max_chunks: int | None = None,
        pairs: Sequence[str] | None = None,
    ) -> list[list[int]]:
        """Each text's token ids (joined with its pair's, for a model of text pairs) as
        ``probabilities_of_ids`` takes them: cut as the model was trained to read them (same
        truncation side and length), or whole where it reads texts in chunks; a text without
        tokens, or of more than ``max_chunks`` chunks, is an error naming it by
        ``where(index)``."""
        ids = self._encoded(texts, pairs)
        empty = next((i for i, x in enumerate(ids) if not _has_tokens(x)), None)
        if empty is not None:
            raise GptclfError(f"{where(empty)}: {NO_TEXT}")
        if max_chunks is not None and self.config.recipe.chunks:
            counts = np.bincount(self._framed(ids).owners, minlength=len(ids))
            over = next((i for i, n in enumerate(counts) if n > max_chunks), None)
            if over is not None:
                raise GptclfError(
                    f"{where(over)}: {counts[over]} chunks of {self.config.tokens_kept} tokens, "
                    f"more than the {max_chunks} allowed"
                )
        return self._cut(ids)

    def probabilities_or_none(
        self,
        texts: Sequence[str],
        where: Callable[[int], str],
        on_empty: str = "error",
        batch_size: int = 32,
        pairs: Sequence[str] | None = None,
    ) -> list[np.ndarray | None]:
        """The class probabilities of each text (with its pair, for a model of text pairs); a
        text (or pair) with no tokens gets None, or with ``on_empty`` "error" is an error naming
        it by ``where(index)``."""
        ids = self._encoded(texts, pairs)
        kept = [_has_tokens(x) for x in ids]
        if not all(kept) and on_empty == "error":
            raise GptclfError(f"{where(kept.index(False))}: {NO_TEXT}; {ON_EMPTY_HINT}")
        computed = self.probabilities_of_ids(
            self._cut([x for x, k in zip(ids, kept, strict=True) if k]), batch_size
        )
        found = iter(
            self.final_probabilities([t for t, k in zip(texts, kept, strict=True) if k], computed)
        )
        return [next(found) if k else None for k in kept]

    @property
    def takes_pairs(self) -> bool:
        """Whether the model classifies pairs of texts (its template joins two)."""
        return joins_pairs(self.config.template)

    def _encoded(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None
    ) -> list[list[int]] | list[tuple[list[int], list[int]]]:
        """Each text's token ids, or for a model of pairs, each text's and its pair's."""
        if isinstance(texts, str):
            raise TypeError("predict takes a list of texts; use classify() for one text")
        if self.takes_pairs != (pairs is not None):
            raise GptclfError(
                "this model classifies pairs of texts: give each text its pair"
                if self.takes_pairs
                else "this model classifies single texts, not pairs"
            )
        ids = self.tokenizer.encode_batch(list(texts))
        if pairs is None:
            return ids
        if isinstance(pairs, str) or len(pairs) != len(ids):
            raise GptclfError(f"{len(ids)} texts need {len(ids)} pairs, not {len(pairs)}")
        return list(zip(ids, self.tokenizer.encode_batch(list(pairs)), strict=True))

    def _cut(self, ids: list[list[int]] | list[tuple[list[int], list[int]]]) -> list[list[int]]:
        """What the network reads of each encoded text (or pair)."""
        if self.takes_pairs:
            return self._pairs_framed(ids).ids
        return ids if self.config.recipe.chunks else self._framed(ids).ids

    def _pairs_framed(self, ids: list[tuple[list[int], list[int]]]) -> TokenizedTexts:
        template, recipe = self.config.template, self.config.recipe
        around, between = (
            template_ids(self.tokenizer, template),
            between_ids(self.tokenizer, template),
        )
        firsts, seconds = [a for a, _ in ids], [b for _, b in ids]
        return frame_pairs(
            firsts, seconds, self.config.tokens_kept, recipe.truncate, around, between
        )

    def _framed(self, ids: list[list[int]]) -> TokenizedTexts:
        around = template_ids(self.tokenizer, self.config.template)
        recipe = self.config.recipe
        chunks = recipe.chunks is not None
        return frame(ids, self.config.tokens_kept, recipe.truncate, around, chunks)

    def final_probabilities(self, texts: Sequence[str], probabilities: np.ndarray) -> np.ndarray:
        """The network's ``probabilities`` of ``texts`` as the run answers: blended with the
        baseline's where it blends (``--ensemble``), then calibrated where it calibrates
        (``--calibrate``)."""
        if self.ensemble is not None:
            probabilities = self.ensemble.combine(list(texts), probabilities)
        return self.config.decision_rule.calibrated(probabilities, self.labels.multi_label)

    def probabilities_of_ids(
        self, ids: list[list[int]], batch_size: int = 32, store: PrefixStore | None = None
    ) -> np.ndarray:
        """The network's class probabilities (n, n_classes) of texts as ``token_ids`` gives
        them, columns in label-id order (``final_probabilities`` makes them the run's answer:
        blended, calibrated); a text read in chunks gets the mean or maximum of its chunks'
        logits. With ``store``, the states of the bottom blocks that training cached come from
        it."""
        if not ids:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        chunks = self.config.recipe.chunks
        tokens = self._framed(ids) if chunks else None
        sequences = ids if tokens is None else tokens.ids
        precision = resolve_precision(self.config.recipe.precision, self.device.type)
        pad_id, start = self.tokenizer.pad_id, self.network.cached_depth if store else 0
        if self.graph is not None and not start:
            width = len(self.labels)
            logits = in_length_batches(
                sequences, self._graph_logits, width, pad_id, batch_size, self.config.pad_to
            )
        else:
            with device_scope(self.device, precision):
                if start:
                    lm = self.network.language_model
                    sequences = store.states(lm, sequences, start, pad_id, precision)
                logits = logits_of(
                    self.network,
                    sequences,
                    pad_id,
                    precision,
                    batch_size=batch_size,
                    pad_to=self.config.pad_to,
                    start_block=start,
                )
        if tokens is not None:
            logits = text_logits(logits, torch.as_tensor(tokens.owners), chunks)
        return class_probabilities(logits, self.labels.multi_label)

    def _graph_logits(self, batch: Batch) -> torch.Tensor:
        return self.graph(batch.inputs, batch.attention_mask)

    def predict_proba(
        self, texts: Sequence[str], batch_size: int = 32, pairs: Sequence[str] | None = None
    ) -> np.ndarray:
        """Class probabilities (n_texts, n_classes), columns in label-id order; a model of text
        pairs takes each text's pair in ``pairs``."""
        ids = self.token_ids(texts, pairs=pairs)
        return self.final_probabilities(texts, self.probabilities_of_ids(ids, batch_size))

    def predict(
        self, texts: Sequence[str], batch_size: int = 32, pairs: Sequence[str] | None = None
    ) -> list[Prediction]:
        """The label of each text (the most probable, or as the run's threshold decides), its
        probability and every class's probability (multi-label: the labels decided)."""
        return [self.prediction(p) for p in self.predict_proba(texts, batch_size, pairs)]

    def classify(self, text: str, pair: str | None = None) -> str:
        """The label name of one text (with its pair, for a model of pairs), like the book's
        ``classify_review``; for a multi-label model, the labels decided, joined by "|"."""
        prediction = self.predict([text], pairs=None if pair is None else [pair])[0]
        return (
            prediction.label if prediction.labels is None else LABEL_JOINER.join(prediction.labels)
        )

    def explain(
        self, text: str, method: str = DEFAULT_METHOD, label: str | None = None
    ) -> Explanation:
        """Which tokens of ``text`` pushed the network toward ``label`` (default: the label the
        run decides), by ``method`` (see ``gptclf.explain``), with the run's decision. Not to
        be called while another thread uses the same classifier: the scores are taken through
        a hook on its token embeddings."""
        return finished(self.explanation_steps(text, method, label))

    def explanation_steps(
        self, text: str, method: str = DEFAULT_METHOD, label: str | None = None
    ) -> Generator[None, None, Explanation]:
        """:meth:`explain` in steps, so that a service can classify between them: the first
        checks the text and decides it, each next computes some of the scores."""
        if self.config.recipe.chunks:
            raise GptclfError("explain reads one window of tokens, not a run's chunks")
        if self.takes_pairs:
            raise GptclfError("explain reads one text; this model classifies pairs of texts")
        if label is not None and label not in self.labels.names:
            raise GptclfError(f"label {label!r} is not one of {', '.join(self.labels.names)}")
        ids = self.token_ids([text])[0]
        before, after = template_ids(self.tokenizer, self.config.template)
        span = slice(len(before), len(ids) - len(after))  # the text's own tokens
        probabilities = self.final_probabilities([text], self.probabilities_of_ids([ids]))[0]
        decided = self.prediction(probabilities)
        most_probable = self.labels.names[int(probabilities.argmax())]
        target = self.labels.names.index(label or decided.label or most_probable)
        precision = resolve_precision(self.config.recipe.precision, self.device.type)
        padding = (self.tokenizer.pad_id, self.config.pad_to) if self.config.pad_to else None
        yield
        scores = yield from attribution_steps(
            self.network, ids, target, method, precision, padding, span
        )
        return Explanation(
            label=decided.label or self.labels.names[target],
            probability=decided.probability or float(probabilities[target]),
            explained=self.labels.names[target],
            method=method,
            tokens=token_pieces(self.tokenizer, ids[span]),
            scores=scores[span].tolist(),
            truncated=len(ids[span]) < len(self._encoded([text])[0]),
        )

    def prediction(self, probabilities: np.ndarray) -> Prediction:
        """The label that ``probabilities`` (as ``final_probabilities`` gives them) decide, as
        the run decides (``--decide``)."""
        names, threshold = self.labels.names, self.config.decision_rule.threshold
        every = {n: float(p) for n, p in zip(names, probabilities, strict=True)}
        if self.labels.multi_label:
            decided = decide(probabilities[None], threshold, multi_label=True)[0]
            chosen = tuple(n for n, on in zip(names, decided, strict=True) if on)
            return Prediction(None, None, every, chosen)
        best = int(decide(probabilities[None], threshold)[0])
        return Prediction(names[best], float(probabilities[best]), every)


def _has_tokens(encoded: list[int] | tuple[list[int], list[int]]) -> bool:
    """Whether a text (or both texts of a pair) has tokens."""
    return all(encoded) if isinstance(encoded, tuple) else bool(encoded)


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
