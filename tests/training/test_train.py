"""Training end to end on tiny models: artifacts, resume, determinism, presets, LoRA, and the
learning rate of every step."""

import json

import pytest
import torch
from safetensors import safe_open

from gptclf.data.dataset import DataSource
from gptclf.data.readers import write_labelled
from gptclf.errors import GptclfError
from gptclf.predict import Classifier
from gptclf.recipe import recipe
from gptclf.training import train

from conftest import LLAMA_LIKE_MODELS, byte_tokenizer_json, save_llama_like

TOPICS = {
    "sports": ["goal", "match", "team", "coach", "league", "score"],
    "politics": ["vote", "senate", "law", "party", "election", "minister"],
    "tech": ["chip", "code", "cloud", "robot", "software", "laptop"],
}


def topic_texts(n_per_class: int, seed: int):
    """Short synthetic messages whose class is given away by its keywords."""
    generator = torch.Generator().manual_seed(seed)
    texts, labels = [], []
    for label, words in TOPICS.items():
        for _ in range(n_per_class):
            picks = torch.randint(0, len(words), (3,), generator=generator).tolist()
            texts.append("news: " + " ".join(words[i] for i in picks))
            labels.append(label)
    return texts, labels


@pytest.fixture(scope="module")
def topic_data(tmp_path_factory):
    """A three-class dataset as separate train/validation/test CSV files."""
    folder = tmp_path_factory.mktemp("topics")
    for name, (n, seed) in {"train": (40, 0), "validation": (10, 1), "test": (10, 2)}.items():
        write_labelled(folder / f"{name}.csv", *topic_texts(n, seed))
    return DataSource(
        train=folder / "train.csv", validation=folder / "validation.csv", test=folder / "test.csv"
    )


def tiny_config(model_folder, **overrides):
    settings = dict(model=str(model_folder), epochs=3, lr=2e-3, batch_size=8, trainable="all")
    return recipe(**{**settings, **overrides})


def run(folder, source, out, **overrides):
    return train(tiny_config(folder, **overrides), source, out, quiet=True)


def test_three_classes_are_learned_and_reported(tiny_gpt2, topic_data, tmp_path):
    _, folder = tiny_gpt2
    results = run(folder, topic_data, tmp_path / "run")
    assert results["test"]["labels"] == ["politics", "sports", "tech"]
    assert results["test"]["accuracy"] >= 0.9
    assert len(results["test"]["confusion_matrix"]) == 3
    for name in (
        "config.json",
        "classifier.safetensors",
        "metrics.json",
        "metrics.jsonl",
        "loss.png",
        "accuracy.png",
        "confusion_matrix.png",
        "split/train.csv",
    ):
        assert (tmp_path / "run" / name).is_file(), name
    assert not (tmp_path / "run" / "checkpoint").exists()


def drop_timings(results: dict) -> None:
    """Leave out what differs between equal runs: times, and where the prefix states came from."""
    for name in ("prepare_seconds", "train_seconds", "prefix_states"):
        results.pop(name)


def test_same_seed_gives_the_same_metrics_bit_for_bit(tiny_gpt2, topic_data, tmp_path):
    _, folder = tiny_gpt2
    first = run(folder, topic_data, tmp_path / "a", trainable="last-block", epochs=2)
    second = run(folder, topic_data, tmp_path / "b", trainable="last-block", epochs=2)
    for results in (first, second):
        drop_timings(results)
    assert first == second
    records = [(tmp_path / d / "metrics.jsonl").read_text() for d in ("a", "b")]
    assert records[0] == records[1]


def test_a_run_reading_the_prefix_store_has_the_metrics_of_the_run_that_filled_it(
    tiny_gpt2, topic_data, tmp_path, monkeypatch
):
    _, folder = tiny_gpt2
    monkeypatch.setenv("GPTCLF_STORE", str(tmp_path / "store"))
    filled = run(folder, topic_data, tmp_path / "a", trainable="last-block", epochs=2)
    read = run(folder, topic_data, tmp_path / "b", trainable="last-block", epochs=2)
    fresh = run(folder, topic_data, tmp_path / "c", trainable="last-block", epochs=2, store=False)
    n_texts = filled["prefix_states"]["computed"]
    assert n_texts > 0 and filled["prefix_states"]["read"] == 0
    assert read["prefix_states"] == {"read": n_texts, "computed": 0}
    assert fresh["prefix_states"] == {"read": 0, "computed": n_texts}
    for results in (filled, read, fresh):
        drop_timings(results)
    assert filled == read == fresh


def test_resumed_run_ends_with_the_metrics_of_an_uninterrupted_one(
    tiny_gpt2, topic_data, tmp_path, monkeypatch
):
    _, folder = tiny_gpt2
    settings = dict(trainable="last-blocks:2", epochs=3, schedule="cosine", warmup=0.2)
    uninterrupted = run(folder, topic_data, tmp_path / "whole", **settings)

    from gptclf.training import checkpoint

    real_save = checkpoint.save

    def save_then_crash(folder, trainer):
        real_save(folder, trainer)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        run(folder, topic_data, tmp_path / "cut", **settings)
    monkeypatch.setattr(checkpoint, "save", real_save)
    assert (tmp_path / "cut" / "checkpoint" / "state.json").is_file()
    config = tiny_config(folder, **settings)
    resumed = train(config, topic_data, tmp_path / "cut", resume=True, quiet=True)
    for results in (uninterrupted, resumed):
        drop_timings(results)
    assert resumed == uninterrupted
    assert (tmp_path / "cut" / "metrics.jsonl").read_text() == (
        tmp_path / "whole" / "metrics.jsonl"
    ).read_text()


def test_last_block_model_saves_only_the_tensors_training_changed(tiny_gpt2, topic_data, tmp_path):
    _, folder = tiny_gpt2
    run(folder, topic_data, tmp_path / "run", trainable="last-block", epochs=1)
    with safe_open(tmp_path / "run" / "classifier.safetensors", "pt") as f:
        names = set(f.keys())
    assert names and all(n.startswith(("trf_blocks.1.", "final_norm.", "out_head.")) for n in names)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert len(config["base_sha256"]) == 64 and not config["standalone"]


def test_loading_on_other_base_weights_is_a_clear_error(tiny_gpt2, topic_data, tmp_path):
    reference, folder = tiny_gpt2
    run(folder, topic_data, tmp_path / "run", trainable="head", epochs=1)
    with torch.no_grad():
        reference.transformer.wte.weight[0, 0] += 1.0
    reference.save_pretrained(folder)
    with pytest.raises(GptclfError, match=r"was trained on .* with SHA-256"):
        Classifier.from_pretrained(tmp_path / "run")


def test_full_model_loads_without_its_base(tiny_gpt2, topic_data, tmp_path):
    _, folder = tiny_gpt2
    results = run(folder, topic_data, tmp_path / "run", trainable="last-block", full=True)
    for file in folder.iterdir():
        file.unlink()
    classifier = Classifier.from_pretrained(tmp_path / "run")
    texts, labels = topic_texts(10, 2)
    predicted = [p.label for p in classifier.predict(texts)]
    accuracy = sum(p == t for p, t in zip(predicted, labels, strict=True)) / len(labels)
    assert accuracy == pytest.approx(results["test"]["accuracy"])


def test_lora_trains_adapters_and_merges_them_for_inference(tiny_llama, topic_data, tmp_path):
    _, folder = tiny_llama
    (folder / "tokenizer.json").write_text(byte_tokenizer_json())
    results = run(
        folder,
        topic_data,
        tmp_path / "run",
        trainable="lora",
        lora_rank=4,
        lora_alpha=8,
        lr=5e-3,
        epochs=2,
    )
    with safe_open(tmp_path / "run" / "classifier.safetensors", "pt") as f:
        names = set(f.keys())
    assert names and all(
        n.endswith(("lora_A", "lora_B")) or n.startswith("out_head") for n in names
    )
    classifier = Classifier.from_pretrained(tmp_path / "run")
    assert not any("LoRA" in type(m).__name__ for m in classifier.network.modules())
    texts, labels = topic_texts(10, 2)
    probabilities = classifier.predict_proba(texts)
    truth = classifier.labels.ids(labels, "test")
    accuracy = float((probabilities.argmax(1) == truth).mean())
    assert accuracy == pytest.approx(results["test"]["accuracy"])


@pytest.mark.parametrize("kind", LLAMA_LIKE_MODELS)
@pytest.mark.parametrize("trainable", ["last-block", "lora"])
def test_every_llama_like_model_trains_and_predicts_what_training_measured(
    kind, trainable, topic_data, tmp_path
):
    folder = tmp_path / kind
    save_llama_like(kind, folder)
    (folder / "tokenizer.json").write_text(byte_tokenizer_json())
    options = {"pooling": "last-token", "lr": 5e-3, "epochs": 2, "trainable": trainable}
    results = run(folder, topic_data, tmp_path / "run", **options)
    if trainable == "last-block":  # the bottom block's output came from the prefix cache
        assert results["prefix_states"]["computed"] > 0
    classifier = Classifier.from_pretrained(tmp_path / "run")
    texts, labels = topic_texts(10, 2)
    probabilities = classifier.predict_proba(texts)
    truth = classifier.labels.ids(labels, "test")
    accuracy = float((probabilities.argmax(1) == truth).mean())
    assert accuracy == pytest.approx(results["test"]["accuracy"])


def test_book_preset_logs_like_the_chapter(tiny_gpt2, topic_data, tmp_path, capsys):
    _, folder = tiny_gpt2
    config = recipe("book", model=str(folder), epochs=1, eval_every=5)
    assert (config.pooling, config.trainable, config.batch_size, config.lr) == (
        "last-position",
        "last-block",
        8,
        5e-5,
    )
    results = train(config, topic_data, tmp_path / "run")
    out = capsys.readouterr().out
    assert "Ep 1 (Step 000000): Train loss" in out and ", Val loss" in out
    assert "Training accuracy:" in out and "| Validation accuracy:" in out
    assert results["epochs_run"] == 1
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["pad_to"] == max(saved["pad_to"], 1) and saved["train"]["attend_to_padding"]


def test_existing_run_folder_is_not_overwritten(tiny_gpt2, topic_data, tmp_path):
    _, folder = tiny_gpt2
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine")
    with pytest.raises(GptclfError, match="already exists"):
        run(folder, topic_data, tmp_path / "run")


def test_early_stopping_with_keep_best_restores_the_best_validation_weights(
    tiny_gpt2, topic_data, tmp_path
):
    _, folder = tiny_gpt2
    settings = dict(epochs=12, lr=2e-2, early_stopping=2, keep="best")
    results = run(folder, topic_data, tmp_path / "run", **settings)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    validation = [r["accuracy"] for r in records if r["kind"] == "validation"]
    assert results["epochs_run"] == len(validation) < 12
    assert results["validation"]["accuracy"] == pytest.approx(max(validation))
    assert validation.index(max(validation)) + 1 == results["best_epoch"]


def test_each_optimizer_step_of_a_training_runs_at_its_scheduled_learning_rate(
    tiny_gpt2, topic_data, tmp_path, monkeypatch
):
    """120 texts in batches of 24, two per step: 3 steps an epoch (the last of one batch), 6 in
    all; cosine after 3 warm-up steps."""
    from gptclf.training.step import TrainingStep

    seen = []
    real_step = TrainingStep.optimizer_step

    def recording_step(self):
        group = self.optimizer.param_groups[0]
        seen.append((group["lr"], group["weight_decay"]))
        real_step(self)

    monkeypatch.setattr(TrainingStep, "optimizer_step", recording_step)
    _, folder = tiny_gpt2
    settings = dict(trainable="head", epochs=2, batch_size=24, grad_accumulation=2, lr=0.01)
    run(folder, topic_data, tmp_path / "run", weight_decay=0.05, warmup=0.5, **settings)
    rates = [rate for rate, _ in seen]
    assert rates == pytest.approx([0.01 / 3, 0.02 / 3, 0.01, 0.01, 0.0075, 0.0025])
    assert {decay for _, decay in seen} == {0.05}


def test_classifier_is_importable_from_the_package_root(tiny_gpt2, topic_data, tmp_path):
    import gptclf

    _, folder = tiny_gpt2
    run(folder, topic_data, tmp_path / "run", epochs=1)
    classifier = gptclf.Classifier.from_pretrained(tmp_path / "run")
    assert classifier.classify("news: goal match team") in TOPICS
    prediction = classifier.predict(["news: vote law senate"])[0]
    assert set(prediction.probabilities) == set(TOPICS)
    assert prediction.probability == max(prediction.probabilities.values())


@pytest.mark.parametrize(
    ("trainable", "concat_depths", "cached_blocks"),
    [("last-block", None, 1), ("head", (1,), 1)],  # the head alone: 2 blocks, but block 1 is read
)
def test_frozen_prefix_cache_gives_the_metrics_of_the_uncached_path(
    tiny_gpt2, topic_data, tmp_path, trainable, concat_depths, cached_blocks
):
    _, folder = tiny_gpt2
    settings = dict(trainable=trainable, epochs=2, precision="fp32", concat_depths=concat_depths)
    cached = run(folder, topic_data, tmp_path / "cached", **settings)
    uncached = run(folder, topic_data, tmp_path / "uncached", cache=False, **settings)
    assert cached["frozen_prefix_blocks"] == cached_blocks
    for split in ("validation", "test"):
        assert cached[split]["accuracy"] == uncached[split]["accuracy"]
        assert cached[split]["confusion_matrix"] == uncached[split]["confusion_matrix"]
    losses = [
        [json.loads(line)["loss"] for line in (tmp_path / d / "metrics.jsonl").open()]
        for d in ("cached", "uncached")
    ]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_bf16_training_learns_as_well_as_fp32(tiny_gpt2, topic_data, tmp_path):
    _, folder = tiny_gpt2
    fp32 = run(folder, topic_data, tmp_path / "fp32", precision="fp32")
    bf16 = run(folder, topic_data, tmp_path / "bf16", precision="bf16")
    assert bf16["test"]["accuracy"] >= fp32["test"]["accuracy"] - 1 / 30


def test_book_preset_runs_offline_on_randomly_initialised_gpt2_small(topic_data, tmp_path):
    config = recipe("book", init="random", epochs=1, eval_every=10)
    assert config.model == "gpt2-small" and not config.cache and config.precision == "fp32"
    results = train(config, topic_data, tmp_path / "run", quiet=True)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["standalone"] and saved["base_sha256"] is None
    assert saved["architecture"]["emb_dim"] == 768 and saved["architecture"]["n_layers"] == 12
    assert results["trainable_parameters"] == 7_087_872 + 2 * 768 + 768 * 3 + 3


def test_template_is_kept_with_the_model_and_applied_to_new_texts(tiny_gpt2, topic_data, tmp_path):
    _, folder = tiny_gpt2
    template = "Topic of this headline? {text}\nAnswer:"
    run(folder, topic_data, tmp_path / "run", epochs=1, template=template)
    classifier = Classifier.from_pretrained(tmp_path / "run")
    ids = classifier.token_ids(["news: goal"])[0]
    tokenizer = classifier.tokenizer
    assert tokenizer.decode(ids) == "Topic of this headline? news: goal\nAnswer:"


def test_texts_cut_to_the_longest_training_text_are_framed_as_prediction_frames_them(
    tiny_gpt2, tmp_path
):
    """With batches padded to the longest training text, a longer test text keeps the side that
    --truncate names and the template around it, in training as in prediction."""
    from gptclf.run.folder import RunDir
    from gptclf.training.prepare import prepare

    _, folder = tiny_gpt2
    texts, labels = topic_texts(6, 0)
    long_texts = [text + " and then " + " ".join(["more words"] * 6) for text in texts]
    for name, rows in {"train": texts, "validation": texts, "test": long_texts}.items():
        write_labelled(tmp_path / f"{name}.csv", rows, labels)
    files = {n: tmp_path / f"{n}.csv" for n in ("train", "validation", "test")}
    source = DataSource(**files)
    template = "Topic? {text} Answer:"
    config = tiny_config(folder, pad_to="longest", truncate="tail", template=template, epochs=1)
    train(config, source, tmp_path / "run", quiet=True)
    classifier = Classifier.from_pretrained(tmp_path / "run")
    predicted = classifier.token_ids(long_texts)
    assert classifier.tokenizer.decode(predicted[0]).endswith("more words Answer:")
    trained = prepare(config, source, RunDir(tmp_path / "again")).datasets["test"].ids
    assert [list(ids) for ids in trained] == predicted


def long_topic_data(folder):
    """The topic texts behind a long run of filler words: only their end tells the class."""
    for name, (n, seed) in {"train": (40, 0), "validation": (10, 1), "test": (10, 2)}.items():
        texts, labels = topic_texts(n, seed)
        write_labelled(folder / f"{name}.csv", ["well " * 30 + text for text in texts], labels)
    return DataSource(**{n: folder / f"{n}.csv" for n in ("train", "validation", "test")})


@pytest.mark.parametrize("how", ["mean", "max"])
def test_chunks_read_the_end_of_a_long_text_that_truncation_cuts_off(tiny_gpt2, tmp_path, how):
    _, folder = tiny_gpt2
    source = long_topic_data(tmp_path)
    settings = dict(max_length=16, ensemble="none", trainable="last-block", epochs=4)
    cut = run(folder, source, tmp_path / "cut", **settings)
    chunked = run(folder, source, tmp_path / "chunked", chunks=how, **settings)
    assert cut["test"]["accuracy"] < 0.6 and chunked["test"]["accuracy"] >= 0.9
    assert sum(map(sum, chunked["test"]["confusion_matrix"])) == 30  # texts, not chunks
    classifier = Classifier.from_pretrained(tmp_path / "chunked")
    texts, labels = topic_texts(10, 2)
    predicted = [p.label for p in classifier.predict(["well " * 30 + t for t in texts])]
    accuracy = sum(p == y for p, y in zip(predicted, labels, strict=True)) / len(labels)
    assert accuracy == chunked["test"]["accuracy"]
