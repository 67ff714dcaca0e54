"""The service's routes: answers equal ``Classifier.predict``, JSON errors, the API key, the model
description, the schema, graceful shutdown, the run's metrics, the socket and the CLI."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import httpx
import pytest
from fastapi.testclient import TestClient

from gptclf.cli import main
from gptclf.errors import GptclfError
from gptclf.predict import Classifier
from gptclf.serve import ServeSettings, app_for_run, create_app, listening_socket, url_of

from .conftest import LIMITS, expected_predictions, running
from conftest import HAM, PAIRED, SPAM, TAGGED


@pytest.mark.parametrize(
    ("body", "texts"),
    [
        ({"text": SPAM[0]}, [SPAM[0]]),
        ({"texts": [HAM[0], SPAM[1], HAM[2], SPAM[2]]}, [HAM[0], SPAM[1], HAM[2], SPAM[2]]),
    ],
    ids=["text", "texts"],
)
def test_classify_returns_what_classifier_predict_returns_in_order(client, classifier, body, texts):
    response = client.post("/v1/classify", json=body)
    assert response.status_code == 200
    assert response.json() == {"predictions": expected_predictions(classifier, texts)}


def test_unknown_path_is_a_json_error(client):
    response = client.get("/v2/classify")
    assert response.status_code == 404 and response.json() == {"error": "Not Found"}


def test_a_failing_model_call_is_a_json_500_and_the_service_keeps_serving(classifier, monkeypatch):
    compute = classifier.probabilities_of_ids
    calls = iter([RuntimeError("out of memory"), None])

    def fails_once(ids, batch_size):
        error = next(calls)
        if error:
            raise error
        return compute(ids, batch_size)

    monkeypatch.setattr(classifier, "probabilities_of_ids", fails_once)
    app = create_app(classifier, LIMITS)
    with TestClient(app, raise_server_exceptions=False) as client:
        failed = client.post("/v1/classify", json={"text": SPAM[0]})
        assert failed.status_code == 500
        assert failed.json() == {"error": "internal error; the server's log has the details"}
        answered = client.post("/v1/classify", json={"text": SPAM[0]})
    monkeypatch.undo()
    assert answered.json()["predictions"] == expected_predictions(classifier, [SPAM[0]])


def test_api_key_guards_v1_but_not_healthz_and_the_page(classifier):
    app = create_app(classifier, ServeSettings(api_key="s3cret"))
    body = {"text": SPAM[0]}
    with TestClient(app) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            for response in (
                client.post("/v1/classify", json=body, headers=headers),
                client.get("/v1/model", headers=headers),
            ):
                assert response.status_code == 401
                assert response.headers["www-authenticate"] == "Bearer"
                assert "missing or wrong API key" in response.json()["error"]
        right = {"Authorization": "Bearer s3cret"}
        response = client.post("/v1/classify", json=body, headers=right)
        assert response.status_code == 200
        assert response.json()["predictions"] == expected_predictions(classifier, [SPAM[0]])
        assert client.get("/v1/model", headers=right).status_code == 200
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/").status_code == 200


def test_model_endpoint_describes_the_classifier_its_training_examples_and_limits(
    client, classifier, trained_run
):
    recorded = json.loads((trained_run / "metrics.json").read_text())
    assert client.get("/v1/model").json() == {
        "labels": ["ham", "spam"],
        "multi_label": False,
        "text_pairs": False,
        "base_model": classifier.config.base_model,
        "pooling": classifier.config.pooling,
        "max_length": classifier.config.max_length,
        "template": None,
        "decision": {"temperature": 1.0, "threshold": None, "rule": "argmax"},
        "metrics": {"validation": recorded["validation"], "test": recorded["test"]},
        "trained_at": recorded["finished_at"],
        "training_rows": 48,  # spam_data's train.csv
        "examples": [  # the first of each class in its val.csv
            {"label": "ham", "text": HAM[0], "pair": None},
            {"label": "spam", "text": SPAM[0], "pair": None},
        ],
        "limits": {"max_texts": 5, "max_chars": 200, "max_body_bytes": 200_000},
    }


def test_no_examples_keeps_the_runs_texts_out_of_the_model_description(trained_run):
    private = replace(LIMITS, examples=False)
    with TestClient(app_for_run(trained_run, private)) as client:
        described = client.get("/v1/model").json()
    assert described["examples"] == [] and described["training_rows"] == 48


def test_a_multi_label_model_answers_each_text_with_its_set_of_labels(multi_label_run):
    tagged = Classifier.from_pretrained(multi_label_run)
    texts = [text for text, _ in TAGGED[:5]]
    with TestClient(create_app(tagged, LIMITS)) as client:
        answer = client.post("/v1/classify", json={"texts": texts}).json()["predictions"]
        described = client.get("/v1/model").json()
        explained = client.post("/v1/explain", json={"text": TAGGED[0][0], "label": "urgent"})
    assert answer == expected_predictions(tagged, texts)
    assert [set(p["labels"]) for p in answer] == [set(labels) for _, labels in TAGGED[:5]]
    assert all("label" not in p and "probability" not in p for p in answer)
    assert described["multi_label"] and len(described["decision"]["threshold"]) == 3
    assert explained.status_code == 200 and explained.json()["explained"] == "urgent"


def test_a_model_of_text_pairs_answers_each_text_with_its_pair(pair_run):
    paired = Classifier.from_pretrained(pair_run)
    questions, answers, _ = (list(column) for column in zip(*PAIRED[:4], strict=True))
    with TestClient(create_app(paired, LIMITS)) as client:
        many = client.post("/v1/classify", json={"texts": questions, "pairs": answers})
        one = client.post("/v1/classify", json={"text": questions[1], "pair": answers[1]})
        unpaired = client.post("/v1/classify", json={"text": questions[1]})
        described = client.get("/v1/model").json()
    expected = paired.predict(questions, batch_size=LIMITS.max_batch, pairs=answers)
    assert [p["label"] for p in many.json()["predictions"]] == [p.label for p in expected]
    assert one.json()["predictions"][0]["label"] == expected[1].label
    assert unpaired.status_code == 422 and "give each text its pair" in unpaired.json()["error"]
    assert described["text_pairs"]


def test_explain_answers_what_classifier_explain_returns(client, classifier):
    response = client.post("/v1/explain", json={"text": SPAM[0], "method": "gradient-x-input"})
    assert response.status_code == 200
    answer, expected = response.json(), classifier.explain(SPAM[0], "gradient-x-input").to_json()
    assert [t["text"] for t in answer["tokens"]] == [t["text"] for t in expected["tokens"]]
    assert [t["score"] for t in answer["tokens"]] == pytest.approx(
        [t["score"] for t in expected["tokens"]], abs=1e-6
    )
    assert {k: v for k, v in answer.items() if k != "tokens"} == {
        k: v for k, v in expected.items() if k != "tokens"
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"text": SPAM[0], "label": "eggs"}, "label 'eggs' is not one of ham, spam"),
        ({"text": SPAM[0], "method": "lime"}, "method: Input should be"),
        ({"text": ""}, "no text to classify"),
        ({"text": "x" * 201}, "text has 201 characters; the limit is 200"),
        ({"texts": [SPAM[0]]}, "text: Field required"),
    ],
)
def test_a_bad_explain_request_is_a_422_naming_the_problem(client, body, message):
    response = client.post("/v1/explain", json=body)
    assert response.status_code == 422 and message in response.json()["error"]


def test_a_second_explanation_while_one_is_computed_is_a_503(classifier, monkeypatch):
    started, release = threading.Event(), threading.Event()
    steps_of = classifier.explanation_steps

    def held(*args):
        started.set()
        release.wait(10)
        return (yield from steps_of(*args))

    monkeypatch.setattr(classifier, "explanation_steps", held)
    with TestClient(create_app(classifier, LIMITS)) as client, ThreadPoolExecutor(1) as pool:
        first = pool.submit(client.post, "/v1/explain", json={"text": SPAM[0]})
        assert started.wait(10)
        second = client.post("/v1/explain", json={"text": SPAM[1]})
        release.set()
        assert first.result().status_code == 200
    assert second.status_code == 503 and second.headers["retry-after"] == "1"


def test_texts_are_classified_between_the_steps_of_an_explanation(classifier, monkeypatch):
    steps_of, started = classifier.explanation_steps, threading.Event()

    def slow_steps(*args):  # each step a fifth of a second longer, in the model thread
        steps = steps_of(*args)
        while True:
            started.set()
            time.sleep(0.2)
            try:
                next(steps)
            except StopIteration as done:
                return done.value
            yield

    monkeypatch.setattr(classifier, "explanation_steps", slow_steps)
    with TestClient(create_app(classifier, LIMITS)) as client, ThreadPoolExecutor(1) as pool:
        explaining = pool.submit(client.post, "/v1/explain", json={"text": SPAM[0]})
        assert started.wait(10)
        classified = client.post("/v1/classify", json={"text": HAM[0]})
        assert not explaining.done()  # answered while the explanation still has steps to go
        assert explaining.result().status_code == 200
    assert classified.json() == {"predictions": expected_predictions(classifier, [HAM[0]])}


def test_openapi_schema_lists_the_endpoints_and_docs_are_served(client):
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {"/v1/classify", "/v1/explain", "/v1/model", "/healthz"}
    body = schema["paths"]["/v1/classify"]["post"]["requestBody"]["content"]["application/json"]
    assert set(body["schema"]["properties"]) == {"text", "texts", "pair", "pairs"}
    assert client.get("/docs").status_code == 200


def test_requests_in_flight_at_shutdown_still_get_their_answers(classifier, monkeypatch):
    expected = [expected_predictions(classifier, [text]) for text in (SPAM[0], HAM[0])]
    started, release = threading.Event(), threading.Event()
    compute = classifier.probabilities_of_ids

    def held(ids, batch_size):
        started.set()
        release.wait(10)
        return compute(ids, batch_size)

    monkeypatch.setattr(classifier, "probabilities_of_ids", held)
    app = create_app(classifier, ServeSettings(max_wait_ms=0))
    with running(app) as (url, server), ThreadPoolExecutor(2) as pool:

        def post(text: str) -> httpx.Response:
            return httpx.post(f"{url}/v1/classify", json={"text": text}, timeout=30)

        first = pool.submit(post, SPAM[0])
        assert started.wait(10)
        second = pool.submit(post, HAM[0])
        while len(server.server_state.tasks) < 2:  # both requests are in the app
            time.sleep(0.01)
        server.should_exit = True
        with pytest.raises(httpx.ConnectError):  # shutting down: no new connections
            while True:
                httpx.get(f"{url}/healthz", timeout=1)
                time.sleep(0.02)
        release.set()
        answers = [first.result(), second.result()]
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.json()["predictions"] for a in answers] == expected


def test_a_port_in_use_is_one_clear_error():
    with listening_socket("127.0.0.1", 0) as taken:
        port = int(url_of(taken).rsplit(":", 1)[1])
        assert url_of(taken) == f"http://127.0.0.1:{port}"
        with pytest.raises(GptclfError, match=f"cannot listen on 127.0.0.1:{port} "):
            listening_socket("127.0.0.1", port)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "nowhere"], "nowhere: not a trained model (no config.json)"),
        (["serve", "nowhere", "--max-batch", "0"], "--max-batch must be at least 1, not 0"),
    ],
)
def test_serve_with_bad_input_exits_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


@pytest.fixture(scope="module")
def chunked_run(spam_data, tiny_gpt2_base, tmp_path_factory):
    """A run folder whose model reads texts in chunks of 4 tokens (most texts need several)."""
    from conftest import TRAINED_RUN_OPTIONS, split_options

    run_dir = tmp_path_factory.mktemp("chunked") / "run"
    options = [*split_options(spam_data), f"--model={tiny_gpt2_base}", *TRAINED_RUN_OPTIONS]
    chunking = ["--max-length=4", "--chunks=max"]
    assert main(["train", *options, *chunking, f"--out={run_dir}", "--quiet"]) == 0
    return run_dir


def test_a_model_reading_chunks_answers_as_predict_and_refuses_a_text_of_too_many(chunked_run):
    from gptclf.predict import Classifier

    classifier = Classifier.from_pretrained(chunked_run)
    texts = [SPAM[0], HAM[1]]
    assert all(len(classifier.token_ids([t])[0]) > 4 for t in texts)  # each read in chunks
    with TestClient(create_app(classifier, LIMITS)) as client:
        response = client.post("/v1/classify", json={"texts": texts})
        assert response.json() == {"predictions": expected_predictions(classifier, texts)}
        long = {"texts": [HAM[0], " ".join([SPAM[0]] * 4)]}
        response = client.post("/v1/classify", json=long)
    assert response.status_code == 422
    assert (
        "texts[1]" in response.json()["error"] and "chunks of 4 tokens" in response.json()["error"]
    )


def test_served_model_is_loaded_and_computes_in_one_thread(trained_run, monkeypatch):
    from gptclf.predict import Classifier
    from gptclf.serve import app_for_run

    threads = []
    load, compute = Classifier.from_pretrained.__func__, Classifier.probabilities_of_ids

    def loading(cls, *args):
        threads.append(("load", threading.current_thread()))
        return load(cls, *args)

    def computing(self, *args, **kwargs):
        threads.append(("compute", threading.current_thread()))
        return compute(self, *args, **kwargs)

    monkeypatch.setattr(Classifier, "from_pretrained", classmethod(loading))
    monkeypatch.setattr(Classifier, "probabilities_of_ids", computing)
    with TestClient(app_for_run(trained_run, ServeSettings())) as client:
        for text in (SPAM[0], HAM[0]):
            assert client.post("/v1/classify", json={"text": text}).status_code == 200
    kinds = [kind for kind, _ in threads]
    assert kinds == ["load", "compute", "compute", "compute"]  # the warm-up, then two requests
    assert len({thread for _, thread in threads}) == 1
    assert threads[0][1] is not threading.main_thread()
