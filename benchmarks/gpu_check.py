"""The GPU path checked end to end: ``gptclf train``, ``eval`` and ``predict`` with ``--device
cuda`` on the SMS book split (the demo's job), in bfloat16 and in float32 on TF32 tensor cores,
beside the same commands on the CPU; the suite never depends on a GPU, this script is where it
is exercised.

    .venv/bin/python benchmarks/gpu_check.py [--out benchmarks/results] [--devices cuda cpu]

Each row trains with a store of its own (a cold run), then evaluates the run on the test split
and classifies the test texts from a file. Checks: every command succeeds; the GPU runs' test
errors are within 3 of the CPU's (a different device rounds differently); the CPU-trained run
evaluated on the GPU makes the errors it makes on the CPU, within 1, and its predicted labels
agree on at least 99% of the texts. Without a GPU it says so and checks the CPU rows alone.
Writes ``gpu.json`` and ``gpu.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROWS = {  # name: (device, precision)
    "cpu, auto (bf16 where native)": ("cpu", "auto"),
    "cuda, auto (bf16)": ("cuda", "auto"),
    "cuda, fp32 (TF32)": ("cuda", "fp32"),
}


def gptclf(*args: str, store: Path) -> tuple[float, str]:
    """Run a gptclf command with its own prefix store; its wall time and stdout."""
    env = {**os.environ, "GPTCLF_STORE": str(store)}
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "gptclf", *args], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"gptclf {' '.join(args)} failed:\n{done.stderr}")
    return time.perf_counter() - began, done.stdout


def labels_of(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as file:
        return [row["label"] for row in csv.DictReader(file)]


def check_row(name: str, device: str, precision: str, work: Path) -> dict:
    """Train, evaluate and predict on ``device``; the figures."""
    run, store = work / name.split(",")[0] / precision, work / f"store-{device}-{precision}"
    seconds, _ = gptclf(
        "train",
        "--dataset",
        "sms-spam",
        "--device",
        device,
        "--precision",
        precision,
        "--out",
        str(run),
        "--quiet",
        store=store,
    )
    trained = json.loads((run / "metrics.json").read_text())
    eval_seconds, out = gptclf("eval", str(run), "--device", device, "--json", store=store)
    evaluated = json.loads(out)
    predictions = work / f"{device}-{precision}.csv"
    test = run / "split" / "test.csv"
    predict_seconds, _ = gptclf(
        "predict",
        str(run),
        "--input",
        str(test),
        "--output",
        str(predictions),
        "--device",
        device,
        store=store,
    )
    return {
        "device": device,
        "precision": precision,
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "run": str(run),
        "train_seconds": round(seconds, 1),
        "prepare_seconds": trained["prepare_seconds"],
        "loop_seconds": trained["train_seconds"],
        "test_errors": trained["test"]["n_errors"],
        "test_accuracy": round(trained["test"]["accuracy"], 4),
        "eval_seconds": round(eval_seconds, 1),
        "eval_errors": evaluated["n_errors"],
        "predict_seconds": round(predict_seconds, 1),
        "predicted": labels_of(predictions),
    }


def cross_device(cpu: dict, work: Path) -> dict:
    """The CPU-trained run evaluated and predicting on the GPU."""
    store = work / "store-cross"
    _, out = gptclf("eval", cpu["run"], "--device", "cuda", "--json", store=store)
    predictions = work / "cpu-run-on-cuda.csv"
    test = Path(cpu["run"]) / "split" / "test.csv"
    gptclf(
        "predict",
        cpu["run"],
        "--input",
        str(test),
        "--output",
        str(predictions),
        "--device",
        "cuda",
        store=store,
    )
    on_gpu = labels_of(predictions)
    agree = sum(a == b for a, b in zip(on_gpu, cpu["predicted"], strict=True)) / len(on_gpu)
    return {"eval_errors": json.loads(out)["n_errors"], "label_agreement": round(agree, 4)}


def problems(rows: list[dict], cross: dict | None) -> list[str]:
    """What the checks found wrong (nothing: an empty list)."""
    cpu = next((r for r in rows if r["device"] == "cpu"), None)
    found = [
        f"{r['device']} {r['precision']}: eval errors {r['eval_errors']} != training's "
        f"{r['test_errors']}"
        for r in rows
        if abs(r["eval_errors"] - r["test_errors"]) > 1
    ]
    for row in rows:
        if cpu and row["device"] == "cuda" and abs(row["test_errors"] - cpu["test_errors"]) > 3:
            errors = f"{row['test_errors']} test errors, the CPU's {cpu['test_errors']}"
            found.append(f"cuda {row['precision']}: {errors}")
    if cross and (
        abs(cross["eval_errors"] - cpu["eval_errors"]) > 1 or cross["label_agreement"] < 0.99
    ):
        found.append(f"the CPU run on the GPU: {cross}")
    return found


def markdown(rows: list[dict], cross: dict | None, found: list[str]) -> str:
    lines = [
        "# The GPU path (SMS book split, default recipe)",
        "",
        "| device | precision | GPU | train (wall) | prepare | loop | test errors | eval "
        "| predict |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['device']} | {r['precision']} | {r['gpu'] or '-'} | {r['train_seconds']} s | "
            f"{r['prepare_seconds']} s | {r['loop_seconds']} s | {r['test_errors']} of 300 | "
            f"{r['eval_seconds']} s | {r['predict_seconds']} s |"
        )
    if cross:
        lines += [
            "",
            f"The CPU-trained run on the GPU: {cross['eval_errors']} test errors, "
            f"{100 * cross['label_agreement']:.1f}% of labels as on the CPU.",
        ]
    lines += ["", "Checks: " + ("all passed." if not found else "; ".join(found))]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--devices", nargs="+", choices=("cuda", "cpu"), default=["cuda", "cpu"])
    args = parser.parse_args()
    devices = list(args.devices)
    if "cuda" in devices and not torch.cuda.is_available():
        print("no GPU here: the CPU rows only")
        devices.remove("cuda")
    if not devices:
        return
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        rows = [
            check_row(name, device, precision, work)
            for name, (device, precision) in ROWS.items()
            if device in devices
        ]
        cpu = next((r for r in rows if r["device"] == "cpu"), None)
        cross = cross_device(cpu, work) if cpu and "cuda" in devices else None
    found = problems(rows, cross)
    for row in rows:
        del row["predicted"], row["run"]
    args.out.mkdir(parents=True, exist_ok=True)
    results = {"rows": rows, "cpu_run_on_gpu": cross, "problems": found}
    (args.out / "gpu.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "gpu.md").write_text(markdown(rows, cross, found))
    print(markdown(rows, cross, found))
    raise SystemExit(1 if found else 0)


if __name__ == "__main__":
    main()
