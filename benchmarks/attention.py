"""Which attention kernel is fastest on this CPU, by sequence length: PyTorch's flash attention
for the CPU, its plain (math) kernel and gptclf's blocked kernel, forward alone (inference, the
frozen prefix) and forward + backward (training), in bfloat16 with the offline default model's
heads (9 query heads sharing 3 key/value heads of 64 channels), a causal mask and a batch of
about 4,096 tokens.

    .venv/bin/python benchmarks/attention.py [--out benchmarks/results]

``gptclf.models.attention.causal_attention`` follows these figures. Writes ``attention.md`` and
``attention.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from gptclf.models.attention import blocked_attention

LENGTHS = (32, 64, 128, 256, 512, 1024, 2048)
HEADS, KV_HEADS, HEAD_DIM, TOKENS = 9, 3, 64, 4096


def pytorch_kernel(backend: SDPBackend):
    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

    return attend


KERNELS = {
    "flash": pytorch_kernel(SDPBackend.FLASH_ATTENTION),
    "math": pytorch_kernel(SDPBackend.MATH),
    "blocked": lambda q, k, v: blocked_attention(q, k, v, None),
}


def seconds_per_call(length: int, kernel, backward: bool) -> float:
    """The best of 3 timings of one attention call (and its backward) on a batch of the length."""
    batch = max(1, TOKENS // length)
    shape = (batch, HEADS, length, HEAD_DIM)
    q = torch.randn(shape, dtype=torch.bfloat16, requires_grad=backward)
    k, v = (
        torch.randn(batch, KV_HEADS, length, HEAD_DIM, dtype=torch.bfloat16, requires_grad=backward)
        for _ in range(2)
    )
    grad = torch.randn(shape, dtype=torch.bfloat16)

    def call() -> None:
        with torch.set_grad_enabled(backward):
            out = kernel(q, k, v)
            if backward:
                out.backward(grad)

    call()
    best = float("inf")
    for _ in range(3):
        runs, began = 0, time.perf_counter()
        while time.perf_counter() - began < 0.5:
            call()
            runs += 1
        best = min(best, (time.perf_counter() - began) / runs)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    rows = []
    for backward in (False, True):
        for length in LENGTHS:
            times = {name: seconds_per_call(length, k, backward) for name, k in KERNELS.items()}
            rows.append({"length": length, "backward": backward, **times})
            print(rows[-1], flush=True)
    lines = [
        f"# Attention kernels on this CPU ({torch.get_num_threads()} threads, bfloat16, "
        f"{HEADS} heads / {KV_HEADS} key-value heads of {HEAD_DIM}, ~{TOKENS} tokens a batch)",
        "",
        "| pass | tokens | " + " | ".join(KERNELS) + " | fastest |",
        "| --- | ---: | " + "---: | " * len(KERNELS) + "--- |",
    ]
    for row in rows:
        fastest = min(KERNELS, key=lambda name: row[name])
        lines.append(
            f"| {'forward + backward' if row['backward'] else 'forward'} | {row['length']} | "
            + "".join(f"{row[name] * 1e3:.2f} ms | " for name in KERNELS)
            + f"{fastest} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "attention.json").write_text(json.dumps(rows, indent=1) + "\n")
    (args.out / "attention.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
