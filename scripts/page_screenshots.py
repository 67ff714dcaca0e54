"""Screenshots of the page of ``gptclf serve`` for the docs, taken by headless Chromium.

    python scripts/page_screenshots.py RUN_DIR --out docs/images

serves RUN_DIR in this process and writes page-light.png and page-dark.png (desktop, after
classifying the run's last example), explain-page.png (the same with the words that decided
highlighted), page-phone.png (390x844: a phone's screen at the message and
its verdict) and page-batch.png (a file of the run's test texts while it is being classified: the
page's requests are held after half of them, so the progress bar is caught midway). Needs
/usr/bin/chromium and /usr/bin/chromedriver (apt-get install chromium chromium-driver) and
selenium.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import threading
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from gptclf.run import RunDir
from gptclf.run.record import read_split
from gptclf.serve import ServeSettings, app_for_run, listening_socket, server_for, url_of

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
DESKTOP, PHONE = (1200, 900), (390, 844)
# Holds the page's requests to /v1/classify from the n-th on until window.release() is called.
HOLD_REQUESTS = """
const original = window.fetch, held = arguments[0];
let calls = 0;
const gate = new Promise((resolve) => { window.release = resolve; });
window.fetch = (path, init) => (String(path).includes("classify") && ++calls >= held
  ? gate.then(() => original(path, init)) : original(path, init));
"""


def serve_in_thread(run_dir: Path, max_texts: int) -> str:
    """The URL of RUN_DIR's service, run by uvicorn in a daemon thread."""
    sock = listening_socket("127.0.0.1", 0)
    app = app_for_run(run_dir, ServeSettings(max_texts=max_texts))
    server = server_for(app, sock, log_level="warning")
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return url_of(sock)


def chromium() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def emulate(driver: webdriver.Chrome, size: tuple[int, int], dark: bool, mobile: bool) -> None:
    """A viewport of ``size`` CSS pixels, in the dark or light scheme."""
    width, height = size
    metrics = {"width": width, "height": height, "mobile": mobile}
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {**metrics, "deviceScaleFactor": 2 if mobile else 1}
    )
    scheme = {"name": "prefers-color-scheme", "value": "dark" if dark else "light"}
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [scheme]})


def full_page(driver: webdriver.Chrome, path: Path) -> None:
    """The whole page, as tall as it is, into ``path``."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    width = driver.execute_script("return document.documentElement.clientWidth")
    emulate(driver, (width, height), dark=is_dark(driver), mobile=False)
    driver.save_screenshot(str(path))


def is_dark(driver: webdriver.Chrome) -> bool:
    return driver.execute_script("return matchMedia('(prefers-color-scheme: dark)').matches")


def classified_example(driver: webdriver.Chrome, url: str) -> None:
    """The page with the last example classified."""
    driver.get(url + "/")
    wait = WebDriverWait(driver, 30)
    wait.until(lambda _: driver.find_elements(By.CSS_SELECTOR, "#examples button"))
    driver.find_elements(By.CSS_SELECTOR, "#examples button")[-1].click()
    driver.find_element(By.ID, "classify").click()
    wait.until(lambda _: driver.find_element(By.ID, "result").is_displayed())


def explained_example(driver: webdriver.Chrome, url: str, path: Path) -> None:
    """The last example classified with its words highlighted, the explanation in view."""
    driver.get(url + "/")
    wait = WebDriverWait(driver, 120)
    wait.until(lambda _: driver.find_elements(By.CSS_SELECTOR, "#examples button"))
    driver.find_elements(By.CSS_SELECTOR, "#examples button")[-1].click()
    driver.find_element(By.ID, "explain").click()
    driver.find_element(By.ID, "classify").click()
    explanation = driver.find_element(By.ID, "explanation")
    wait.until(lambda _: explanation.is_displayed())
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", explanation)
    driver.save_screenshot(str(path))


def batch_file(run_dir: Path, folder: Path, rows: int) -> Path:
    """A CSV of ``rows`` texts of the run's test split (else validation), repeated as needed."""
    split = read_split(RunDir(run_dir), "test") or read_split(RunDir(run_dir), "validation")
    texts = split.texts if split else ["a text"]
    pairs = split.pairs if split else None
    path = folder / "messages.csv"
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["text", "pair"] if pairs else ["text"])
        for i in range(rows):
            writer.writerow([texts[i % len(texts)]] + ([pairs[i % len(texts)]] if pairs else []))
    return path


def batch_midway(
    driver: webdriver.Chrome, url: str, file: Path, requests: int, chunks: int
) -> None:
    """The page classifying ``file`` in ``chunks`` requests, held from the ``requests``-th on,
    once the ones before have been answered."""
    driver.get(url + "/")
    wait = WebDriverWait(driver, 30)
    wait.until(lambda _: driver.find_elements(By.CSS_SELECTOR, "#model-labels li"))
    driver.execute_script(HOLD_REQUESTS, requests)
    driver.find_element(By.ID, "batch-file").send_keys(str(file))
    progress = driver.find_element(By.ID, "batch-progress")
    wait.until(lambda _: driver.find_elements(By.CSS_SELECTOR, "#batch-rows tr"))

    def answered(_) -> bool:
        share = float(progress.get_attribute("value")) / float(progress.get_attribute("max"))
        return share >= (requests - 1) / chunks

    wait.until(answered)
    time.sleep(0.3)  # let the table settle before the picture
    driver.execute_script("document.getElementById('batch').scrollIntoView()")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a trained run folder")
    parser.add_argument("--out", type=Path, default=Path("docs/images"), help="folder for PNGs")
    parser.add_argument("--rows", type=int, default=400, help="rows of the batch file")
    parser.add_argument("--max-texts", type=int, default=40, help="texts per request served")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    url = serve_in_thread(args.run_dir, args.max_texts)
    driver = chromium()
    try:
        for dark, name in ((False, "page-light.png"), (True, "page-dark.png")):
            emulate(driver, DESKTOP, dark, mobile=False)
            classified_example(driver, url)
            full_page(driver, args.out / name)
        emulate(driver, DESKTOP, dark=False, mobile=False)
        explained_example(driver, url, args.out / "explain-page.png")
        emulate(driver, PHONE, dark=False, mobile=True)
        classified_example(driver, url)
        driver.execute_script("document.querySelector('[for=message]').scrollIntoView()")
        driver.save_screenshot(str(args.out / "page-phone.png"))
        with tempfile.TemporaryDirectory() as folder:
            file = batch_file(args.run_dir, Path(folder), args.rows)
            emulate(driver, DESKTOP, dark=False, mobile=False)
            chunks = -(-args.rows // args.max_texts)
            batch_midway(driver, url, file, max(2, chunks // 2 + 1), chunks)
            driver.save_screenshot(str(args.out / "page-batch.png"))
            driver.execute_script("window.release()")
    finally:
        driver.quit()
    for name in ("page-light", "page-dark", "explain-page", "page-phone", "page-batch"):
        print(args.out / f"{name}.png")


if __name__ == "__main__":
    main()
