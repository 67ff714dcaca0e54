"""The frozen-prefix store: hidden states of token sequences after a model's bottom blocks, kept
on disk so that every run, fold and recipe candidate on the same texts computes them once.

Content-addressed: an entry's key is the SHA-256 of the prefix's weights (embeddings and the
bottom ``depth`` blocks, as they are in memory), the precision and the token ids, so the base
model, tokenizer, template, length limit and depth all enter through what they produce. One
file per sequence, written whole and renamed into place (a reader never sees a torn file, two
processes may fill the store at once); reading an entry marks it recently used, and the least
recently used go when the store outgrows its bound."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gptclf.atomic import atomic_path
from gptclf.errors import GptclfError
from gptclf.home import home_dir
from gptclf.inference import states_at_depths
from gptclf.models import LanguageModel

FORMAT = "gptclf-prefix-3"
FOLDER_VARIABLE = "GPTCLF_STORE"
SIZE_VARIABLE = "GPTCLF_STORE_GB"
DEFAULT_GB = 8.0


def store_folder() -> Path:
    """``$GPTCLF_STORE``, or ``prefix-states`` in gptclf's folder."""
    return Path(os.environ.get(FOLDER_VARIABLE) or home_dir("prefix-states"))


def store_bound() -> int:
    """The store's size bound in bytes: ``$GPTCLF_STORE_GB`` gigabytes (default 8)."""
    value = os.environ.get(SIZE_VARIABLE, str(DEFAULT_GB))
    try:
        gigabytes = float(value)
    except ValueError:
        gigabytes = -1.0
    if gigabytes < 0:
        raise GptclfError(f"{SIZE_VARIABLE} must be a number of gigabytes, not {value!r}")
    return int(gigabytes * 1e9)


def prefix_fingerprints(model: LanguageModel, depths: Iterable[int], precision: str) -> dict:
    """For each depth, the SHA-256 of what the states after the bottom ``depth`` blocks depend
    on besides the token ids: the architecture (rotation, windows: what no tensor holds), the
    embeddings' and those blocks' tensors, and the precision."""
    architecture = json.dumps(asdict(model.cfg), sort_keys=True)
    digest = hashlib.sha256(f"{FORMAT}\0{precision}\0{architecture}".encode())
    for layer in model.embedding_layers():
        _hash_tensors(digest, layer)
    out, done = {}, 0
    for depth in sorted(set(depths)):
        for block in model.trf_blocks[done:depth]:
            _hash_tensors(digest, block)
        out[depth], done = digest.hexdigest(), depth
    return out


def _hash_tensors(digest, module: torch.nn.Module) -> None:
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.detach().contiguous().cpu().view(torch.uint8).numpy().data)


@dataclass
class Tally:
    """How many sequences' states (at one depth each) a store read, and computed."""

    read: int = 0
    computed: int = 0


class PrefixStore:
    """Frozen-prefix states on disk (``folder``, bounded to ``bound`` bytes; None: unbounded),
    and those read or computed in this process also held in memory when ``keep`` (for the folds
    and candidates of a recipe search). ``folder=None`` keeps them in memory only."""

    def __init__(
        self, folder: Path | None = None, bound: int | None = None, keep: bool = True
    ) -> None:
        self.folder = folder
        self.bound = bound
        self.keep = keep
        self.tally = Tally()
        self._held: dict[str, torch.Tensor] = {}

    @classmethod
    def on_disk(cls, keep: bool = True) -> PrefixStore:
        """The store in ``store_folder()``, bounded by ``store_bound()``."""
        return cls(store_folder(), store_bound(), keep)

    def fill(
        self,
        language_model: LanguageModel,
        sequences: list[list[int]],
        depths: Iterable[int],
        pad_id: int,
        precision: str,
    ) -> dict[int, list[torch.Tensor]]:
        """The states of ``sequences`` at each of ``depths``: those found read, the others
        computed in one pass through the deepest needed, and written."""
        depths = sorted(set(depths))
        prints = prefix_fingerprints(language_model, depths, precision)
        keys = {d: [_entry_key(prints[d], s) for s in sequences] for d in depths}
        found = {
            d: [self._read(k, len(s)) for k, s in zip(keys[d], sequences, strict=True)]
            for d in depths
        }
        self.tally.read += sum(state is not None for d in depths for state in found[d])
        missing = [i for i in range(len(sequences)) if any(found[d][i] is None for d in depths)]
        if not missing:
            return found
        unique = list({tuple(sequences[i]): None for i in missing})  # each once, in input order
        computed = states_at_depths(
            language_model, [list(s) for s in unique], depths, pad_id, precision
        )
        for depth in depths:
            by_ids = dict(zip(unique, computed[depth], strict=True))
            written = set()
            for i in missing:
                if found[depth][i] is None:
                    found[depth][i] = by_ids[tuple(sequences[i])]
                    self.tally.computed += 1
                    if keys[depth][i] not in written:  # a repeated sequence: one file
                        self._write(keys[depth][i], found[depth][i])
                        written.add(keys[depth][i])
        self.evict()
        return found

    def states(
        self,
        language_model: LanguageModel,
        sequences: list[list[int]],
        depth: int,
        pad_id: int,
        precision: str,
    ) -> list[torch.Tensor]:
        """The states of ``sequences`` after the bottom ``depth`` blocks."""
        return self.fill(language_model, sequences, [depth], pad_id, precision)[depth]

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.safetensors"

    def _read(self, key: str, length: int) -> torch.Tensor | None:
        """The entry of ``key`` if it holds states of ``length`` positions (a damaged or
        foreign file is a miss, and is overwritten), marked as just used."""
        if key in self._held:
            return self._held[key]
        if self.folder is None:
            return None
        path = self._path(key)
        try:
            states = load_file(path)["states"]
            os.utime(path)
        except (OSError, SafetensorError, KeyError):
            return None
        if states.dim() != 2 or states.shape[0] != length:
            return None
        if self.keep:
            self._held[key] = states
        return states

    def _write(self, key: str, states: torch.Tensor) -> None:
        if self.keep:
            self._held[key] = states
        if self.folder is None:
            return
        try:
            with atomic_path(self._path(key)) as tmp:
                save_file({"states": states.cpu().contiguous()}, tmp, metadata={"format": FORMAT})
        except OSError as exc:
            raise GptclfError(f"{self.folder}: cannot write the prefix store ({exc})") from exc

    def evict(self) -> None:
        """Remove the least recently used entries until the store is within its bound."""
        if self.bound is None:
            return
        entries = sorted(store_entries(self.folder), key=lambda e: e[1])
        total = sum(size for _, _, size in entries)
        for path, _, size in entries:
            if total <= self.bound:
                return
            path.unlink(missing_ok=True)
            total -= size


def store_entries(folder: Path | None) -> list[tuple[Path, float, int]]:
    """Every entry file of the store in ``folder``: path, last use, size in bytes."""
    if folder is None or not folder.is_dir():
        return []
    out = []
    for sub in os.scandir(folder):
        if not sub.is_dir():
            continue
        for entry in os.scandir(sub.path):
            if entry.name.endswith(".safetensors"):
                try:
                    info = entry.stat()
                except FileNotFoundError:  # removed by another process meanwhile
                    continue
                out.append((Path(entry.path), info.st_mtime, info.st_size))
    return out


def _entry_key(fingerprint: str, ids: list[int]) -> str:
    digest = hashlib.sha256(fingerprint.encode())
    digest.update(torch.tensor(ids, dtype=torch.int64).numpy().data)
    return digest.hexdigest()


def store_info(folder: Path) -> dict:
    """What ``gptclf cache info`` shows: the folder, its entries and bytes, the bound, and when
    the least and most recently used entry was last used (Unix time; None when empty)."""
    entries = store_entries(folder)
    used = [when for _, when, _ in entries]
    return {
        "folder": str(folder),
        "entries": len(entries),
        "bytes": sum(size for _, _, size in entries),
        "bound_bytes": store_bound(),
        "least_recent_use": min(used, default=None),
        "most_recent_use": max(used, default=None),
    }


def clear_store(folder: Path) -> tuple[int, int]:
    """Remove every entry (and the empty folders left); how many entries and bytes went."""
    entries = store_entries(folder)
    for path, _, _ in entries:
        path.unlink(missing_ok=True)
    for sub in folder.iterdir() if folder.is_dir() else ():
        if sub.is_dir() and not any(sub.iterdir()):
            sub.rmdir()
    return len(entries), sum(size for _, _, size in entries)
