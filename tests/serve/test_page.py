"""The page at ``/``: its files inlined into one answer, a policy that allows only them, escaping
by construction, and the page in a headless browser."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi.testclient import TestClient

from gptclf.decision import Decision
from gptclf.errors import GptclfError
from gptclf.predict import Classifier
from gptclf.predict_files import predict_file
from gptclf.run import RunDir
from gptclf.run.record import training_record
from gptclf.serve import ServeSettings, create_app
from gptclf.serve.page import PAGE, PAGE_POLICY, sha256_source

from .conftest import LIMITS, running
from conftest import HAM, PAIRED, SPAM, TAGGED

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
BATCH_LIMITS = replace(LIMITS, max_texts=64)  # a file of 300 rows goes in 5 requests
# Counts the page's requests to /v1/classify in window.classifyCalls.
COUNT_REQUESTS = """
const original = window.fetch;
window.classifyCalls = 0;
window.fetch = (path, init) => {
  if (String(path).includes("classify")) window.classifyCalls += 1;
  return original(path, init);
};
"""


def headless_chromium():
    """A headless Chromium driven by Selenium."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the tests of this module."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("headless Chromium is missing: apt-get install -y chromium chromium-driver")
    driver = headless_chromium()
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def service(classifier, trained_run) -> Iterator[str]:
    """The URL of ``trained_run`` served with its training record, within ``BATCH_LIMITS``."""
    record = training_record(RunDir(trained_run), classifier.labels, BATCH_LIMITS.max_chars)
    with running(create_app(classifier, BATCH_LIMITS, record)) as (url, _):
        yield url


def wait(driver, condition, seconds: float = 20):
    from selenium.webdriver.support.wait import WebDriverWait

    return WebDriverWait(driver, seconds).until(lambda _: condition())


def by_id(driver, name: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, name)


def css(driver, selector: str) -> list:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def open_page(driver, url: str) -> None:
    """The page at ``url``, once it shows the model's card."""
    driver.get(url + "/")
    wait(driver, lambda: css(driver, "#model-labels li"))


def texts_of(elements) -> list[str]:
    return [element.text for element in elements]


@NEEDS_CHROMIUM
def test_page_in_a_headless_browser_shows_the_model_the_verdict_and_probabilities_of_the_api(
    trained_run, browser
):
    from selenium.webdriver.common.keys import Keys

    driver = browser
    message = "Congratulations <b>winner</b>! Claim your FREE prize & cash now"
    auth = {"Authorization": "Bearer s3cret"}
    with serve_command(trained_run, api_key="s3cret") as url:
        api = httpx.post(f"{url}/v1/classify", json={"text": message}, headers=auth, timeout=30)
        api = api.json()["predictions"][0]
        explained = httpx.post(
            f"{url}/v1/explain", json={"text": message}, headers=auth, timeout=60
        )
        explained = explained.json()
        model = httpx.get(f"{url}/v1/model", headers=auth, timeout=30).json()
        driver.get(url + "/")
        status = by_id(driver, "status")
        wait(driver, lambda: "API key" in status.text)  # the page asks for the key at once
        assert by_id(driver, "key-box").get_attribute("open") is not None
        by_id(driver, "api-key").send_keys("s3cret", Keys.ENTER)  # the card is fetched again
        wait(driver, lambda: css(driver, "#model-labels li"))
        labels_shown = texts_of(css(driver, "#model-labels li"))
        base_shown = by_id(driver, "model-base").text
        by_id(driver, "message").send_keys(message, Keys.CONTROL, Keys.ENTER)  # Ctrl+Enter
        result = by_id(driver, "result")
        wait(driver, result.is_displayed)
        verdict = by_id(driver, "verdict").text
        confidence = by_id(driver, "confidence").text
        elapsed = by_id(driver, "elapsed").text
        rows = [
            texts_of(row.find_elements("tag name", "td"))
            for row in css(driver, "#probabilities tr")
        ]
        bars = [bar.value_of_css_property("width") for bar in css(driver, "#probabilities .fill")]
        status_text = status.text
        by_id(driver, "explain").click()
        by_id(driver, "classify").click()
        explanation = by_id(driver, "explanation")
        wait(driver, explanation.is_displayed, 30)
        spans = css(driver, "#tokens span")
        shown_tokens = [span.get_attribute("textContent") for span in spans]
        shades = [span.value_of_css_property("background-color") for span in spans]
    assert labels_shown == model["labels"] == ["ham", "spam"]
    assert base_shown == model["base_model"]
    assert [t["text"] for t in explained["tokens"]] == shown_tokens
    assert "".join(shown_tokens) == message
    strongest = max(range(len(spans)), key=lambda i: abs(explained["tokens"][i]["score"]))
    toward = explained["tokens"][strongest]["score"] > 0
    assert shades[strongest] == ("rgba(220, 38, 38, 1)" if toward else "rgba(37, 99, 235, 1)")
    assert verdict == api["label"] and status_text == ""
    assert re.fullmatch(r"answered in \d+ ms", elapsed)
    assert float(confidence.removeprefix("probability ")) == pytest.approx(
        api["probability"], abs=5e-5
    )
    assert [label for label, _ in rows] == list(api["probabilities"])
    for label, shown in rows:
        assert float(shown) == pytest.approx(api["probabilities"][label], abs=5e-5)
    widest = max(range(len(bars)), key=lambda i: float(bars[i].removesuffix("px")))
    assert rows[widest][0] == api["label"]  # the longest bar is the verdict's


@NEEDS_CHROMIUM
def test_the_page_shows_a_multi_label_models_set_and_sends_a_pair_to_a_model_of_pairs(
    multi_label_run, pair_run, browser, tmp_path
):
    driver = browser

    def verdict_of(url: str, text: str, pair: str | None = None) -> str:
        open_page(driver, url)
        by_id(driver, "message").send_keys(text)
        if pair is not None:  # the box of the pair is open for a model of pairs
            by_id(driver, "pair").send_keys(pair)
        by_id(driver, "classify").click()
        result = by_id(driver, "result")
        wait(driver, result.is_displayed)
        return by_id(driver, "verdict").text

    def downloaded_for(url: str, rows: list[list[str]], name: str) -> tuple[Path, Path]:
        """The page's download for a CSV of ``rows``, and the file it classified."""
        file = tmp_path / f"{name}.csv"
        with open(file, "w", encoding="utf-8", newline="") as out:
            csv.writer(out).writerows(rows)
        open_page(driver, url)
        classify_file(driver, file)
        return download(driver, tmp_path / name), file

    tagged, paired = (Classifier.from_pretrained(run) for run in (multi_label_run, pair_run))
    question, answer, label = PAIRED[1]
    with (
        running(create_app(tagged, LIMITS)) as (tagged_url, _),
        running(create_app(paired, LIMITS)) as (paired_url, _),
    ):
        shown = verdict_of(tagged_url, TAGGED[5][0])
        marks = len(css(driver, "#probabilities .mark"))  # a threshold for each label
        pair_box_hidden = not by_id(driver, "pair-box").is_displayed()
        nothing = verdict_of(tagged_url, TAGGED[3][0])
        decided = verdict_of(paired_url, question, answer)
        tagged_csv, tagged_file = downloaded_for(
            tagged_url, [["text"], *([text] for text, _ in TAGGED)], "tagged"
        )
        paired_csv, paired_file = downloaded_for(
            paired_url, [["text", "pair"], *([q, a] for q, a, _ in PAIRED)], "paired"
        )
    assert shown == ", ".join(tagged.predict([TAGGED[5][0]])[0].labels) == "money, social, urgent"
    assert marks == 3 and pair_box_hidden
    assert nothing == "no label"
    assert decided == label
    predict_file(tagged, tagged_file, tmp_path / "tagged-predicted.csv")
    predict_file(paired, paired_file, tmp_path / "paired-predicted.csv", pair_column="pair")
    assert_same_predictions_csv(tagged_csv, tmp_path / "tagged-predicted.csv")
    assert_same_predictions_csv(paired_csv, tmp_path / "paired-predicted.csv")
    assert read_csv(tagged_csv)[0] == ["text", "labels", "p_money", "p_social", "p_urgent"]
    assert read_csv(paired_csv)[0] == ["text", "pair", "label", "probability", "p_no", "p_yes"]


def batch_texts(rows: int) -> list[str]:
    """Texts of the spam and ham kinds, some with commas, quotes and a newline inside."""
    texts = []
    for i in range(rows):
        text = (SPAM + HAM)[i % 6]
        if i % 10 == 3:
            text += ', "quoted, with commas" and ""doubled""'
        elif i % 50 == 7:
            text += "\nsecond line, été ☕"
        texts.append(f"{text} #{i}")
    return texts


def classify_file(driver, file: Path) -> None:
    """Give the page ``file`` and wait until it has classified it."""
    by_id(driver, "batch-file").send_keys(str(file))
    wait(driver, by_id(driver, "batch-download").is_displayed, 30)


def download(driver, folder: Path, seconds: float = 20) -> Path:
    """The file the page's download button saves, saved into ``folder``."""
    folder.mkdir()
    driver.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)}
    )
    by_id(driver, "batch-download").click()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        files = list(folder.iterdir())
        if len(files) == 1 and files[0].suffix == ".csv":  # not .crdownload
            return files[0]
        time.sleep(0.05)
    raise AssertionError(f"no download in {folder}: {list(folder.iterdir())}")


def read_csv(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as file:
        return list(csv.reader(file))


def assert_same_predictions_csv(got: Path, expected: Path) -> None:
    """The same header and cells, but probabilities only up to float rounding."""
    ours, theirs = read_csv(got), read_csv(expected)
    header = ours[0]
    assert header == theirs[0] and len(ours) == len(theirs)
    numeric = [name == "probability" or name.startswith("p_") for name in header]
    for row, expected_row in zip(ours[1:], theirs[1:], strict=True):
        assert len(row) == len(header)
        for cell, expected_cell, is_number in zip(row, expected_row, numeric, strict=True):
            if is_number:
                assert float(cell) == pytest.approx(float(expected_cell), abs=1e-5)
            else:
                assert cell == expected_cell


@NEEDS_CHROMIUM
def test_the_page_classifies_a_file_in_chunks_and_downloads_what_gptclf_predict_writes(
    trained_run, service, browser, tmp_path
):
    driver = browser
    texts = batch_texts(300)
    messages = tmp_path / "messages.csv"
    with open(messages, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)  # rows end with \r\n; the newline inside a field is \n
        writer.writerows([["id", "text"], *([str(i), text] for i, text in enumerate(texts))])
    predicted = tmp_path / "predicted.csv"
    command = [sys.executable, "-m", "gptclf", "predict", str(trained_run)]
    predict = subprocess.Popen(  # meanwhile, the page classifies the same file
        [*command, "--input", str(messages), "--output", str(predicted)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    open_page(driver, service)
    driver.execute_script(COUNT_REQUESTS)
    classify_file(driver, messages)
    status = by_id(driver, "batch-status").text
    progress = by_id(driver, "batch-progress")
    done, total = (float(progress.get_attribute(name)) for name in ("value", "max"))
    requests = driver.execute_script("return window.classifyCalls")
    shown_rows = len(css(driver, "#batch-rows tr"))
    sorting = {}
    column = texts_of(css(driver, "#batch-head th")).index("p_spam")
    for order in ("ascending", "descending"):  # a heading sorts by its column, then reverses
        css(driver, "#batch-head button")[column].click()
        rows = [row.find_elements("tag name", "td") for row in css(driver, "#batch-rows tr")]
        heading = css(driver, "#batch-head th")[column].get_attribute("aria-sort")
        sorting[order] = heading, [float(cells[column].text) for cells in rows]
    page_csv = download(driver, tmp_path / "downloads")
    log = predict.communicate(timeout=60)[0]
    assert predict.returncode == 0, log
    assert status == "300 of 300 rows classified." and done == total == 300
    assert requests == 5 and shown_rows == 300
    assert sorting["ascending"][0] == "ascending" and sorting["descending"][0] == "descending"
    assert sorting["ascending"][1] == sorted(sorting["ascending"][1])
    assert sorting["descending"][1] == sorted(sorting["ascending"][1], reverse=True)
    assert page_csv.name == "messages-predictions.csv"
    assert_same_predictions_csv(page_csv, predicted)
    got = read_csv(page_csv)
    assert got[0] == ["text", "label", "probability", "p_ham", "p_spam"]
    assert [row[0] for row in got[1:]] == texts


@NEEDS_CHROMIUM
def test_the_page_shows_the_services_error_and_names_the_rows_of_a_file_it_cannot_send(
    service, browser, tmp_path
):
    driver = browser
    open_page(driver, service)
    by_id(driver, "message").send_keys("x" * (BATCH_LIMITS.max_chars + 1))
    by_id(driver, "classify").click()
    status = by_id(driver, "status")
    wait(driver, lambda: "limit" in status.text)
    single_error = (
        status.text,
        status.get_attribute("class"),
        by_id(driver, "result").is_displayed(),
    )
    lines = ["see you at lunch", "y" * 250, "", "WIN a FREE prize now"]
    messages = tmp_path / "long.csv"
    messages.write_text("text\n" + "\n".join(lines) + "\n", encoding="utf-8")
    by_id(driver, "batch-file").send_keys(str(messages))
    wait(driver, by_id(driver, "batch-download").is_displayed)
    batch_status = by_id(driver, "batch-status").text
    errors = texts_of(css(driver, "#batch-errors li"))
    cells = [
        texts_of(row.find_elements("tag name", "td"))[:3] for row in css(driver, "#batch-rows tr")
    ]
    assert single_error == ("text has 201 characters; the limit is 200", "error", False)
    assert batch_status == "2 of 4 rows classified; 2 not, listed below (empty in the download)."
    assert errors == ["row 2 has 250 characters; the limit is 200", "row 3: no text to classify"]
    assert [row[0] for row in cells] == ["1", "2", "3", "4"]
    assert cells[1][2] == errors[0] and cells[2][2] == errors[1]


def background_lightness(driver) -> float:
    """The body's computed background colour's mean channel, 0 (black) to 1 (white)."""
    colour = driver.execute_script("return getComputedStyle(document.body).backgroundColor")
    channels = [int(c) for c in re.findall(r"\d+", colour)[:3]]
    return sum(channels) / 765


@NEEDS_CHROMIUM
def test_the_page_follows_the_colour_scheme_and_fits_a_phone(service, browser):
    driver = browser
    scheme = "prefers-color-scheme"
    lightness = {}
    try:
        for value in ("dark", "light"):
            features = [{"name": scheme, "value": value}]
            driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": features})
            open_page(driver, service)
            lightness[value] = background_lightness(driver)
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True},
        )
        open_page(driver, service)
        css(driver, "#examples button")[-1].click()
        by_id(driver, "classify").click()
        wait(driver, by_id(driver, "result").is_displayed)
        widths = driver.execute_script(
            "return [document.documentElement.scrollWidth, window.innerWidth]"
        )
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    assert lightness["dark"] < 0.2 and lightness["light"] > 0.8
    assert widths[0] <= widths[1] == 390  # no horizontal scrolling


@contextmanager
def interrupted_after(driver, seconds: float) -> Iterator[None]:
    """Stops the page's JavaScript if it still runs ``seconds`` from now, over a DevTools
    connection of its own (Selenium's commands wait on a busy page): a page that hangs fails
    its test instead of freezing the browser for the tests after it."""
    import websocket  # a dependency of Selenium

    address = driver.capabilities["goog:chromeOptions"]["debuggerAddress"]
    targets = httpx.get(f"http://{address}/json", timeout=10).json()
    page = next(target for target in targets if target["id"] == driver.current_window_handle)
    connection = websocket.create_connection(
        page["webSocketDebuggerUrl"], timeout=10, suppress_origin=True
    )
    connection.send(
        json.dumps({"id": 1, "method": "Runtime.evaluate", "params": {"expression": "0"}})
    )
    connection.recv()  # attached while the page is idle: a busy page could not attach us
    stop = json.dumps({"id": 2, "method": "Runtime.terminateExecution"})
    timer = threading.Timer(seconds, connection.send, [stop])
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        connection.close()


def batch_outcome(driver) -> tuple[str, bool, list[str], list[list[str]]]:
    """Once the file is classified or refused: the batch's status, whether it is an error, the
    errors listed, and the cells of the table's rows."""
    status = by_id(driver, "batch-status")
    download = by_id(driver, "batch-download")
    wait(driver, lambda: download.is_displayed() or "error" in status.get_attribute("class"))
    rows = [texts_of(row.find_elements("tag name", "td")) for row in css(driver, "#batch-rows tr")]
    errors = texts_of(css(driver, "#batch-errors li"))
    return status.text, "error" in status.get_attribute("class"), errors, rows


def classify_calls(driver) -> int:
    return driver.execute_script("return window.classifyCalls")


@NEEDS_CHROMIUM
def test_the_page_reads_stray_quotes_and_long_quoted_fields_at_once(service, browser, tmp_path):
    driver = browser
    garbled = tmp_path / "garbled.csv"  # a backtracking parser takes ages over the long field
    garbled.write_text(
        'id,text\n1,she said "hi" to me\n2,"' + "x" * 5000 + '"garbage\n3,WIN a FREE prize\n',
        encoding="utf-8",
    )
    unclosed = tmp_path / "unclosed.csv"
    unclosed.write_text('text\nsee you\n"' + "y" * 5000 + ", never closed\n", encoding="utf-8")
    open_page(driver, service)
    outcomes = []
    began = time.monotonic()
    with interrupted_after(driver, 15):
        for file in (garbled, unclosed):
            by_id(driver, "batch-file").send_keys(str(file))
            outcomes.append(batch_outcome(driver))
    seconds = time.monotonic() - began
    status, failed, errors, rows = outcomes[0]
    assert status == "2 of 3 rows classified; 1 not, listed below (empty in the download)."
    assert failed and errors == ["row 2 has 5,007 characters; the limit is 200"]
    assert [row[1] for row in rows] == ['she said "hi" to me', "x" * 300 + "…", "WIN a FREE prize"]
    assert outcomes[1] == ("row 2: a quoted field is never closed", True, [], [])
    assert seconds < 10


HOLD_REQUEST = """
const original = window.fetch, held = arguments[0];
let calls = 0;
window.heldSent = false;
window.settled = false;
const gate = new Promise((resolve) => { window.release = resolve; });
const settle = () => setTimeout(() => { window.settled = true; }, 0);
window.fetch = (path, init) => {
  if (!String(path).includes("classify") || ++calls !== held) return original(path, init);
  window.heldSent = true;
  return gate.then(async (fail) => {
    if (fail) {
      settle();
      throw new TypeError("the held request failed");
    }
    const response = await original(path, init);
    const read = response.json.bind(response);
    response.json = () => read().finally(settle);
    return response;
  });
};
"""
# Holds the page's n-th request to /v1/classify until window.release(fail): then it is sent (or
# fails), and window.settled is set once the page has done all it does with the answer.
RELEASE = """
const [fail, done] = arguments;
window.release(fail);
const check = () => (window.settled ? done() : setTimeout(check, 10));
check();
"""


@NEEDS_CHROMIUM
@pytest.mark.parametrize("fails", [False, True], ids=["answered", "failed"])
def test_a_file_chosen_during_a_batch_replaces_it_and_the_first_shows_nothing(
    fails, service, browser, tmp_path
):
    driver = browser
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_text("text\n" + "\n".join(f"first {i}" for i in range(100)), encoding="utf-8")
    second.write_text("text\nsecond a\nsecond b\nsecond c\n", encoding="utf-8")
    open_page(driver, service)
    driver.execute_script(HOLD_REQUEST, 2)  # the first file's last request of two
    by_id(driver, "batch-file").send_keys(str(first))
    wait(driver, lambda: driver.execute_script("return window.heldSent"))
    classify_file(driver, second)
    driver.set_script_timeout(20)
    driver.execute_async_script(RELEASE, fails)
    status, failed, errors, rows = batch_outcome(driver)
    progress = [by_id(driver, "batch-progress").get_attribute(name) for name in ("value", "max")]
    saved = download(driver, tmp_path / "downloads")
    assert (status, failed, errors) == ("3 of 3 rows classified.", False, [])
    assert [row[1] for row in rows] == ["second a", "second b", "second c"]
    assert progress == ["3", "3"]
    assert saved.name == "second-predictions.csv"
    assert [row[0] for row in read_csv(saved)[1:]] == ["second a", "second b", "second c"]


@NEEDS_CHROMIUM
def test_the_page_finds_the_text_column_as_gptclf_predict_does_or_refuses(
    classifier, service, browser, tmp_path
):
    driver = browser
    tweets = tmp_path / "tweets.csv"
    tweets.write_text("id,tweet\n1,WIN a FREE prize\n2,see you at lunch\n", encoding="utf-8")
    cased = tmp_path / "cased.csv"  # "text" itself before a column named so but for case
    cased.write_text("TEXT,id,text\nwrong,1,see you at lunch\n", encoding="utf-8")
    open_page(driver, service)
    driver.execute_script(COUNT_REQUESTS)
    by_id(driver, "batch-file").send_keys(str(tweets))
    refused = batch_outcome(driver)
    requests = classify_calls(driver)
    by_id(driver, "batch-file").send_keys(str(cased))
    _, _, _, rows = batch_outcome(driver)
    hint = by_id(driver, "batch-hint").text
    expected = (
        'tweets.csv: cannot tell which column holds the texts (columns: id, tweet); name it "text"'
    )
    assert refused == (expected, True, [], []) and requests == 0
    assert [row[1] for row in rows] == ["see you at lunch"]
    assert "first column" not in hint and "query" in hint
    with pytest.raises(GptclfError, match="cannot tell which column holds the texts"):
        predict_file(classifier, tweets, tmp_path / "predicted.csv")
    predict_file(classifier, cased, tmp_path / "cased-predicted.csv")
    assert [row[0] for row in read_csv(tmp_path / "cased-predicted.csv")[1:]] == [
        "see you at lunch"
    ]


@NEEDS_CHROMIUM
def test_the_page_refuses_files_it_cannot_read_before_sending_them(
    service, pair_run, browser, tmp_path
):
    driver = browser
    accepted = "the page reads CSV (.csv) and TXT (.txt) files only"
    table = tmp_path / "messages.tsv"
    table.write_text("id\ttext\n1\tsee you at lunch\n", encoding="utf-8")
    lines = tmp_path / "messages.jsonl"
    lines.write_text('{"text": "see you at lunch"}\n', encoding="utf-8")
    texts = tmp_path / "questions.txt"
    texts.write_text("is it raining?\n", encoding="utf-8")
    outcomes = {}
    open_page(driver, service)
    driver.execute_script(COUNT_REQUESTS)
    for file in (table, lines):
        by_id(driver, "batch-file").send_keys(str(file))
        outcomes[file.name] = batch_outcome(driver)
    with running(create_app(Classifier.from_pretrained(pair_run), LIMITS)) as (url, _):
        open_page(driver, url)
        driver.execute_script(COUNT_REQUESTS)
        by_id(driver, "batch-file").send_keys(str(texts))
        outcomes[texts.name] = batch_outcome(driver)
        pair_requests = classify_calls(driver)
    assert outcomes["messages.tsv"] == (f"messages.tsv: {accepted}", True, [], [])
    assert outcomes["messages.jsonl"] == (f"messages.jsonl: {accepted}", True, [], [])
    pairs = "this model classifies pairs of texts: give a CSV with text and pair columns"
    assert outcomes["questions.txt"] == (pairs, True, [], []) and pair_requests == 0
