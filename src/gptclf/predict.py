"""Using a trained classifier: ``Classifier.from_pretrained(run_dir)``, what it predicts and
explains (``gptclf.predict_files`` runs it over the command line's texts and files)."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from gptclf.classifier import SequenceClassifier
from gptclf.data.batching import Batch
from gptclf.data.labels import LabelMap
from gptclf.data.tokenized import (
    TokenizedTexts,
    between_ids,
    frame,
    frame_pairs,
    joins_pairs,
    template_ids,
)
from gptclf.decision import decide
from gptclf.distributed import CPU, device_scope
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
)
from gptclf.precision import resolve_precision
from gptclf.run import RunConfig, RunDir, load_run_model
from gptclf.store import PrefixStore
from gptclf.tokenizers import Tokenizer

if TYPE_CHECKING:
    from gptclf.ensemble import Ensemble

LABEL_JOINER = "|"  # between the labels of a multi-label text in CSV and the terminal


NO_TEXT = "no text to classify (empty or unrepresentable)"
ON_EMPTY_HINT = "--on-empty skip or mark classifies the rest"


@dataclass(frozen=True)
class Prediction:
    """A text's decided label, its probability and every label's probability; for a
    multi-label run ``labels`` lists every label decided (perhaps none), and ``label`` and
    ``probability`` are None."""

    label: str | None
    probability: float | None
    probabilities: dict[str, float]
    labels: tuple[str, ...] | None = None


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
            from gptclf.ensemble import Ensemble  # scikit-learn: loaded for a blending run only

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
