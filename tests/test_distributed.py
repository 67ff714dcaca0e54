"""Data parallelism under torchrun: two CPU processes (gloo) train and predict what one process
does, only the main process writes, and the helpers that split the work by rank."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

from gptclf.cli import main
from gptclf.data.batching import Batch
from gptclf.data.readers import write_labelled
from gptclf.distributed import DistributedContext, interleave
from gptclf.predict import Classifier
from gptclf.training.step import share_of_batch

from conftest import byte_tokenizer_json, save_llama_like

WORDS = {
    "sports": ["goal", "match", "team", "coach", "league", "score"],
    "politics": ["vote", "senate", "law", "party", "election", "minister"],
    "tech": ["chip", "code", "cloud", "robot", "software", "laptop"],
}
# Uneven classes (so balanced class weights differ), and 36 training texts: with batches of 5
# one batch of each epoch has a single text, which leaves the second process without a row.
TRAIN_OPTIONS = [
    "--trainable=last-block",
    "--epochs=2",
    "--lr=2e-3",
    "--batch-size=5",
    "--grad-accumulation=2",
    "--class-weights=balanced",
    "--precision=fp32",
    "--quiet",
]


def topic_texts(counts: tuple[int, ...], seed: int) -> tuple[list[str], list[str]]:
    """Short messages whose topic is given away by their words, ``counts`` per topic."""
    generator = torch.Generator().manual_seed(seed)
    texts, labels = [], []
    for (label, words), n in zip(WORDS.items(), counts, strict=True):
        for _ in range(n):
            picks = torch.randint(0, len(words), (3,), generator=generator).tolist()
            texts.append("news: " + " ".join(words[i] for i in picks))
            labels.append(label)
    return texts, labels


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2 -m gptclf ARGS`` run to its end."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    return subprocess.run(
        [*command, "-m", "gptclf", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def data_options(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("topics")
    sizes = {"train": ((16, 12, 8), 0), "val": ((6, 4, 3), 1), "test": ((6, 4, 3), 2)}
    for name, (counts, seed) in sizes.items():
        write_labelled(folder / f"{name}.csv", *topic_texts(counts, seed))
    return [f"--{name}={folder / name}.csv" for name in sizes]


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> str:
    """A random tiny GPT-2 with GPT-2's vocabulary, without dropout."""
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_positions=32, n_embd=48, n_layer=2, n_head=4, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0
    )
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    return f"--model={folder}"


@pytest.fixture(scope="module")
def runs(data_options, base_model, tmp_path_factory) -> dict:
    """One training in one process, and the same under torchrun with two, from an empty
    working folder."""
    folder = tmp_path_factory.mktemp("runs")
    one, two, workdir = folder / "one", folder / "two", folder / "workdir"
    workdir.mkdir()
    options = ["train", *data_options, base_model, *TRAIN_OPTIONS]
    assert main([*options, f"--out={one}"]) == 0
    launched = torchrun(*options, f"--out={two}", cwd=workdir)
    assert launched.returncode == 0, launched.stderr
    return {"one": one, "two": two, "workdir": workdir, "launched": launched}


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_same_records(ours: list[dict], theirs: list[dict]) -> None:
    """The same figures, losses within float tolerance (shares are padded differently)."""
    assert len(ours) == len(theirs)
    for mine, other in zip(ours, theirs, strict=True):
        assert mine["loss"] == pytest.approx(other["loss"], rel=1e-4)
        assert {k: v for k, v in mine.items() if k != "loss"} == {
            k: v for k, v in other.items() if k != "loss"
        }


def test_two_processes_train_to_the_metrics_of_one(runs):
    one, two = (json.loads((runs[n] / "metrics.json").read_text()) for n in ("one", "two"))
    for split in ("validation", "test"):
        assert two[split]["accuracy"] == one[split]["accuracy"]
        assert two[split]["confusion_matrix"] == one[split]["confusion_matrix"]
        assert two[split]["macro_f1"] == one[split]["macro_f1"]
    assert two["frozen_prefix_blocks"] == one["frozen_prefix_blocks"] == 1
    assert_same_records(records(runs["two"]), records(runs["one"]))


def test_only_the_main_process_writes_and_prints(runs):
    def files(run_dir: Path) -> set[str]:
        return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*")}

    assert files(runs["two"]) == files(runs["one"])
    assert len(records(runs["two"])) == len(records(runs["one"]))
    assert runs["launched"].stdout.splitlines().count(str(runs["two"])) == 1
    assert not any(runs["workdir"].iterdir())


def test_the_model_trained_by_two_processes_predicts_like_the_one_of_one(runs):
    texts, _ = topic_texts((5, 5, 5), seed=3)
    one, two = (Classifier.from_pretrained(runs[n]).predict_proba(texts) for n in ("one", "two"))
    assert (two.argmax(1) == one.argmax(1)).all()
    assert two == pytest.approx(one, abs=1e-4)


def test_two_processes_resume_the_checkpoint_of_an_interrupted_run(
    runs, data_options, base_model, tmp_path, monkeypatch
):
    from gptclf.training import checkpoint

    real_save = checkpoint.save

    def save_then_crash(folder, trainer):
        real_save(folder, trainer)
        raise KeyboardInterrupt

    cut = tmp_path / "cut"
    monkeypatch.setattr(checkpoint, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        main(["train", *data_options, base_model, *TRAIN_OPTIONS, f"--out={cut}"])
    launched = torchrun("train", f"--resume={cut}", "--quiet", cwd=tmp_path)
    assert launched.returncode == 0, launched.stderr
    assert_same_records(records(cut), records(runs["one"]))
    assert not (cut / "checkpoint").exists()


def test_two_processes_train_a_multi_label_gemma3_with_lora_to_the_metrics_of_one(
    multi_label_data, tmp_path
):
    """The Llama-like blocks too (Gemma 3: windowed and global layers, norms around each
    sublayer), with LoRA adapters as the part trained, on texts with any number of labels
    (binary cross-entropy per label, its share of each batch's loss per rank)."""
    base = tmp_path / "gemma3"
    save_llama_like("gemma3", base)
    (base / "tokenizer.json").write_text(byte_tokenizer_json())
    data = [f"--{n}={multi_label_data / n}.jsonl" for n in ("train", "val", "test")]
    options = ["train", *data, f"--model={base}", *TRAIN_OPTIONS, "--trainable=lora"]
    assert main([*options, f"--out={tmp_path / 'one'}"]) == 0
    launched = torchrun(*options, f"--out={tmp_path / 'two'}", cwd=tmp_path)
    assert launched.returncode == 0, launched.stderr
    one, two = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("one", "two"))
    for split in ("validation", "test"):
        assert two[split]["multi_label"] and two[split]["per_class"] == one[split]["per_class"]
    assert_same_records(records(tmp_path / "two"), records(tmp_path / "one"))


def read_rows(path: Path) -> tuple[list[tuple[str, str]], list[float]]:
    """(text, label) of every row, and every probability written, in file order."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    numbers = [k for k in rows[0] if k == "probability" or k.startswith("p_")]
    return [(r["text"], r["label"]) for r in rows], [float(r[k]) for r in rows for k in numbers]


def test_two_processes_predict_every_row_of_a_file_in_input_order(runs, tmp_path):
    texts, _ = topic_texts((9, 7, 7), seed=4)  # 23 rows, read 5 at a time: 5 chunks gathered
    write_labelled(tmp_path / "in.csv", texts, ["?"] * len(texts))
    options = [str(runs["two"]), "--input=in.csv", "--chunk-rows=5"]
    launched = torchrun("predict", *options, "--output=two.csv", cwd=tmp_path)
    assert launched.returncode == 0, launched.stderr
    assert launched.stderr.count("23 rows classified into two.csv") == 1
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        assert main(["predict", *options, "--output=one.csv"]) == 0
    one, one_numbers = read_rows(tmp_path / "one.csv")
    two, two_numbers = read_rows(tmp_path / "two.csv")
    assert [text for text, _ in two] == texts
    assert two == one
    assert two_numbers == pytest.approx(one_numbers, abs=2e-6)  # printed with 6 decimals


def test_a_bad_row_in_the_second_process_share_stops_both_with_its_message(runs, tmp_path):
    (tmp_path / "in.csv").write_text("text\nhello\n\nbye\n")  # row 2 is the second process's
    launched = torchrun(
        "predict", str(runs["two"]), "--input=in.csv", "--output=out.csv", cwd=tmp_path
    )
    assert launched.returncode != 0
    assert launched.stderr.count("in.csv: row 2: no text to classify") == 1
    assert not any(p.name.startswith(("out.csv", ".out.csv")) for p in tmp_path.iterdir())


def test_commands_other_than_train_and_predict_refuse_several_processes(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["eval", str(tmp_path)]) == 2
    assert "runs in one process" in capsys.readouterr().err


def shares(n: int, world_size: int) -> list[list[int]]:
    return [
        list(range(n))[DistributedContext(rank, world_size).positions] for rank in range(world_size)
    ]


@settings(max_examples=100, deadline=None)
@given(n=st.integers(0, 60), world_size=st.integers(1, 8))
def test_every_position_is_in_exactly_one_rank_share_and_interleave_restores_the_order(
    n, world_size
):
    parts = shares(n, world_size)
    assert sorted(i for part in parts for i in part) == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert interleave(parts) == list(range(n))
    tensors = [torch.tensor(part, dtype=torch.float32).reshape(-1, 1) for part in parts]
    assert interleave(tensors).flatten().tolist() == list(range(n))


@settings(max_examples=100, deadline=None)
@given(
    labels=st.lists(st.integers(0, 2), min_size=1, max_size=20),
    world_size=st.integers(1, 6),
    weighted=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_rank_losses_scaled_by_their_factor_average_to_the_mean_loss_of_the_whole_batch(
    labels, world_size, weighted, seed
):
    logits = torch.randn(len(labels), 3, generator=torch.Generator().manual_seed(seed))
    targets = torch.tensor(labels)
    weights = torch.tensor([0.5, 1.0, 2.5]) if weighted else None
    batch = Batch(logits, torch.ones(len(labels), 1, dtype=torch.long), targets)
    parts, rows_seen = [], 0
    for rank in range(world_size):
        share, factor = share_of_batch(batch, rank, world_size, weights)
        loss = F.cross_entropy(share.inputs, share.labels, weight=weights, reduction="sum")
        parts.append(factor * loss.item())
        rows_seen += len(share.labels) if factor else 0
    whole = F.cross_entropy(logits, targets, weight=weights).item()
    assert sum(parts) / world_size == pytest.approx(whole, rel=1e-5, abs=1e-6)
    assert rows_seen == len(labels)


@settings(max_examples=30, deadline=None)
@given(
    rows=st.integers(1, 20),
    world_size=st.integers(1, 6),
    weighted=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_multi_label_rank_losses_scaled_by_their_factor_average_to_the_whole_batch_loss(
    rows, world_size, weighted, seed
):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, 3, generator=generator)
    targets = (torch.rand(rows, 3, generator=generator) < 0.4).float()
    pos_weight = torch.tensor([0.5, 1.0, 2.5]) if weighted else None
    batch = Batch(logits, torch.ones(rows, 1, dtype=torch.long), targets)
    parts = []
    for rank in range(world_size):
        share, factor = share_of_batch(batch, rank, world_size, pos_weight)
        loss = F.binary_cross_entropy_with_logits(
            share.inputs, share.labels, pos_weight=pos_weight, reduction="sum"
        )
        parts.append(factor * loss.item())
    whole = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight).item()
    assert sum(parts) / world_size == pytest.approx(whole, rel=1e-5, abs=1e-6)
