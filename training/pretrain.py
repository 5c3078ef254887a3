"""Domain-adaptive pretraining: continue masked-LM training of the encoder on filing text.

    python -m training.pretrain --data .cache/corpus/ixbrl --output_dir runs/dapt --max_steps 3000
    python -m training.train ... --model runs/dapt/model          # fine-tune the adapted encoder

What SEC-BERT does at scale (BERT pretrained on 260k 10-Ks), on ours: the narrative sentences of
the corpus's *training* companies (no labels needed; validation and test companies stay unseen, so
scores on them still measure filers the model never read) are packed into blocks of
`max_length` word pieces and 15% of the pieces are masked. Words are split as FiNER splits them,
so the encoder adapts to the word pieces it will see when tagging. Its own MLflow run (experiment
`finer-dapt`) and resumable checkpoints (`--resume`); the result is a plain encoder folder.
"""
from __future__ import annotations

import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from filings.sources import DataError, LoadReport, load_splits, resolve_source
from training.models import resolve_model

EXPERIMENT = "finer-dapt"


@dataclass
class PretrainArgs:
    data: str = field(default=".cache/corpus/ixbrl", metadata={"help": "FiNER-format folder whose 'train' split gives the text (e.g. `python -m filings.corpus` output)"})
    model: str = field(default="offline-minilm", metadata={"help": "encoder to adapt: hub name, local folder or 'offline-minilm'"})
    output_dir: str = "runs/dapt"
    max_steps: int = field(default=3000, metadata={"help": "optimiser steps: the recipe is fixed in steps, so every machine trains the same model"})
    max_length: int = 128
    batch_size: int = 32
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    mlm_probability: float = 0.15
    eval_blocks: int = field(default=256, metadata={"help": "blocks of validation-company text scored for masked-LM loss"})
    save_steps: int = 500
    time_budget_minutes: float = field(default=0.0, metadata={"help": "guard only: stop after this many minutes (0: none); --resume continues"})
    resume: bool = field(default=False, metadata={"help": "continue from the newest checkpoint in output_dir (same MLflow run)"})
    seed: int = 13
    tracking_uri: str = "sqlite:///mlruns.db"
    artifact_root: str = "mlartifacts"
    run_name: str = "dapt"


def pack(tokenizer, sentences: list[list[str]], max_length: int, blocks: int) -> np.ndarray:
    """Word-piece ids of consecutive sentences, [SEP]-separated, cut into `blocks` rows of
    `max_length` ([CLS] ... [SEP]); stops reading sentences once enough are packed."""
    body = max_length - 2
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    stream: list[int] = []
    for i in range(0, len(sentences), 4096):
        enc = tokenizer(sentences[i : i + 4096], is_split_into_words=True, add_special_tokens=False)
        for ids in enc["input_ids"]:
            stream += ids + [sep]
        if len(stream) >= blocks * body:
            break
    n = min(blocks, len(stream) // body)
    if n == 0:
        raise DataError(f"the text gives no block of {max_length} word pieces; give a corpus with more sentences")
    rows = np.asarray(stream[: n * body], dtype=np.int64).reshape(n, body)
    return np.concatenate([np.full((n, 1), cls), rows, np.full((n, 1), sep)], axis=1)


def _sentences(rows: list[dict], seed: int) -> list[list[str]]:
    out = [r["tokens"] for r in rows if len(r["tokens"]) >= 3]
    random.Random(seed).shuffle(out)
    return out


def masked_only_trainer():
    """A Trainer whose loss runs the LM head on the masked positions only: the 30k-word output
    layer over every position costs a third of a MiniLM step, and 85% of it is thrown away."""
    import torch
    from transformers import Trainer

    class MaskedOnlyTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not hasattr(model, "cls"):  # not a BERT-style head: the model's own loss
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            labels = inputs.pop("labels")
            hidden = model.base_model(**inputs).last_hidden_state
            picked = labels != -100
            logits = model.cls(hidden[picked])
            loss = torch.nn.functional.cross_entropy(logits, labels[picked])
            return (loss, {"logits": logits}) if return_outputs else loss

    return MaskedOnlyTrainer


class _Blocks:
    """A list of {'input_ids'} rows the Trainer can index (no datasets round trip needed)."""

    def __init__(self, ids: np.ndarray):
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i].tolist()}


def run(a: PretrainArgs) -> int:
    import mlflow
    from transformers import (AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling,
                              TrainingArguments, set_seed)

    from training.tracking import resume_point, start_run
    from training.train import time_budget_callback

    out = Path(a.output_dir)
    checkpoint, resumed_id = resume_point(out, a.resume)
    set_seed(a.seed)
    report = LoadReport()
    splits = load_splits(resolve_source(a.data), report)
    train_text = _sentences(splits.get("train", []), a.seed)
    if not train_text:
        raise DataError(f"{a.data}: no training sentences to pretrain on (the 'train' split is empty)")
    model_path = resolve_model(a.model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForMaskedLM.from_pretrained(model_path)
    except OSError as e:
        raise DataError(f"cannot load encoder {a.model!r}: {str(e).splitlines()[0]}") from None
    blocks = pack(tokenizer, train_text, a.max_length, a.max_steps * a.batch_size)
    eval_text = _sentences(splits.get("validation", []), a.seed)
    eval_blocks = pack(tokenizer, eval_text, a.max_length, a.eval_blocks) if eval_text else None
    print(f"pretraining on {len(blocks)} blocks of {a.max_length} word pieces from {len(train_text)} "
          f"training-company sentences; {a.max_steps} steps of {a.batch_size}", file=sys.stderr)

    targs = TrainingArguments(
        output_dir=str(out / "checkpoints"), max_steps=a.max_steps, learning_rate=a.learning_rate,
        per_device_train_batch_size=a.batch_size, per_device_eval_batch_size=a.batch_size,
        warmup_ratio=a.warmup_ratio, weight_decay=a.weight_decay, save_strategy="steps",
        save_steps=a.save_steps, save_total_limit=2, eval_strategy="steps" if eval_blocks is not None else "no",
        eval_steps=a.save_steps, logging_steps=50, seed=a.seed, report_to=["mlflow"], run_name=a.run_name,
        dataloader_num_workers=0, disable_tqdm=False)
    callbacks = [time_budget_callback(a.time_budget_minutes)] if a.time_budget_minutes > 0 else []
    with start_run(a.tracking_uri, a.artifact_root, EXPERIMENT, a.run_name, run_id=resumed_id, out=out) as mlrun:
        if not resumed_id:
            mlflow.log_params({f"dapt.{k}": v for k, v in asdict(a).items() if k != "resume"})
            mlflow.log_params({"dapt.blocks": len(blocks), "dapt.sentences_available": len(train_text)})
        trainer = masked_only_trainer()(model=model, args=targs, train_dataset=_Blocks(blocks),
                                        eval_dataset=_Blocks(eval_blocks) if eval_blocks is not None else None,
                          data_collator=DataCollatorForLanguageModeling(tokenizer, mlm_probability=a.mlm_probability),
                          callbacks=callbacks)
        started = time.monotonic()
        trainer.train(resume_from_checkpoint=checkpoint)
        minutes = (time.monotonic() - started) / 60
        model_dir = out / "model"
        trainer.save_model(str(model_dir))
        tokenizer.save_pretrained(str(model_dir))
        metrics = {"pretrain_minutes": minutes, "pretrain_steps": trainer.state.global_step}
        if eval_blocks is not None:
            loss = trainer.evaluate()["eval_loss"]
            metrics.update(final_eval_loss=loss, final_perplexity=float(np.exp(loss)))
        mlflow.log_metrics(metrics)
        (model_dir / "mlflow.json").write_text(f'{{"run_id": "{mlrun.info.run_id}", "experiment": "{EXPERIMENT}"}}\n')
    print(f"adapted encoder: {model_dir} ({minutes:.1f} min, {trainer.state.global_step} steps"
          + (f", validation perplexity {metrics['final_perplexity']:.2f}" if eval_blocks is not None else "")
          + f"); fine-tune it with --model {model_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    (a,) = HfArgumentParser(PretrainArgs).parse_args_into_dataclasses(args=argv)
    try:
        return run(a)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
