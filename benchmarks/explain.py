"""How faithful the explanations are, and what they look like. The offline default model is
finetuned on the SMS book split (default recipe); for every message of the validation split
(the method is chosen there, not on test) each method orders the message's tokens by their push
toward the decided label, and the deletion curve removes them in that order, a tenth at a time,
recording the label's probability (the network's, before any blend). A faithful order makes the
probability fall fast: the area under the curve (the mean over the ten points) is lower. A
random order (seeded) is the floor to beat. Also writes the HTML explanation of a spam message
and, where headless Chromium is installed, a screenshot of the service's page highlighting it.

    .venv/bin/python benchmarks/explain.py [--out benchmarks/results] [--images docs/images]

Writes ``explain.json``, ``explain.md``, ``explain-deletion.png``, ``explain-spam.html`` and
``explain-page.png`` (in ``--images``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import run

from gptclf.atomic import write_text_atomic
from gptclf.data.readers import read_labelled
from gptclf.data.tokenized import template_ids
from gptclf.explain import (
    DELETED_SHARES,
    METHODS,
    attributions,
    deletion_curve,
    explanation_html,
)
from gptclf.plots import new_figure, save_png
from gptclf.precision import resolve_precision
from gptclf.predict import Classifier

SPAM_MESSAGE = (
    "URGENT! You have won a 1 week FREE membership in our £100,000 Prize Jackpot! "
    "Txt the word: CLAIM to No: 81010"
)
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def curves(classifier: Classifier, texts: list[str], seed: int = 0) -> tuple[dict, dict]:
    """Each method's mean deletion curve over ``texts`` (and a random order's), and the seconds
    each method took to score them."""
    network, rng = classifier.network, np.random.default_rng(seed)
    precision = resolve_precision(classifier.config.recipe.precision)
    before, after = template_ids(classifier.tokenizer, classifier.config.template)
    found = {name: [] for name in (*METHODS, "random")}
    seconds = dict.fromkeys(METHODS, 0.0)
    for text in texts:
        ids = classifier.token_ids([text])[0]
        text_ids = ids[len(before) : len(ids) - len(after)]
        target = classifier.labels.names.index(classifier.predict([text])[0].label)
        orders = {"random": rng.permutation(len(text_ids))}
        for method in METHODS:
            began = time.perf_counter()
            scores = attributions(network, ids, target, method, precision)
            seconds[method] += time.perf_counter() - began
            orders[method] = np.argsort(-scores[len(before) : len(ids) - len(after)], kind="stable")
        for name, order in orders.items():
            curve = deletion_curve(network, (before, after), text_ids, order, target, precision)
            found[name].append(curve)
    return {name: np.mean(c, axis=0) for name, c in found.items()}, seconds


def plot(mean_curves: dict, path: Path, n_texts: int) -> None:
    figure = new_figure(6.0, 4.2)
    axes = figure.add_subplot()
    shares = [100 * s for s in DELETED_SHARES]
    for name, curve in mean_curves.items():
        style = ":" if name == "random" else "-"
        label = f"{name} (area {curve.mean():.3f})"
        axes.plot(shares, curve, style, marker="o", label=label)
    axes.set_xlabel("tokens removed, most important first (%)")
    axes.set_ylabel("probability of the decided label")
    axes.set_ylim(0, 1.02)
    axes.set_title(f"Deletion curves, SMS validation messages ({n_texts})")
    axes.legend()
    save_png(figure, path)


def screenshot(run_dir: Path, path: Path) -> bool:
    """The service's page with the spam message classified and its words highlighted; False
    where headless Chromium is not installed."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        return False
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    command = [sys.executable, "-m", "gptclf", "serve", str(run_dir), "--port", "0"]
    server = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ
    )
    try:
        url = next(m.group(0) for line in server.stdout if (m := re.search(r"http://\S+", line)))
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for argument in ("--headless=new", "--no-sandbox", "--window-size=900,900"):
            options.add_argument(argument)
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
        try:
            driver.get(url.rstrip("/") + "/")
            driver.find_element(By.ID, "message").send_keys(SPAM_MESSAGE)
            driver.find_element(By.ID, "explain").click()
            driver.find_element(By.ID, "classify").click()
            explanation = driver.find_element(By.ID, "explanation")
            WebDriverWait(driver, 120).until(lambda _: explanation.is_displayed())
            path.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(path))
        finally:
            driver.quit()
    finally:
        server.terminate()
        server.wait(30)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--images", type=Path, default=Path(__file__).parents[1] / "docs/images")
    parser.add_argument("--texts", type=int, default=40, help="validation messages (seeded draw)")
    parser.add_argument("--run", type=Path, help="a run of the default recipe (default: train one)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        trained = args.run or Path(work, "run")
        if args.run is None:
            run("train", "--dataset=sms-spam", f"--out={trained}", "--quiet")
        classifier = Classifier.from_pretrained(trained)
        every = read_labelled(trained / "split" / "validation.csv").texts
        drawn = np.random.default_rng(0).choice(len(every), min(args.texts, len(every)), False)
        texts = [every[i] for i in sorted(drawn)]
        mean_curves, seconds = curves(classifier, texts)
        plot(mean_curves, args.out / "explain-deletion.png", len(texts))
        spam = classifier.explain(SPAM_MESSAGE)
        write_text_atomic(args.out / "explain-spam.html", explanation_html(spam))
        pictured = screenshot(trained, args.images / "explain-page.png")
    areas = {name: round(float(curve.mean()), 4) for name, curve in mean_curves.items()}
    results = {
        "texts": len(texts),
        "area_under_deletion_curve": areas,
        "curves": {name: [round(float(p), 4) for p in c] for name, c in mean_curves.items()},
        "seconds_per_text": {m: round(s / len(texts), 3) for m, s in seconds.items()},
        "best": min(METHODS, key=areas.get),
        "spam_example": spam.to_json(),
        "screenshot": pictured,
    }
    lines = [
        f"Deletion curves on the SMS validation split ({len(texts)} messages drawn with seed 0, "
        "default recipe): "
        "the decided label's probability as the tokens each method ranks first are removed, a "
        "tenth at a time. Lower area: the method found the tokens that mattered.",
        "",
        "| order | area under the curve | seconds per message |",
        "| --- | --- | --- |",
        *(
            f"| {name} | {areas[name]:.4f} | {results['seconds_per_text'].get(name, 0.0):.3f} |"
            for name in areas
        ),
        "",
        f"Most faithful: {results['best']}.",
    ]
    write_text_atomic(args.out / "explain.json", json.dumps(results, indent=2) + "\n")
    write_text_atomic(args.out / "explain.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
