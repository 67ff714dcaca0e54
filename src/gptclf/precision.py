"""How the arithmetic runs: bfloat16 autocast where the processor computes it natively, else
float32 (weights and optimizer state stay float32; only the matrix products run in bfloat16);
with ``int8``, the frozen linear layers multiply in int8 on CPUs with integer dot products (VNNI,
AMX)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import torch
from torch import nn

from gptclf.errors import GptclfError

PRECISIONS = ("auto", "bf16", "fp32", "int8")
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # /proc/cpuinfo: int8 dot products


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: the CPU multiplies bfloat16 matrices natively (oneDNN checks)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@cache
def cpu_has_int8_dot() -> bool:
    """VNNI or AMX: the CPU multiplies int8 matrices natively (Linux reports it)."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return any(flag in flags for flag in INT8_FLAGS)


def resolve_precision(name: str, device: str = "cpu") -> str:
    """``bf16``, ``fp32`` or ``int8`` for this machine; ``auto`` picks bf16 only with native
    support; ``int8`` needs a CPU with integer dot products."""
    if name not in PRECISIONS:
        raise GptclfError(f"--precision must be one of {', '.join(PRECISIONS)}, not {name!r}")
    if name == "int8" and (device != "cpu" or not cpu_has_int8_dot()):
        where = "a GPU" if device != "cpu" else "this CPU (no VNNI or AMX in /proc/cpuinfo)"
        raise GptclfError(f"--precision int8 runs on CPUs with VNNI or AMX, not on {where}")
    if name != "auto":
        return name
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


@contextlib.contextmanager
def autocast(precision: str, device: str = "cpu") -> Iterator[None]:
    """bfloat16 autocast for ``bf16`` (and around ``int8``'s integer layers); nothing for
    ``fp32``."""
    if precision in ("bf16", "int8"):
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            yield
    else:
        yield


def kept_dtype(precision: str) -> torch.dtype:
    """The dtype hidden states are kept in after a pass under ``precision``."""
    return torch.float32 if precision == "fp32" else torch.bfloat16


class Int8Linear(nn.Module):
    """A frozen ``nn.Linear`` multiplying in int8: its weight rounded per output row to int8
    with a float scale, each input row likewise when it comes in (symmetric, dynamic), the
    product summed in int32 and scaled back."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp_min(1e-12) / 127
        self.register_buffer("weight_t", (weight / scale[:, None]).round().to(torch.int8).t())
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        scale = rows.abs().amax(dim=1, keepdim=True).float().div_(127).clamp_min_(1e-12)
        quantized = (rows.float() / scale).round_().to(torch.int8)
        out = torch._int_mm(quantized, self.weight_t).float().mul_(scale).mul_(self.weight_scale)
        if self.bias is not None:
            out += self.bias
        return out.to(x.dtype).reshape(*x.shape[:-1], -1)


def frozen_linears(module: nn.Module) -> list[str]:
    """The names of the ``nn.Linear`` layers in ``module`` whose parameters stay frozen, except
    inside a layer that trains beside them (LoRA): those ``set_frozen_precision`` sets."""
    modules = dict(module.named_modules())
    return [
        name
        for name, child in modules.items()
        if type(child) is nn.Linear
        and not any(p.requires_grad for p in child.parameters())
        and not any(p.requires_grad for p in modules[name.rpartition(".")[0]].parameters(False))
    ]


def set_frozen_precision(module: nn.Module, names: list[str], precision: str) -> None:
    """Make the frozen ``nn.Linear`` layers of ``module`` named ``names`` (where they still
    are) multiply as ``precision`` says, once instead of at every call: ``int8`` replaces them
    by :class:`Int8Linear`; ``bf16`` casts their weights to bfloat16 (what autocast would do
    to them at every call); ``fp32`` leaves them."""
    if precision == "fp32":
        return
    modules = dict(module.named_modules())
    for name in names:
        if type(modules.get(name)) is not nn.Linear:
            continue
        if precision == "bf16":
            modules[name].to(torch.bfloat16)
        else:
            parent, _, attribute = name.rpartition(".")
            setattr(module.get_submodule(parent), attribute, Int8Linear(modules[name]))
