"""The JSON bodies of the service: what a request holds and what the answers look like."""

from __future__ import annotations

from dataclasses import asdict
from typing import ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, model_validator

from gptclf.explain import DEFAULT_METHOD, METHODS
from gptclf.predict import Prediction


class ClassifyRequest(BaseModel):
    """One text, or a list of texts classified in order; for a model of text pairs, with its
    ``pair`` (or their ``pairs``, in the same order)."""

    SHAPE: ClassVar[str] = '{"text": ...} or {"texts": [...]}, with "pair" or "pairs" for pairs'
    model_config = ConfigDict(extra="forbid", strict=True)
    text: str | None = None
    texts: list[str] | None = None
    pair: str | None = None
    pairs: list[str] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ClassifyRequest:
        """Refuse a body with both ``text`` and ``texts``, or neither; ``pair`` goes with
        ``text``, ``pairs`` with ``texts``."""
        if (self.text is None) == (self.texts is None):
            raise ValueError('give exactly one of "text" and "texts"')
        if self.pair is not None and self.text is None:
            raise ValueError('"pair" goes with "text"; give "pairs" with "texts"')
        if self.pairs is not None and self.texts is None:
            raise ValueError('"pairs" goes with "texts"; give "pair" with "text"')
        return self


class ExplainRequest(BaseModel):
    """One text, and optionally the label to explain (default: the one decided) and how."""

    SHAPE: ClassVar[str] = '{"text": ...}'
    model_config = ConfigDict(extra="forbid", strict=True)
    text: str
    label: str | None = None
    method: Literal[METHODS] = DEFAULT_METHOD


RequestBody = TypeVar("RequestBody", ClassifyRequest, ExplainRequest)


class TokenScore(BaseModel):
    text: str
    score: float


class ExplainResponse(BaseModel):
    """The decision, and each token's push toward ``explained`` (positive) or away from it."""

    label: str
    probability: float
    explained: str
    method: str
    truncated: bool
    tokens: list[TokenScore]


class ServedPrediction(BaseModel):
    """A text's label and probabilities; ``score`` repeats ``probability`` under the name that
    clients of transformers' pipelines and text-embeddings-inference read. A multi-label model
    answers ``labels`` (every label decided, perhaps none) and ``probabilities`` only."""

    label: str | None = None
    score: float | None = None
    probability: float | None = None
    labels: list[str] | None = None
    probabilities: dict[str, float]

    @classmethod
    def of(cls, prediction: Prediction) -> ServedPrediction:
        return cls(score=prediction.probability, **asdict(prediction))


class ClassifyResponse(BaseModel):
    predictions: list[ServedPrediction]


class Example(BaseModel):
    """A text of the run's validation split with the label it carries."""

    label: str
    text: str
    pair: str | None = None


class Limits(BaseModel):
    """What one request may hold: a client that sends more in chunks stays within these."""

    max_texts: int
    max_chars: int
    max_body_bytes: int


class ModelInfo(BaseModel):
    labels: list[str]
    multi_label: bool  # each text gets any number of the labels, each decided on its own
    text_pairs: bool  # each text is classified with its pair ("pair", "pairs")
    base_model: str
    pooling: str
    max_length: int
    template: str | None
    decision: dict  # temperature, and threshold on p(second label) (multi-label: one per label)
    # with the rule that chose it
    metrics: dict  # validation and test metrics recorded by training, when the run has them
    trained_at: str | None  # when training finished (ISO 8601, UTC)
    training_rows: int | None  # texts in the training split
    examples: list[Example]  # one per class from the validation split, where the run has one
    limits: Limits


class ErrorBody(BaseModel):
    error: str
