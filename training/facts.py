"""What a fitted model was made from, written as `training.json` beside its weights.

The model card (`export.model_card`) and the promotion check (`export.promotion`) read it at
export: the base model, the options that differ from the defaults (and the command that repeats
them), the data (sentences, companies, years, forms, the FiNER sample) and the types with few
training examples. It travels with the model folder, into MLflow and out of it.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import fields
from pathlib import Path

FILE = "training.json"
FEW_EXAMPLES = 20  # a type with fewer training entities than this is named in the card's limits


def _years(rows: list[dict]) -> list[str]:
    return sorted({str(r.get("period", ""))[:4] for r in rows if str(r.get("period", ""))[:4].isdigit()})


def data_facts(rows: list[dict]) -> dict:
    """Sentences, companies, forms and period years of one set of corpus rows (FiNER's rows carry none)."""
    companies = {r.get("cik") or r.get("company") for r in rows} - {None, ""}
    return {"sentences": len(rows), "companies": len(companies), "years": _years(rows),
            "forms": dict(Counter(r["form"] for r in rows if r.get("form")))}


def options_changed(args) -> dict:
    """The training options that differ from `TrainArgs`' defaults (paths and bookkeeping left out)."""
    skip = {"output_dir", "resume", "tracking_uri", "artifact_root", "run_name"}
    defaults = type(args)()
    return {f.name: getattr(args, f.name) for f in fields(args)
            if f.name not in skip and getattr(args, f.name) != getattr(defaults, f.name)}


def command(args) -> str:
    """`python -m evaluation.run` with the options that made this model."""
    parts = [part for name, value in options_changed(args).items() for part in (f"--{name}", str(value))]
    return " ".join(["python -m evaluation.run", *parts, "--output_dir", args.output_dir])


def write(model_dir: Path, args, types: list[str], splits: dict[str, list[dict]], entities: Counter, minutes: float,
          best_validation_f1: float | None, run_id: str) -> Path:
    """training.json: the facts above; `types` the scope's, `splits` the rows each part of the run used."""
    facts = {
        "base_model": args.model,
        "scope": args.scope,
        "options": options_changed(args),
        "command": command(args),
        "data": {"source": args.data, "finer_sample": args.finer_sample,
                 **{name: data_facts(rows) for name, rows in splits.items()}},
        "train_entities": dict(entities.most_common()),
        "few_examples": {t: entities.get(t, 0) for t in types if entities.get(t, 0) < FEW_EXAMPLES},
        "train_minutes": round(minutes, 1),
        "best_validation_f1": best_validation_f1,
        "mlflow_run_id": run_id,
    }
    path = Path(model_dir) / FILE
    path.write_text(json.dumps(facts, indent=1) + "\n")
    return path


def read(model_dir: Path) -> dict:
    """training.json of a model folder, or {} for a model trained before it existed (or elsewhere)."""
    path = Path(model_dir) / FILE
    return json.loads(path.read_text()) if path.is_file() else {}
