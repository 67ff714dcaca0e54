"""``gptclf serve``: answers equal ``Classifier.predict``, micro-batching, limits, the API key,
graceful shutdown, the CLI, and the page in a headless browser."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gptclf.cli import main
from gptclf.data.readers import write_labelled
from gptclf.predict import Classifier
from gptclf.serve import ServeSettings, create_app, listening_socket, training_metrics, url_of

SPAM = ["WIN a FREE prize now, call 0800", "Free entry: text WIN to 8007", "URGENT! cash prize"]
HAM = ["see you at lunch", "are you home yet?", "ok thanks, talk later"]
LIMITS = ServeSettings(
    max_batch=8, max_wait_ms=50, max_texts=5, max_chars=200, max_body_bytes=200_000
)
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder trained through the CLI on a tiny GPT-2 (head only, float32: a second)."""
    import torch
    import transformers

    data = tmp_path_factory.mktemp("spam")
    for name, repeat in {"train": 4, "val": 1, "test": 1}.items():
        write_labelled(
            data / f"{name}.csv", (SPAM + HAM) * repeat, (["spam"] * 3 + ["ham"] * 3) * repeat
        )
    torch.manual_seed(0)
    base = tmp_path_factory.mktemp("base")
    transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64)
    ).save_pretrained(base)
    run = tmp_path_factory.mktemp("runs") / "run"
    split = [f"--{n}={data / f'{n}.csv'}" for n in ("train", "val", "test")]
    options = ["--trainable", "head", "--lr", "1e-2", "--epochs", "2", "--precision", "fp32"]
    code = main(["train", *split, "--model", str(base), *options, "--out", str(run), "--quiet"])
    assert code == 0
    return run


@pytest.fixture(scope="module")
def classifier(run_dir) -> Classifier:
    return Classifier.from_pretrained(run_dir)


@pytest.fixture
def client(classifier, run_dir) -> Iterator[TestClient]:
    with TestClient(create_app(classifier, LIMITS, training_metrics(run_dir))) as client:
        yield client


@contextmanager
def running(app: FastAPI) -> Iterator[tuple[str, uvicorn.Server]]:
    """``app`` served by uvicorn in a thread on a free loopback port."""
    sock = listening_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield url_of(sock), server
    finally:
        server.should_exit = True
        thread.join(10)


def expected_predictions(classifier: Classifier, texts: list[str]) -> list[dict]:
    return [asdict(p) for p in classifier.predict(texts, batch_size=LIMITS.max_batch)]


def assert_same_predictions(got: list[dict], expected: list[dict]) -> None:
    """Same labels and probabilities up to float rounding (batches pad texts differently)."""
    assert [p["label"] for p in got] == [p["label"] for p in expected]
    for g, e in zip(got, expected, strict=True):
        assert g["probabilities"] == pytest.approx(e["probabilities"], abs=1e-5)
        assert g["probability"] == pytest.approx(e["probability"], abs=1e-5)


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


async def _post_all(url: str, bodies: list[dict]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        return await asyncio.gather(*(http.post("/v1/classify", json=b) for b in bodies))


@pytest.mark.parametrize("batching", [True, False], ids=["batching", "no-batching"])
def test_concurrent_requests_are_answered_correctly_and_grouped_only_when_batching(
    classifier, batching
):
    bodies = [{"text": (SPAM + HAM)[i % 6]} for i in range(16)]
    bodies += [{"texts": [SPAM[i], HAM[i]]} for i in range(3)] + [{"texts": HAM}]
    app = create_app(classifier, ServeSettings(max_batch=16, max_wait_ms=50, batching=batching))
    with running(app) as (url, _):
        responses = asyncio.run(_post_all(url, bodies))
    texts_of = [body.get("texts") or [body["text"]] for body in bodies]
    reference = iter(expected_predictions(classifier, [t for texts in texts_of for t in texts]))
    for texts, response in zip(texts_of, responses, strict=True):
        assert response.status_code == 200
        assert_same_predictions(response.json()["predictions"], [next(reference) for _ in texts])
    calls = app.state.batcher.model_calls
    assert calls < len(bodies) if batching else calls == len(bodies)


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


def test_model_endpoint_describes_the_classifier_and_its_training_metrics(
    client, classifier, run_dir
):
    recorded = json.loads((run_dir / "metrics.json").read_text())
    assert client.get("/v1/model").json() == {
        "labels": ["ham", "spam"],
        "base_model": classifier.config.base_model,
        "pooling": classifier.config.pooling,
        "max_length": classifier.config.max_length,
        "template": None,
        "metrics": {"validation": recorded["validation"], "test": recorded["test"]},
    }


def test_openapi_schema_lists_the_endpoints_and_docs_are_served(client):
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {"/v1/classify", "/v1/model", "/healthz"}
    body = schema["paths"]["/v1/classify"]["post"]["requestBody"]["content"]["application/json"]
    assert set(body["schema"]["properties"]) == {"text", "texts"}
    assert client.get("/docs").status_code == 200


def test_page_escapes_by_construction_and_allows_only_its_own_script(client):
    response = client.get("/")
    assert response.headers["content-type"].startswith("text/html")
    assert "innerHTML" not in response.text and "textContent" in response.text
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy


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


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "nowhere"], "nowhere: not a trained model (no config.json)"),
        (["serve", "nowhere", "--max-batch", "0"], "max-batch must be at least 1, not 0"),
    ],
)
def test_serve_with_bad_input_exits_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


@contextmanager
def serve_command(run_dir: Path, api_key: str) -> Iterator[str]:
    """``gptclf serve RUN_DIR --port 0`` as a process with ``GPTCLF_API_KEY`` set; yields the URL
    it prints, and stops it with Ctrl-C (SIGINT), which must end it gracefully and quietly."""
    command = [sys.executable, "-m", "gptclf", "serve", str(run_dir), "--port", "0"]
    environment = {**os.environ, "GPTCLF_API_KEY": api_key}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment
    )
    try:
        first = process.stdout.readline()
        assert first.startswith(f"serving {run_dir} on http://127.0.0.1:"), first
        yield first.split(" on ")[-1].strip()
    finally:
        process.send_signal(signal.SIGINT)
        log = process.communicate(timeout=30)[0]
    assert process.returncode == 0, log
    assert "Application shutdown complete" in log and "Traceback" not in log


@pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="headless Chromium is missing: apt-get install -y chromium chromium-driver",
)
def test_page_in_a_headless_browser_shows_the_verdict_and_probabilities_of_the_api(run_dir):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    message = "Congratulations <b>winner</b>! Claim your FREE prize & cash now"
    with serve_command(run_dir, api_key="s3cret") as url:
        api = httpx.post(
            f"{url}/v1/classify",
            json={"text": message},
            headers={"Authorization": "Bearer s3cret"},
            timeout=30,
        ).json()["predictions"][0]
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
        try:
            driver.get(url + "/")
            driver.find_element(By.ID, "message").send_keys(message)
            driver.find_element(By.ID, "classify").click()
            status = driver.find_element(By.ID, "status")
            WebDriverWait(driver, 20).until(lambda _: "API key" in status.text)
            driver.find_element(By.TAG_NAME, "summary").click()
            driver.find_element(By.ID, "api-key").send_keys("s3cret")
            driver.find_element(By.ID, "classify").click()
            result = driver.find_element(By.ID, "result")
            WebDriverWait(driver, 20).until(lambda _: result.is_displayed())
            verdict = driver.find_element(By.ID, "verdict").text
            confidence = driver.find_element(By.ID, "confidence").text
            rows = [
                [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
                for row in driver.find_elements(By.CSS_SELECTOR, "#probabilities tr")
            ]
            status_text = status.text
        finally:
            driver.quit()
    assert verdict == api["label"] and status_text == ""
    assert float(confidence) == pytest.approx(api["probability"], abs=5e-5)
    assert [label for label, _ in rows] == list(api["probabilities"])
    for label, shown in rows:
        assert float(shown) == pytest.approx(api["probabilities"][label], abs=5e-5)
