"""``gptclf train`` as a function: open the run folder, prepare, run the loop, measure the
validation and test splits once, and write the trained model, its metrics and plots."""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from gptclf.data.batching import POOL_BATCHES, Collator
from gptclf.data.dataset import DataSource
from gptclf.data.summary import format_summary
from gptclf.decision import (
    Decision,
    at_temperature_bound,
    calibration_metrics,
    choose_threshold,
    choose_thresholds,
    fit_temperature,
    with_temperature,
)
from gptclf.distributed import LOCAL, DistributedContext
from gptclf.ensemble import Ensemble, choose_weight
from gptclf.errors import GptclfError
from gptclf.evaluate import Evaluation
from gptclf.inference import class_probabilities
from gptclf.metrics import compute_metrics, format_metrics, write_metrics
from gptclf.models import family_of
from gptclf.options import as_plain
from gptclf.plots import plot_confusion_matrix, plot_training_curves
from gptclf.recipe import TrainConfig, write_options
from gptclf.report import write_report
from gptclf.run import RunConfig, RunDir, save_run_model
from gptclf.run.record import read_split
from gptclf.store import PrefixStore
from gptclf.tokenizers import HFTokenizer
from gptclf.trainable import count_parameters, trainable_parameters
from gptclf.training import checkpoint
from gptclf.training.batches import BookBatches, BucketBatches
from gptclf.training.book import BookTrainer
from gptclf.training.log import Logger
from gptclf.training.prepare import Prepared, prepare
from gptclf.training.schedule import balanced_class_weights, decay_groups, lr_factor
from gptclf.training.step import TrainingStep
from gptclf.training.trackers import Tracker, reporting
from gptclf.training.trainer import Trainer


@dataclass(frozen=True)
class Mechanics:
    """How training arranges its arithmetic where that leaves what it learns unchanged in
    meaning; the defaults are the fastest measured, and ``benchmarks/ablation.py`` turns each off
    to measure what it gains."""

    bucketing: bool = True  # batches of similar lengths (False: random batches)
    fused_adamw: bool = True  # AdamW's fused step (False: PyTorch's default step)
    tuned_kernel: bool = True  # the loop's attention kernels measured fastest (models/attention.py)
    read_positions_only: bool = True  # the top block computes only the positions read


def train(
    config: TrainConfig,
    source: DataSource,
    out: str | Path,
    *,
    resume: bool = False,
    quiet: bool = False,
    dist: DistributedContext = LOCAL,
    mechanics: Mechanics = Mechanics(),
    store: PrefixStore | None = None,
) -> dict:
    """Train, evaluate on the test split once, and write the run folder ``out``; returns what
    metrics.json holds. With several ranks (``dist``), every rank trains on its share of each
    global batch and returns the same metrics; only the main rank writes files and prints.
    Frozen-prefix states come from ``store``, else (unless ``config.store`` is off) from
    gptclf's on-disk store. With ``config.report_to``, the main rank also reports the run to
    TensorBoard or MLflow (a missing package is an error before anything is done)."""
    with reporting(config.report_to if dist.is_main else None, Path(out)) as tracker:
        return _train(config, source, out, resume, quiet, dist, mechanics, store, tracker)


def _train(
    config: TrainConfig,
    source: DataSource,
    out: str | Path,
    resume: bool,
    quiet: bool,
    dist: DistributedContext,
    mechanics: Mechanics,
    store: PrefixStore | None,
    tracker: Tracker | None,
) -> dict:
    if config.precision == "int8" and (config.full or config.init == "random"):
        raise GptclfError(
            "--precision int8 keeps no float copy of the frozen weights to write a standalone "
            "model (--full, --init random): train it in bf16 or fp32"
        )
    run_dir = RunDir(Path(out))
    dist.on_main(lambda: _open(run_dir, config, source, resume))
    began = time.perf_counter()
    if store is None and config.store:
        store = PrefixStore.on_disk(keep=False)
    prepared = prepare(config, source, run_dir, dist, store)
    prepare_seconds = time.perf_counter() - began
    blends = _blends(config, prepared)
    _check_decision(config, prepared)
    baseline = _baseline_figures(config, prepared)
    quiet = quiet or not dist.is_main
    checkpoints = run_dir.checkpoint if dist.is_main else None
    trainer = build_trainer(config, prepared, checkpoints, quiet, dist, mechanics)
    if resume:
        checkpoint.restore(trainer, dist.on_main(lambda: checkpoint.read(run_dir.checkpoint)))
    if tracker is not None:  # once the data and options have passed their checks
        tracker.start({**as_plain(config), **as_plain(source)})  # run.yaml's values
    logger = Logger(run_dir.metrics_log if dist.is_main else None, quiet, trainer.state, tracker)
    parameters = count_parameters(prepared.classifier)
    logger.say(format_summary(prepared.summaries))
    logger.say(
        f"trainable parameters: {parameters[0]:,} of {parameters[1]:,} "
        f"({100 * parameters[0] / parameters[1]:.2f}%)"
    )
    trainer.run(logger)
    multi_label = prepared.splits.labels.multi_label
    probabilities = {
        name: class_probabilities(
            trainer.step.logits(data, prepared.pad_id, prepared.pad_to), multi_label
        )
        for name, data in prepared.datasets.items()
        if name in ("validation", "test")
    }
    ensemble = _fitted_ensemble(config, prepared, probabilities) if blends else None
    blended = _blended(prepared, probabilities, ensemble)
    decision, chosen = _fitted_decision(config, prepared, blended)
    results = _run_figures(trainer, prepared, parameters, prepare_seconds)
    results |= _split_metrics(prepared, probabilities, blended, decision)
    if ensemble is not None:
        c = ensemble.baseline.named_steps["logreg"].C
        results["ensemble"] = {"weight": ensemble.weight, "baseline_C": c, **results["ensemble"]}
    if chosen is not None:
        results["decision"] = decision.to_json() | {"on_validation": chosen}
    if baseline is not None:
        results["baseline"] = baseline
    if decision != Decision():
        logger.say(_decision_note(decision, chosen))
    if dist.is_main:
        _write_run_folder(trainer, prepared, config, run_dir, logger, results, ensemble, decision)
        test = _test_evaluation(prepared, run_dir, blended, decision, results)
        logger.say(f"report: {write_report(run_dir, test)}")
        if tracker is not None:
            plots = [*run_dir.curves.values(), run_dir.confusion_matrix]
            logger.say(tracker.finish(results, [*plots, run_dir.report]))
    return results


def _open(run_dir: RunDir, config: TrainConfig, source: DataSource, resume: bool) -> None:
    """Create the run folder with its options, or check that it holds a run to resume."""
    run_dir.create(resume)
    if not resume:
        write_options(run_dir.options, config, source)


def build_trainer(
    config: TrainConfig,
    prepared: Prepared,
    checkpoints: Path | None = None,
    quiet: bool = False,
    dist: DistributedContext = LOCAL,
    mechanics: Mechanics = Mechanics(),
) -> Trainer:
    """The loop of ``config`` on ``prepared``: the book's or gptclf's, with its batches,
    optimizer and schedule; it checkpoints into ``checkpoints`` after every epoch."""
    train_data = prepared.datasets["train"]
    collate = Collator(prepared.pad_id, prepared.pad_to)
    if config.book_loop:
        batches = BookBatches(train_data, collate, config.batch_size, config.seed, config.drop_last)
    else:
        pools = POOL_BATCHES if mechanics.bucketing else 1
        batches = BucketBatches(
            train_data, collate, config.batch_size, config.seed, config.drop_last, pools
        )
    prepared.classifier.top_block_reads_all = not mechanics.read_positions_only
    trainable = trainable_parameters(prepared.classifier)
    optimizer = torch.optim.AdamW(
        decay_groups(trainable, config.weight_decay, config.decay),
        lr=config.lr,
        fused=True if mechanics.fused_adamw else None,
    )
    total_steps = config.epochs * math.ceil(batches.per_epoch / config.grad_accumulation)
    schedule = lr_factor(config.schedule, config.warmup, total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    n_classes = len(prepared.splits.labels)
    balanced = config.class_weights == "balanced"
    step = TrainingStep(
        prepared.classifier,
        optimizer,
        scheduler,
        precision=prepared.precision,
        start_block=prepared.start_block,
        class_weights=(
            balanced_class_weights(train_data.example_labels, n_classes) if balanced else None
        ),
        label_smoothing=config.label_smoothing,
        max_grad_norm=config.max_grad_norm,
        grad_accumulation=config.grad_accumulation,
        chunks=config.chunks,
        tuned_kernel=mechanics.tuned_kernel,
        dist=dist,
    )
    trainer_type = BookTrainer if config.book_loop else Trainer
    validation = prepared.datasets.get("validation")
    return trainer_type(config, step, batches, validation, trainable, checkpoints, quiet)


def _blends(config: TrainConfig, prepared: Prepared) -> bool:
    """Whether the run blends with the baseline: where asked to (an error if neither a
    validation split nor ``--ensemble-weight`` can weigh the blend, or for multi-label data or
    pairs of texts), or by default where they can."""
    splits = prepared.splits
    if config.ensemble == "baseline":
        splits.labels.require_single("--ensemble baseline")
        splits.require_single_texts("--ensemble baseline")
    weighed = "validation" in prepared.datasets or config.ensemble_weight is not None
    if config.ensemble == "baseline" and not weighed:
        raise GptclfError(
            "--ensemble baseline chooses its weight on the validation split: "
            "give one, or --ensemble-weight"
        )
    one_text_one_label = not splits.labels.multi_label and not splits.has_pairs
    auto = config.ensemble == "auto" and weighed and one_text_one_label
    return config.ensemble == "baseline" or auto


def _baseline_figures(config: TrainConfig, prepared: Prepared) -> dict | None:
    """With ``--compare-baseline``: the TF-IDF baseline fitted on the training split and its
    validation and test metrics (an error, before training, for data it cannot fit)."""
    if not config.compare_baseline:
        return None
    from gptclf import baseline

    splits = prepared.splits
    model, selection = baseline.fit_baseline(splits, config.seed)
    measured = {
        name: baseline.baseline_metrics(
            model, splits.parts[name].texts, _truth(prepared, name), splits.labels.names
        )
        for name in ("validation", "test")
        if name in splits.parts
    }
    return {"model": baseline.DESCRIPTION, "selection": selection, **measured}


def _fitted_ensemble(
    config: TrainConfig, prepared: Prepared, probabilities: dict[str, np.ndarray]
) -> Ensemble:
    """The baseline fitted on the training split, blended with the weight given or the one
    that does best on the validation split."""
    splits = prepared.splits
    train = splits.parts["train"]
    ensemble = Ensemble.fit(
        train.texts, list(prepared.datasets["train"].labels), len(splits.labels), config.seed
    )
    if config.ensemble_weight is not None:
        ensemble.weight = config.ensemble_weight
    else:
        validation = splits.parts["validation"]
        baseline = ensemble.baseline_probabilities(validation.texts)
        labels = list(prepared.datasets["validation"].labels)
        ensemble.weight = choose_weight(labels, probabilities["validation"], baseline)
    return ensemble


def _blended(
    prepared: Prepared, probabilities: dict[str, np.ndarray], ensemble: Ensemble | None
) -> dict[str, np.ndarray]:
    """Each split's probabilities blended with the baseline's, where the run blends."""
    if ensemble is None:
        return probabilities
    parts = prepared.splits.parts
    return {name: ensemble.combine(parts[name].texts, p) for name, p in probabilities.items()}


def _check_decision(config: TrainConfig, prepared: Prepared) -> None:
    """Before training: --decide and --calibrate choose on a validation split, and a
    threshold needs two classes (or, one per label, multi-label data)."""
    asked = [
        f
        for f, on in (("--decide", config.decide != "argmax"), ("--calibrate", config.calibrate))
        if on
    ]
    if asked and "validation" not in prepared.datasets:
        raise GptclfError(f"{asked[0]} chooses on the validation split: give one")
    labels = prepared.splits.labels
    if config.decide != "argmax" and len(labels) != 2 and not labels.multi_label:
        raise GptclfError(
            f"--decide {config.decide} needs two classes or multi-label data, not {len(labels)} "
            "classes"
        )


def _fitted_decision(
    config: TrainConfig, prepared: Prepared, probabilities: dict[str, np.ndarray]
) -> tuple[Decision, dict | None]:
    """The temperature (``--calibrate``) and then the threshold (``--decide``) chosen on the
    validation split, with the precision and recall that threshold gives there (None: no
    threshold)."""
    if config.calibrate is None and config.decide == "argmax":
        return Decision(), None
    truth, validation = _truth(prepared, "validation"), probabilities["validation"]
    temperature = fit_temperature(truth, validation) if config.calibrate else 1.0
    if config.decide == "argmax":
        return Decision(temperature), None
    multi_label = prepared.splits.labels.multi_label
    calibrated = with_temperature(validation, temperature, multi_label)
    if multi_label:
        chosen = choose_thresholds(config.decide, np.asarray(truth), calibrated)
        return Decision(temperature, chosen["thresholds"], config.decide), chosen
    chosen = choose_threshold(config.decide, truth, calibrated)
    return Decision(temperature, chosen["threshold"], config.decide), chosen


def _truth(prepared: Prepared, split: str) -> list[int] | np.ndarray:
    """The class ids of a split's texts, or their multi-label 0/1 rows."""
    labels = prepared.datasets[split].labels
    return labels if isinstance(labels, np.ndarray) else list(labels)


def _run_figures(
    trainer: Trainer, prepared: Prepared, parameters: tuple[int, int], prepare_seconds: float
) -> dict:
    """metrics.json's figures of the run itself."""
    return {
        "best_epoch": trainer.state.best_epoch,
        "epochs_run": trainer.state.epochs_done,
        "prepare_seconds": round(prepare_seconds, 2),  # load, tokenize, run the frozen prefix
        "frozen_prefix_blocks": prepared.start_block,
        "prefix_states": {"read": prepared.prefix.read, "computed": prepared.prefix.computed},
        "train_seconds": round(trainer.state.train_seconds, 2),
        "trainable_parameters": parameters[0],
        "total_parameters": parameters[1],
        "data": [asdict(summary) for summary in prepared.summaries],
    }


def _split_metrics(
    prepared: Prepared,
    probabilities: dict[str, np.ndarray],
    blended: dict[str, np.ndarray],
    decision: Decision,
) -> dict:
    """metrics.json's validation and test metrics, as the run decides (blended, calibrated,
    thresholded); beside them the model's own where it blends, and the calibration before the
    temperature where it calibrates."""
    names, multi_label = prepared.splits.labels.names, prepared.splits.labels.multi_label
    results, alone, uncalibrated = {}, {}, {}
    for name, final in blended.items():
        truth = _truth(prepared, name)
        calibrated = decision.calibrated(final, multi_label)
        results[name] = compute_metrics(truth, calibrated, names, decision.threshold)
        if final is not probabilities[name]:
            own = compute_metrics(truth, probabilities[name], names)
            alone[name] = {k: own[k] for k in ("accuracy", "n_errors", "macro_f1")}
        if calibrated is not final:
            uncalibrated[name] = calibration_metrics(truth, final)
    if alone:
        results["ensemble"] = {"model_alone": alone}
    if uncalibrated:
        results["calibration"] = {"temperature": decision.temperature, "uncalibrated": uncalibrated}
    return results


def _write_run_folder(
    trainer: Trainer,
    prepared: Prepared,
    config: TrainConfig,
    run_dir: RunDir,
    logger: Logger,
    results: dict,
    ensemble: Ensemble | None,
    decision: Decision,
) -> None:
    """The test metrics shown, plots, the trained model (blended baseline, decision) and
    metrics.json; the checkpoint goes."""
    if "test" in results:
        baseline = results.get("baseline", {}).get("test")
        logger.say("test set:\n" + format_metrics(results["test"], baseline))
        if "confusion_matrix" in results["test"]:
            plot_confusion_matrix(results["test"], run_dir.confusion_matrix)
    plot_training_curves(trainer.state.records, run_dir.curves)
    tokenizer = prepared.pretrained.tokenizer
    run_config = run_config_of(config, prepared)
    if ensemble is not None:
        logger.say(f"blended with the TF-IDF baseline, the model's weight {ensemble.weight}")
        run_config.ensemble = ensemble.save(run_dir.baseline_arrays, run_dir.baseline_vocabulary)
    if decision != Decision():
        run_config.decision = decision.to_json()
    save_run_model(run_dir, prepared.classifier, run_config, tokenizer, list(trainer.trainable))
    finished_at = datetime.now(UTC).isoformat(timespec="seconds")
    write_metrics({**results, "finished_at": finished_at}, run_dir.metrics)
    shutil.rmtree(run_dir.checkpoint, ignore_errors=True)


def _test_evaluation(
    prepared: Prepared,
    run_dir: RunDir,
    blended: dict[str, np.ndarray],
    decision: Decision,
    results: dict,
) -> Evaluation | None:
    """The run's test split as it decides it, for its report (None: no test split); its rows
    are numbered in the run's split file, as ``gptclf report`` reads it."""
    if "test" not in blended:
        return None
    labels = prepared.splits.labels
    return Evaluation(
        path=run_dir.split_file("test"),
        data=read_split(run_dir, "test"),
        labels=labels,
        truth=_truth(prepared, "test"),
        probabilities=decision.calibrated(blended["test"], labels.multi_label),
        metrics=results["test"],
    )


def _decision_note(decision: Decision, chosen: dict | None) -> str:
    """What the run decides by, e.g. "probabilities calibrated by temperature 1.8; decides
    spam when p >= 0.0912 (validation: precision 0.9333, recall 1.0000)"."""
    parts = []
    if decision.temperature != 1.0:
        parts.append(f"probabilities calibrated by temperature {decision.temperature:.4g}")
    if at_temperature_bound(decision.temperature):
        parts[-1] += " (at its bound: the validation split has no best; it is too small or easy)"
    if chosen is not None and "per_label" in chosen:
        unmet = [i for i, c in enumerate(chosen["per_label"]) if c is None or not c["met"]]
        parts.append(
            f"a threshold per label chosen by {decision.rule} on validation"
            + (f" ({len(unmet)} label(s) out of reach or left at 0.5)" if unmet else "")
        )
    elif chosen is not None:
        unmet = "" if chosen["met"] else f"; {decision.rule} was out of reach, this came closest"
        parts.append(
            f"threshold {decision.threshold:.4g} on p(class 1) chosen by {decision.rule} "
            f"(validation: precision {chosen['precision']:.4f}, recall {chosen['recall']:.4f}"
            f"{unmet})"
        )
    return "; ".join(parts)


def run_config_of(config: TrainConfig, prepared: Prepared) -> RunConfig:
    """The saved model's config: the recipe and what preparing it settled."""
    model, tokenizer = prepared.classifier.language_model, prepared.pretrained.tokenizer
    random_base = config.init == "random"
    return RunConfig(
        base_model=config.model,
        base_sha256=None if random_base else prepared.pretrained.weights_sha256(),
        standalone=config.full or random_base,
        family=family_of(model).name,
        architecture=asdict(model.cfg),
        labels=prepared.splits.labels.to_json(),
        max_length=prepared.max_length,
        pad_to=prepared.pad_to,
        tokenizer=tokenizer.name if isinstance(tokenizer, HFTokenizer) else "gpt2",
        special_ids={
            "eos_id": tokenizer.eos_id,
            "bos_id": tokenizer.bos_id,
            "pad_id": tokenizer.pad_id,
        },
        prefix_ids=list(tokenizer.prefix_ids),
        train=as_plain(replace(config, template=prepared.template)),
    )
