"""The JSON bodies of the service: what a request holds and what the answers look like."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator

from gptclf.predict import Prediction


class ClassifyRequest(BaseModel):
    """One text, or a list of texts classified in order."""

    model_config = ConfigDict(extra="forbid", strict=True)
    text: str | None = None
    texts: list[str] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ClassifyRequest:
        """Refuse a body with both ``text`` and ``texts``, or neither."""
        if (self.text is None) == (self.texts is None):
            raise ValueError('give exactly one of "text" and "texts"')
        return self


class ClassifyResponse(BaseModel):
    predictions: list[Prediction]


class ModelInfo(BaseModel):
    labels: list[str]
    base_model: str
    pooling: str
    max_length: int
    template: str | None
    metrics: dict  # validation and test metrics recorded by training, when the run has them


class ErrorBody(BaseModel):
    error: str
