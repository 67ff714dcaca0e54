"""Checkpoints a resumed run continues from bit for bit: the weights that train, the optimizer's
moments, the best weights so far, torch's random state and the loop's state, as safetensors +
JSON written atomically."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file

from gptclf.atomic import atomic_path, write_text_atomic
from gptclf.errors import GptclfError
from gptclf.training.log import LoopState

if TYPE_CHECKING:
    from gptclf.training.trainer import Trainer

TENSORS, STATE = "state.safetensors", "state.json"


def save(folder: Path, trainer: Trainer) -> None:
    """Write the trainer's checkpoint into ``folder``."""
    tensors = {f"param/{n}": p.detach().contiguous() for n, p in trainer.trainable.items()}
    if trainer.best_weights is not None:
        tensors.update({f"best/{n}": t.contiguous() for n, t in trainer.best_weights.items()})
    optimizer_state = trainer.step.optimizer.state_dict()
    for index, moments in optimizer_state["state"].items():
        tensors.update(
            {f"optim/{index}/{k}": v.reshape(-1) if v.dim() == 0 else v for k, v in moments.items()}
        )
    tensors["rng/torch"] = torch.get_rng_state()
    meta = {
        "state": asdict(trainer.state),
        "param_groups": optimizer_state["param_groups"],
        "scheduler": trainer.step.scheduler.state_dict(),  # a function schedule stores as None
    }
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / TENSORS) as tmp:
        save_file(tensors, str(tmp))
    write_text_atomic(folder / STATE, json.dumps(meta))


def read(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The checkpoint's loop state (JSON) and tensors."""
    if not (folder / STATE).is_file():
        raise GptclfError(f"{folder.parent}: no checkpoint to resume from")
    meta = json.loads((folder / STATE).read_text(encoding="utf-8"))
    return meta, load_file(str(folder / TENSORS))


def restore(trainer: Trainer, checkpoint: tuple[dict, dict[str, torch.Tensor]]) -> None:
    """Put the trainer where ``read``'s checkpoint left it."""
    meta, tensors = checkpoint
    copy_into(trainer.trainable, {n: tensors[f"param/{n}"] for n in trainer.trainable})
    best = {n: tensors[f"best/{n}"] for n in trainer.trainable if f"best/{n}" in tensors}
    trainer.best_weights = best or None
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value.reshape(()) if name == "step" else value
    trainer.step.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    trainer.step.scheduler.load_state_dict(meta["scheduler"])
    torch.set_rng_state(tensors["rng/torch"])
    trainer.state = LoopState(**meta["state"])


@torch.no_grad()
def copy_into(params: dict[str, torch.nn.Parameter], tensors: dict[str, torch.Tensor]) -> None:
    """Set each parameter to the tensor of its name."""
    for name, param in params.items():
        param.copy_(tensors[name])
