"""The frozen-prefix store: each sequence computed once, several depths in one pass, entries on
disk read by a later store (and by another process at the same time), keyed by the prefix's own
weights, damaged entries computed again, and the least recently used removed beyond the bound."""

import multiprocessing
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from gptclf import store as prefix_store
from gptclf.classifier import SequenceClassifier
from gptclf.inference import states_at_depths
from gptclf.models import GPTConfig, GPTModel
from gptclf.store import PrefixStore, prefix_fingerprints, store_entries

PAD = 0


def tiny_model(seed: int = 0) -> GPTModel:
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=40, context_length=32, emb_dim=16, n_heads=2, n_layers=3)
    return SequenceClassifier(GPTModel(cfg), n_classes=3).eval().language_model


def sequences(n: int = 11, seed: int = 0) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 20, (n,), generator=generator).tolist()
    return [torch.randint(1, 40, (k,), generator=generator).tolist() for k in lengths]


def computed(model, ids, depth, precision="fp32") -> list[torch.Tensor]:
    return states_at_depths(model, ids, [depth], PAD, precision)[depth]


def assert_same_states(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert got.dtype == want.dtype and torch.equal(got, want)


@pytest.fixture
def passes(monkeypatch) -> list[tuple[int, list[int]]]:
    """(how many sequences, at which depths) of every pass the store computes."""
    calls = []
    compute = prefix_store.states_at_depths

    def counted(model, ids, depths, *args, **kwargs):
        depths = list(depths)
        calls.append((len(ids), sorted(depths)))
        return compute(model, ids, depths, *args, **kwargs)

    monkeypatch.setattr(prefix_store, "states_at_depths", counted)
    return calls


@pytest.mark.parametrize("on_disk", [False, True], ids=["memory", "disk"])
def test_the_store_computes_each_sequence_once_and_gives_its_states(passes, tmp_path, on_disk):
    model, ids = tiny_model(), sequences(seed=3)
    store = PrefixStore(tmp_path if on_disk else None)
    first = store.states(model, [*ids, ids[0]], 2, PAD, "fp32")  # a repeated sequence, once
    again = store.states(model, ids[::-1], 2, PAD, "fp32")
    assert passes == [(len(ids), [2])]
    assert_same_states(first, [*computed(model, ids, 2), first[0]])
    assert_same_states(again, first[: len(ids)][::-1])

    del passes[:]
    store.states(model, [*ids, [5, 6, 7]], 2, PAD, "fp32")
    assert passes == [(1, [2])]  # only the sequence not held yet


def test_the_store_fills_several_depths_in_one_pass_through_the_blocks(passes):
    model, ids, store = tiny_model(), sequences(seed=4), PrefixStore()
    runs = [0] * len(model.trf_blocks)
    for index, block in enumerate(model.trf_blocks):
        block.register_forward_hook(lambda *_, i=index: runs.__setitem__(i, runs[i] + 1))
    store.fill(model, ids, [1, 3], PAD, "fp32")  # 11 sequences: one batch of 32
    assert runs == [1, 1, 1] and passes == [(len(ids), [1, 3])]
    held = {depth: store.states(model, ids, depth, PAD, "fp32") for depth in (1, 3)}
    assert runs == [1, 1, 1] and len(passes) == 1  # read, not computed again
    for depth, states in held.items():
        assert_same_states(states, computed(model, ids, depth))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_later_store_on_the_same_folder_reads_the_states_instead_of_computing_them(
    passes, tmp_path, precision
):
    model, ids = tiny_model(), sequences(seed=5)
    written = PrefixStore(tmp_path, keep=False).states(model, ids, 2, PAD, precision)
    assert len(store_entries(tmp_path)) == len(ids)
    later = PrefixStore(tmp_path, keep=False)
    read = later.states(tiny_model(), ids, 2, PAD, precision)  # the same weights, built anew
    assert passes == [(len(ids), [2])]
    assert (later.tally.read, later.tally.computed) == (len(ids), 0)
    assert_same_states(read, written)
    assert_same_states(read, computed(model, ids, 2, precision))


def test_models_with_equal_tensors_but_other_architectures_have_other_keys():
    model = tiny_model()
    other_cfg = replace(model.cfg, layer_norm_eps=1e-3)
    other = SequenceClassifier(GPTModel(other_cfg), n_classes=3).language_model
    other.load_state_dict(model.state_dict())
    assert prefix_fingerprints(model, [2], "fp32") != prefix_fingerprints(other, [2], "fp32")


def test_the_key_is_the_prefixs_own_weights_and_precision(tmp_path, passes):
    model, ids = tiny_model(), sequences(seed=6)
    PrefixStore(tmp_path).states(model, ids, 2, PAD, "fp32")
    with torch.no_grad():
        model.trf_blocks[2].att.W_query.weight.add_(1.0)  # above the prefix: same states
    PrefixStore(tmp_path).states(model, ids, 2, PAD, "fp32")
    assert len(passes) == 1
    PrefixStore(tmp_path).states(model, ids, 2, PAD, "bf16")
    with torch.no_grad():
        model.trf_blocks[1].ff.layers[0].weight.mul_(2.0)  # inside the prefix: new states
    states = PrefixStore(tmp_path).states(model, ids, 2, PAD, "fp32")
    assert len(passes) == 3
    assert_same_states(states, computed(model, ids, 2))
    prints = prefix_fingerprints(model, [1, 2], "fp32")
    assert prints[1] != prints[2] != prefix_fingerprints(model, [2], "bf16")[2]


def test_a_damaged_entry_is_computed_again_and_replaced(tmp_path, passes):
    model, ids = tiny_model(), sequences(seed=7)
    PrefixStore(tmp_path).states(model, ids, 2, PAD, "fp32")
    paths = sorted(path for path, _, _ in store_entries(tmp_path))
    paths[0].write_bytes(paths[0].read_bytes()[:40])  # cut short
    paths[1].write_bytes(b"\0" * 64)  # not safetensors at all
    store = PrefixStore(tmp_path)
    states = store.states(model, ids, 2, PAD, "fp32")
    assert passes[-1] == (2, [2]) and store.tally.computed == 2
    for got, want in zip(states, computed(model, ids, 2), strict=True):  # batched otherwise
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert_same_states(PrefixStore(tmp_path).states(model, ids, 2, PAD, "fp32"), states)
    assert len(passes) == 2


def test_the_least_recently_used_entries_go_when_the_store_outgrows_its_bound(tmp_path):
    model, ids = tiny_model(), sequences(n=6, seed=8)
    PrefixStore(tmp_path).states(model, ids, 2, PAD, "fp32")
    sizes = {path: size for path, _, size in store_entries(tmp_path)}
    by_age = sorted(sizes)  # made the age order, oldest first
    for age, path in enumerate(by_age):
        os.utime(path, (1_000_000 + age, 1_000_000 + age))
    PrefixStore(tmp_path).states(model, [ids[0]], 2, PAD, "fp32")  # now the newest
    read = next(path for path, used, _ in store_entries(tmp_path) if used > 2_000_000)
    oldest = [path for path in by_age if path != read][:2]
    bound = sum(sizes.values()) - sizes[oldest[0]] - sizes[oldest[1]] // 2
    PrefixStore(tmp_path, bound=bound).evict()
    left = {path: size for path, _, size in store_entries(tmp_path)}
    assert set(sizes) - set(left) == set(oldest)
    assert sum(left.values()) <= bound


def _fill_in_child(folder: str, seed: int, queue) -> None:
    model, ids = tiny_model(), sequences(n=40, seed=9)
    states = PrefixStore(Path(folder)).states(model, ids[seed:] + ids[:seed], 2, PAD, "fp32")
    queue.put([s.tolist() for s in states[-seed:] + states[:-seed]])


def test_two_processes_filling_one_folder_at_once_both_get_whole_states(tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    children = [
        context.Process(target=_fill_in_child, args=(str(tmp_path), seed, queue)) for seed in (1, 2)
    ]
    for child in children:
        child.start()
    results = [queue.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    expected = computed(tiny_model(), sequences(n=40, seed=9), 2)
    for result in results:  # each child batched its own order: the last bits may differ
        for got, want in zip(result, expected, strict=True):
            torch.testing.assert_close(torch.tensor(got), want, rtol=1e-5, atol=1e-6)
    assert len(store_entries(tmp_path)) == 40
    assert not list(tmp_path.rglob("*.tmp"))
    read = PrefixStore(tmp_path).states(tiny_model(), sequences(n=40, seed=9), 2, PAD, "fp32")
    for got, want in zip(read, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
