"""Generated FiNER-format sentences with a learnable pattern, for tests that train or evaluate."""
from __future__ import annotations

import json
import random
from pathlib import Path

from finer.words import split_words

STATED = "DebtInstrumentInterestRateStatedPercentage"
SPREAD = "DebtInstrumentBasisSpreadOnVariableRate1"
CAPACITY = "LineOfCreditFacilityMaximumBorrowingCapacity"
FACE = "DebtInstrumentFaceAmount"


def sentence(rng: random.Random, kind: int) -> dict:
    rate, spread, cap, face = (rng.choice(v) for v in (["7.00", "5.25", "2.25", "3.875"], ["1.50", "2.00", "0.75"],
                                                         ["500", "750", "1,000"], ["100", "250", "300"]))
    if kind == 0:
        text, tags = f"The company issued ${face} million of {rate}% senior notes due 2030.", {rate: STATED, face: FACE}
    elif kind == 1:
        text, tags = f"Loans bear interest at SOFR plus {spread}% under the ${cap} million revolving credit facility.", {
            spread: SPREAD, cap: CAPACITY}
    else:
        text, tags = f"Revenue was ${rng.randint(1, 90)}.{rng.randint(1, 9)} million for the year ended {rng.randint(2019, 2024)}.", {}
    words = [w.text for w in split_words(text)]
    return {"tokens": words, "ner_tags": [f"B-{tags[w]}" if w in tags else "O" for w in words], "text": text}


def write_dataset(folder: Path, sizes=(("train", 90), ("validation", 24), ("test", 24)), seed: int = 0) -> Path:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in sizes:
        with (folder / f"{split}.jsonl").open("w") as f:
            for i in range(n):
                # period and form, as the iXBRL corpus gives them: evaluation reports by year and form
                meta = {"period": ("2021-12-31", "2023-06-30")[i % 2], "form": ("10-K", "10-Q")[i % 4 // 3]}
                f.write(json.dumps({"id": i, **sentence(rng, i % 3), **meta}) + "\n")
    return folder
