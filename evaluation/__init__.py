"""The third stage: how good a fitted model is, on the words it will be served.

`evaluation.run` drives a training run end to end (fit with `training.train`, then calibrate and
score); `evaluation.evaluate` scores a model on a split, filtered and unfiltered, by year and form,
with bootstrap intervals (`evaluation.confidence`) and an error report (`evaluation.errors`);
`evaluation.calibrate` fits the per-type decision, `evaluation.checklist` runs the readable debt
checklist, `evaluation.scopes` derives the debt-family scope, `evaluation.compare` tables the runs.
"""
