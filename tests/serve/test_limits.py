"""What a request may be: each limit is one clear JSON error before the model runs."""

import pytest
from fastapi import HTTPException
from pydantic import ValidationError

from gptclf.serve.limits import checked_texts, parse_request, validation_message
from gptclf.serve.schemas import ClassifyRequest

from .conftest import LIMITS


@pytest.mark.parametrize(
    ("request_options", "status", "message"),
    [
        (
            {"content": b"x" * 200_001},
            413,
            "the request body has 200,001 bytes; the limit is 200,000",
        ),
        ({"content": iter([b"x" * 100_000] * 3)}, 413, "larger than the limit of 200,000 bytes"),
        ({"content": b'{"text": "hi"'}, 422, "the body is not valid JSON: Expecting ','"),
        ({"content": b'{"text": "\xff"}'}, 422, "the body is not UTF-8 (byte 10 is invalid)"),
        ({"content": b"[" * 100_000}, 422, "the body's JSON is nested too deeply"),
        (
            {"json": ["hi"]},
            422,
            'the body must be a JSON object: {"text": ...} or {"texts": [...]}',
        ),
        ({"json": {"texts": ["hi", 3]}}, 422, "texts[1]: Input should be a valid string"),
        ({"json": {"text": 5}}, 422, "text: Input should be a valid string"),
        ({"json": {"text": "hi", "lang": "en"}}, 422, "lang: Extra inputs are not permitted"),
        ({"json": {"text": "hi", "texts": ["hi"]}}, 422, 'give exactly one of "text" and "texts"'),
        ({"json": {}}, 422, 'give exactly one of "text" and "texts"'),
        ({"json": {"texts": []}}, 422, '"texts" is empty; give at least one text'),
        ({"json": {"texts": ["hi"] * 6}}, 422, "the request has 6 texts; the limit is 5"),
        (
            {"json": {"texts": ["hi", "x" * 201]}},
            422,
            "texts[1] has 201 characters; the limit is 200",
        ),
        ({"json": {"texts": ["hi", ""]}}, 422, "texts[1]: no text to classify (empty or unrep"),
        ({"content": b'{"text": "\\ud800"}'}, 422, "text is not valid Unicode (a lone surrogate)"),
        (
            {"content": b'{"text": "hi"}', "headers": {"content-type": "text/plain"}},
            415,
            "send the body as JSON with Content-Type: application/json",
        ),
    ],
    ids=[
        "declared-too-large",
        "streamed-too-large",
        "bad-json",
        "invalid-utf8",
        "deeply-nested",
        "not-an-object",
        "texts-of-wrong-type",
        "text-of-wrong-type",
        "unknown-field",
        "text-and-texts",
        "neither",
        "empty-list",
        "too-many-texts",
        "too-long-text",
        "no-tokens",
        "lone-surrogate",
        "not-json",
    ],
)
def test_each_limit_is_one_clear_json_error_before_the_model_runs(
    client, request_options, status, message
):
    if "content" in request_options and "headers" not in request_options:
        request_options = {**request_options, "headers": {"content-type": "application/json"}}
    response = client.post("/v1/classify", **request_options)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"] and "\n" not in body["error"]
    assert message in body["error"]
    assert client.app.state.batcher.model_calls == 0


@pytest.mark.parametrize(
    "content_type", ["application/json", "Application/JSON; charset=utf-8", "application/x+json"]
)
def test_any_json_media_type_is_read(content_type):
    request = parse_request(b'{"texts": ["a", "b"]}', content_type)
    assert request == ClassifyRequest(texts=["a", "b"])


def test_a_missing_content_type_is_refused():
    with pytest.raises(HTTPException) as refused:
        parse_request(b'{"text": "a"}', None)
    assert refused.value.status_code == 415


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"texts": ["a", 2]}, "texts[1]: Input should be a valid string"),
        ({"texts": ["a", 2, 3]}, "texts[1]: Input should be a valid string (and 1 more problem)"),
        ({"texts": [1, 2, 3]}, "texts[0]: Input should be a valid string (and 2 more problems)"),
        ({"text": "a", "texts": ["b"]}, 'give exactly one of "text" and "texts"'),
    ],
)
def test_validation_message_names_the_first_problem_and_counts_the_others(body, message):
    with pytest.raises(ValidationError) as invalid:
        ClassifyRequest.model_validate(body)
    assert validation_message(invalid.value) == message


def test_checked_texts_name_each_text_as_the_request_does():
    texts, pairs, where = checked_texts(ClassifyRequest(text="a"), LIMITS)
    assert texts == ["a"] and pairs is None and where(0) == "text"
    texts, pairs, where = checked_texts(ClassifyRequest(texts=["a", "b"]), LIMITS)
    assert texts == ["a", "b"] and where(1) == "texts[1]"
    texts, pairs, where = checked_texts(ClassifyRequest(text="q", pair="a"), LIMITS)
    assert texts == ["q"] and pairs == ["a"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"texts": ["q", "r"], "pairs": ["a"]}, '2 texts need 2 "pairs", not 1'),
        ({"text": "q", "pair": "a" * 1000}, "the pair of text has 1,000 characters"),
    ],
)
def test_pairs_are_checked_like_the_texts(body, message):
    with pytest.raises(HTTPException) as refused:
        checked_texts(ClassifyRequest.model_validate(body), LIMITS)
    assert refused.value.status_code == 422 and message in refused.value.detail
