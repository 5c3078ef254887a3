"""A training run end to end: fit (`training.train`), then what this stage does with the fitted model.

    python -m evaluation.run --data .cache/corpus/ixbrl --model offline-minilm --scope debt   # make train

Takes `training.train`'s flags. After the fit, inside the same MLflow run: the calibrated decision
(a minimum entity score per type, fitted on the validation sentences the run prepared, saved in
finer.json: `--calibrate`), the test split scored (`--score_test all|filtered|none`), the FiNER-era
dev part scored when `--finer_sample` gives one, and the debt checklist when the scope holds debt
tags. Everything lands in `<output_dir>/evaluation/` and in the run.
"""
from __future__ import annotations

import json
import os
import sys

from finer.labels import DEBT_TYPES
from training import train
from training.train import Fitted


def score(fitted: Fitted) -> dict:
    """Calibrate, score the test split and the FiNER-era dev part, run the checklist; the results."""
    import mlflow

    from evaluation.calibrate import calibrate
    from evaluation.evaluate import FINER_DEV, SCORES_FILE, evaluate_rows, run_checklist, scores_summary
    from training.models import torch_logits
    from finer.pipeline import Tagger, plain_tokenizer

    a, config, out = fitted.args, fitted.config, fitted.evaluation_dir
    logits, plain = torch_logits(fitted.model), plain_tokenizer(fitted.tokenizer.backend_tokenizer)
    scopes = [fitted.scope, fitted.report_scope]
    if a.calibrate:
        config.min_scores, fit = calibrate(logits, plain, fitted.validation, config, fitted.scope, a.eval_batch_size)
        print(f"calibrated minimum scores {config.min_scores}: validation micro P/R/F1 "
              f"{fit['before']} -> {fit['after']}", file=sys.stderr)
        mlflow.log_dict({"min_scores": config.min_scores, **fit}, "calibration.json")
        config.save(fitted.model_dir)
    results = evaluate_rows(logits, plain, fitted.test, config, out, scopes, batch_size=a.eval_batch_size,
                            unfiltered=a.score_test == "all") if fitted.test else {}
    if fitted.finer_dev:  # FiNER-era sentences: every score of the test split comes with this one
        results |= evaluate_rows(logits, plain, fitted.finer_dev, config, out, scopes, batch_size=a.eval_batch_size,
                                 name=FINER_DEV)
    (fitted.model_dir / SCORES_FILE).write_text(json.dumps(scores_summary(results), indent=1) + "\n")
    if set(DEBT_TYPES) & set(fitted.scope.types):
        print(run_checklist(Tagger(plain, config, logits), out))
    for summary in ("summary.md", f"{FINER_DEV}_summary.md"):
        if (out / summary).is_file():
            print((out / summary).read_text())
    if a.score_test != "all":
        print(f"test scored on {a.score_test} sentences only: `python -m evaluation.evaluate {fitted.model_dir} "
              f"--data {a.data}` scores all of them", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> int:
    return train.main(argv, score=score)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
