"""The page at ``/``: its files inlined into one answer, a policy that allows only them, escaping
by construction, and the page in a headless browser."""

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi.testclient import TestClient

from gptclf.decision import Decision
from gptclf.predict import Classifier
from gptclf.serve import ServeSettings, create_app
from gptclf.serve.page import PAGE, PAGE_POLICY, sha256_source

from .conftest import LIMITS, running
from conftest import PAIRED, TAGGED

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def test_page_escapes_by_construction_and_allows_only_its_own_script(client):
    response = client.get("/")
    assert response.headers["content-type"].startswith("text/html")
    assert "innerHTML" not in response.text and "textContent" in response.text
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy


def test_the_page_inlines_its_package_files_and_the_policy_allows_exactly_them():
    files = resources.files("gptclf.serve")
    style, script = (
        files.joinpath(name).read_text(encoding="utf-8") for name in ("page.css", "page.js")
    )
    assert re.findall("<style>(.*?)</style>", PAGE, re.DOTALL) == [style]
    assert re.findall("<script>(.*?)</script>", PAGE, re.DOTALL) == [script]
    assert "$" not in PAGE and PAGE.startswith("<!doctype html>")
    expected_policy = (
        f"default-src 'none'; script-src {sha256_source(script)}; "
        f"style-src {sha256_source(style)}; connect-src 'self'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    )
    assert expected_policy == PAGE_POLICY


def test_sha256_source_is_the_csp_hash_of_the_text():
    assert sha256_source("") == "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"


def test_the_page_is_served_with_its_policy_and_without_a_model_call():
    stub = SimpleNamespace(
        labels=SimpleNamespace(names=["ham", "spam"], multi_label=False),
        takes_pairs=False,
        config=SimpleNamespace(
            base_model="m", pooling="last", max_length=8, template=None, decision_rule=Decision()
        ),
    )
    with TestClient(create_app(stub, ServeSettings(api_key="s3cret"))) as client:
        response = client.get("/")
        assert client.app.state.batcher.model_calls == 0
    assert response.status_code == 200 and response.text == PAGE
    assert response.headers["content-security-policy"] == PAGE_POLICY


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


NEEDS_CHROMIUM = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="headless Chromium is missing: apt-get install -y chromium chromium-driver",
)


def headless_chromium():
    """A headless Chromium driven by Selenium."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


@NEEDS_CHROMIUM
def test_page_in_a_headless_browser_shows_the_verdict_and_probabilities_of_the_api(trained_run):
    pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    message = "Congratulations <b>winner</b>! Claim your FREE prize & cash now"
    with serve_command(trained_run, api_key="s3cret") as url:
        api = httpx.post(
            f"{url}/v1/classify",
            json={"text": message},
            headers={"Authorization": "Bearer s3cret"},
            timeout=30,
        ).json()["predictions"][0]
        explained = httpx.post(
            f"{url}/v1/explain",
            json={"text": message},
            headers={"Authorization": "Bearer s3cret"},
            timeout=60,
        ).json()
        driver = headless_chromium()
        try:
            driver.get(url + "/")
            driver.find_element(By.ID, "message").send_keys(message)
            driver.find_element(By.ID, "classify").click()
            status = driver.find_element(By.ID, "status")
            WebDriverWait(driver, 20).until(lambda _: "API key" in status.text)
            driver.find_element(By.CSS_SELECTOR, "#key-box summary").click()
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
            driver.find_element(By.ID, "explain").click()
            driver.find_element(By.ID, "classify").click()
            explanation = driver.find_element(By.ID, "explanation")
            WebDriverWait(driver, 30).until(lambda _: explanation.is_displayed())
            spans = driver.find_elements(By.CSS_SELECTOR, "#tokens span")
            shown_tokens = [span.get_attribute("textContent") for span in spans]
            shades = [span.value_of_css_property("background-color") for span in spans]
        finally:
            driver.quit()
    assert [t["text"] for t in explained["tokens"]] == shown_tokens
    assert "".join(shown_tokens) == message
    strongest = max(range(len(spans)), key=lambda i: abs(explained["tokens"][i]["score"]))
    toward = explained["tokens"][strongest]["score"] > 0
    assert shades[strongest] == ("rgba(220, 38, 38, 1)" if toward else "rgba(37, 99, 235, 1)")
    assert verdict == api["label"] and status_text == ""
    assert float(confidence.removeprefix("probability ")) == pytest.approx(
        api["probability"], abs=5e-5
    )
    assert [label for label, _ in rows] == list(api["probabilities"])
    for label, shown in rows:
        assert float(shown) == pytest.approx(api["probabilities"][label], abs=5e-5)


@NEEDS_CHROMIUM
def test_the_page_shows_a_multi_label_models_set_and_sends_a_pair_to_a_model_of_pairs(
    multi_label_run, pair_run
):
    pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    def verdict_of(url: str, text: str, pair: str | None = None) -> str:
        driver.get(url + "/")
        driver.find_element(By.ID, "message").send_keys(text)
        if pair is not None:
            driver.find_element(By.CSS_SELECTOR, "#pair-box summary").click()
            driver.find_element(By.ID, "pair").send_keys(pair)
        driver.find_element(By.ID, "classify").click()
        result = driver.find_element(By.ID, "result")
        WebDriverWait(driver, 20).until(lambda _: result.is_displayed())
        return driver.find_element(By.ID, "verdict").text

    tagged, paired = (Classifier.from_pretrained(run) for run in (multi_label_run, pair_run))
    question, answer, label = PAIRED[1]
    with (
        running(create_app(tagged, LIMITS)) as (tagged_url, _),
        running(create_app(paired, LIMITS)) as (paired_url, _),
    ):
        driver = headless_chromium()
        try:
            shown = verdict_of(tagged_url, TAGGED[5][0])
            nothing = verdict_of(tagged_url, TAGGED[3][0])
            decided = verdict_of(paired_url, question, answer)
        finally:
            driver.quit()
    assert shown == ", ".join(tagged.predict([TAGGED[5][0]])[0].labels) == "money, social, urgent"
    assert nothing == "no label"
    assert decided == label
