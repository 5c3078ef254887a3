"""The default training recipes: one place for `make train`, `make pretrain` and `make serve`'s first start.

    python -m training.recipes offline             # fine-tuning flags (the Makefile reads them)
    python -m training.recipes offline --pretrain  # flags of its pretraining stage ('' if none)
    python -m training.recipes offline --pending-pretrain  # the same, '' once DAPT_DIR holds the model

Every recipe is fixed in epochs or steps, so one clone gives the same model on a slow or a fast
machine; its wall-clock budget is only a guard. RESULTS.md has the measurements behind each.
- `offline`: `make train` without the hub, the best model measured on the iXBRL corpus: one
  all-tags model (the debt view read from it per request), fine-tuned from the encoder adapted to
  filing text by `make pretrain`.
- `serve`: `make serve`'s first start without the hub, sized for a fresh 2-core clone to be ready
  within 20 minutes: the debt scope (the seed's 4 tags), 3 epochs, the test split scored on the
  sentences holding a debt tag only.
- `hub`: the product default, FiNER-139 + DistilBERT; `hub-serve`, its first start: the debt
  scope for a fixed 1,500 steps (minutes on a GPU, under an hour on a laptop CPU).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

DAPT_DIR = "runs/dapt"


@dataclass(frozen=True)
class Recipe:
    train: list[str]
    pretrain: list[str] = field(default_factory=list)  # run first (into DAPT_DIR) when not empty


RECIPES = {
    "hub": Recipe(["--model", "distilbert-base-cased", "--scope", "all", "--learning_rate", "5e-5", "--epochs", "3",
                   "--report_scope", "debt"]),
    "hub-serve": Recipe(["--model", "distilbert-base-cased", "--scope", "debt", "--learning_rate", "5e-5",
                         "--epochs", "1", "--max_steps", "1500", "--negative_ratio", "1", "--score_test", "filtered",
                         "--time_budget_minutes", "60"]),
    "offline": Recipe(
        ["--model", f"{DAPT_DIR}/model", "--scope", "all", "--learning_rate", "2e-4", "--epochs", "5",
         "--negative_ratio", "0.5", "--numeric_o_weight", "0.3", "--report_scope", "debt",
         "--early_stopping_patience", "4", "--evals_per_epoch", "2", "--eval_batch_size", "64",
         "--time_budget_minutes", "180"],
        pretrain=["--model", "offline-minilm", "--output_dir", DAPT_DIR, "--max_steps", "600",
                  "--time_budget_minutes", "120"]),
    "serve": Recipe(
        ["--model", "offline-minilm", "--scope", "debt", "--learning_rate", "2e-4", "--epochs", "3",
         "--negative_ratio", "4", "--numeric_o_weight", "0.3", "--early_stopping_patience", "4",
         "--evals_per_epoch", "2", "--score_test", "filtered", "--time_budget_minutes", "25"]),
}


def flags(name: str, stage: str = "train", **overrides: str) -> list[str]:
    """The recipe's flags of one stage, with `overrides` (e.g. epochs="1") replacing or adding values."""
    out = list(getattr(RECIPES[name], stage))
    for key, value in overrides.items():
        flag = f"--{key}"
        if flag in out:
            out[out.index(flag) + 1] = value
        else:
            out += [flag, value]
    return out


def pending_pretrain(name: str) -> list[str]:
    """The pretraining flags if the recipe has that stage and its model is not there yet."""
    done = (Path(DAPT_DIR) / "model" / "config.json").is_file()
    return [] if done else flags(name, "pretrain")


if __name__ == "__main__":
    options = {"--pretrain", "--pending-pretrain"}
    args = sys.argv[1:]
    names = [a for a in args if a not in options]
    if len(names) != 1 or names[0] not in RECIPES or len(set(args) & options) > 1:
        sys.exit(f"usage: python -m training.recipes {{{','.join(RECIPES)}}} [--pretrain | --pending-pretrain]")
    if "--pending-pretrain" in args:
        print(" ".join(pending_pretrain(names[0])))
    else:
        print(" ".join(flags(names[0], "pretrain" if "--pretrain" in args else "train")))
