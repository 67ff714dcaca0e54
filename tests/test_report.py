"""``gptclf report``: one self-contained HTML file that tells a run's story, read back."""

import json
import re
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest

from gptclf.cli import main
from gptclf.data.readers import write_labelled
from gptclf.evaluate import evaluate
from gptclf.metrics import compute_metrics
from gptclf.report import report_html
from gptclf.run import RunDir

from conftest import HAM, SPAM

TRICKY = "<b>WIN</b> & claim your prize"  # spam that must show as text, not markup


class Tables(HTMLParser):
    """The report's headings and each table's cells (text), in order."""

    def __init__(self) -> None:
        super().__init__()
        self.headings, self.tables, self.tags, self._in = [], [], set(), None

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th", "h2"):
            self._in = tag
            if tag == "h2":
                self.headings.append("")
            else:
                self.tables[-1][-1].append("")

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in == "h2":
            self.headings[-1] += data
        elif self._in:
            self.tables[-1][-1][-1] += data


@pytest.fixture
def wrong_run(trained_run, tmp_path):
    """A copy of the trained run whose metrics file also holds a baseline's, and a file of its
    texts labelled the other way (every one a mistake), with one text of markup."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    recorded = json.loads((run / "metrics.json").read_text())
    even = np.full((12, 2), 0.5)
    recorded["baseline"] = {
        "model": "TF-IDF",
        "test": compute_metrics([0, 1] * 6, even, ["ham", "spam"]),
    }
    (run / "metrics.json").write_text(json.dumps(recorded))
    data = tmp_path / "flipped.csv"
    spam = [*SPAM, TRICKY]
    write_labelled(data, spam + HAM, ["ham"] * len(spam) + ["spam"] * len(HAM))
    return RunDir(run), data


def test_the_report_tells_every_part_of_the_run_in_one_file_without_outside_resources(wrong_run):
    run_dir, data = wrong_run
    page = report_html(run_dir, evaluate(run_dir, data))
    parsed = Tables()
    parsed.feed(page)
    assert parsed.headings == [
        "Data",
        "Recipe",
        "Training",
        "Metrics",
        "Test split",
        "Mistakes",
        "Least sure",
    ]
    assert not parsed.tags & {"script", "link", "iframe", "object"}
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 4  # loss, accuracy, reliability, precision-recall
    assert all(source.startswith("data:image/png;base64,") for source in sources)
    assert "http://" not in page and "https://" not in page
    assert TRICKY not in page and "&lt;b&gt;WIN&lt;/b&gt; &amp; claim" in page


def test_the_report_lists_the_mistakes_most_confident_first_and_the_baseline_beside(wrong_run):
    run_dir, data = wrong_run
    evaluation = evaluate(run_dir, data)
    parsed = Tables()
    parsed.feed(report_html(run_dir, evaluation))
    data_table, changed, _, metrics, confusion, mistakes, least_sure = parsed.tables
    assert [row[0] for row in data_table[1:]] == ["train", "validation", "test"]
    assert ["lr", "0.003"] in changed
    assert metrics[0] == ["metric", "model, validation", "model, test", "baseline, test"]
    assert metrics[1] == ["accuracy", "100.00%", "0.00%", "50.00%"]
    assert confusion[1:] == [["ham", "0", "4"], ["spam", "3", "0"]]
    assert mistakes[0] == ["row", "text", "true", "predicted", "probability"]
    shown = [float(row[4]) for row in mistakes[1:]]
    assert len(shown) == 7 and shown == sorted(shown, reverse=True)
    assert {row[1] for row in mistakes[1:]} == {*SPAM, TRICKY, *HAM}
    margins = [float(row[5]) for row in least_sure[1:]]
    assert margins == sorted(margins)


def test_gptclf_report_writes_the_file_it_names(trained_run, tmp_path, capsys):
    out = tmp_path / "story.html"
    assert main(["report", str(trained_run), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    page = out.read_text(encoding="utf-8")
    assert "None: every test text was decided right." in page
    assert main(["report", str(tmp_path)]) == 2
    assert "config.json" in capsys.readouterr().err


def test_a_multi_label_runs_report_shows_label_sets_and_each_labels_curve(multi_label_run):
    run_dir = RunDir(multi_label_run)
    parsed = Tables()
    parsed.feed(report_html(run_dir, evaluate(run_dir)))
    assert parsed.headings[-1] == "Least sure"
    least_sure = parsed.tables[-1]
    assert least_sure[0] == ["row", "text", "true", "predicted", "probability", "margin"]
    assert any(", " in row[2] for row in least_sure[1:])  # a text with several labels
    metrics = next(t for t in parsed.tables if t[0][0] == "metric")
    assert [row[0] for row in metrics[1:3]] == ["subset accuracy", "texts with a label wrong"]


def test_a_run_without_a_test_split_is_reported_without_one(trained_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "split" / "test.csv").unlink()
    assert main(["report", str(run)]) == 0
    parsed = Tables()
    parsed.feed((run / "report.html").read_text(encoding="utf-8"))
    assert parsed.headings == ["Data", "Recipe", "Training", "Metrics", "Test split"]
    assert main(["report", str(run), "--out", str(tmp_path)]) == 2  # a folder
    assert "is a directory" in capsys.readouterr().err
