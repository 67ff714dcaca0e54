"""A training process killed outright (SIGKILL, no chance to clean up) leaves a checkpoint that
``--resume`` continues to exactly the metrics of a run that was never interrupted."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from gptclf.cli import main

from conftest import split_options

EPOCHS = 30  # a window of many epochs after the first checkpoint, for the kill to land in


def options(spam_data: Path, base: Path) -> list[str]:
    return [
        *split_options(spam_data),
        f"--model={base}",
        "--trainable=last-block",
        "--lr=1e-3",
        f"--epochs={EPOCHS}",
        "--precision=fp32",
        "--quiet",
    ]


def killed_after_a_checkpoint(argv: list[str], run: Path) -> None:
    """Start ``gptclf train`` in a process and SIGKILL it as soon as a checkpoint exists."""
    process = subprocess.Popen([sys.executable, "-m", "gptclf", *argv], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (run / "checkpoint" / "state.json").is_file():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no checkpoint within two minutes"
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def without_timings(run: Path) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if not k.endswith(("_seconds", "finished_at"))}


def test_a_killed_run_resumes_to_the_metrics_of_an_uninterrupted_one(
    spam_data, tiny_gpt2_base, tmp_path
):
    argv = ["train", *options(spam_data, tiny_gpt2_base)]
    killed_after_a_checkpoint([*argv, f"--out={tmp_path / 'cut'}"], tmp_path / "cut")
    assert not (tmp_path / "cut" / "metrics.json").exists()
    epochs_done = json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())
    assert 1 <= epochs_done["state"]["epochs_done"] < EPOCHS
    assert main(["train", f"--resume={tmp_path / 'cut'}", "--quiet"]) == 0
    assert main([*argv, f"--out={tmp_path / 'whole'}"]) == 0
    assert without_timings(tmp_path / "cut") == without_timings(tmp_path / "whole")
    logs = [(tmp_path / d / "metrics.jsonl").read_text() for d in ("cut", "whole")]
    assert logs[0] == logs[1]
    assert not (tmp_path / "cut" / "checkpoint").exists()
