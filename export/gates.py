"""Export stage 4, the gates: ONNX logits must match PyTorch's (parity) and int8 must keep its entity F1."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from finer.labels import OUTSIDE
from finer.pipeline import TaggerConfig, encode
from finer.words import may_be_entity
from export.source import ExportError

PARITY_TOLERANCE = 1e-4
MAX_F1_DROP_POINTS = 0.5

# Filing-style text for the parity check when no --parity-data is given; the last paragraph is long
# enough to need several windows at max_length 128.
SAMPLE_TEXTS = [
    "In March 2014, the Company issued an additional $100 million of its 7.00% Senior Notes due 2022 at 102.25% of their face value.",
    "Borrowings under the revolving credit facility bear interest at LIBOR plus 1.75%, and the facility has a maximum borrowing capacity of $750.0 million.",
    "The effective interest rate on the term loan was 4.3% for the year ended December 31, 2023.",
    "As of September 30, 2024, we had $1,893.6 million outstanding under our commercial paper program.",
    "The notes bear interest at a fixed rate of 5.25% per annum, payable semi-annually in arrears on June 15 and December 15 of each year.",
    "We recorded an impairment charge of $12.4 million related to goodwill of the U.S. retail segment.",
    "Net cash provided by operating activities was $2.1 billion in fiscal 2023 compared with $1.8 billion in fiscal 2022.",
    "The Company's effective tax rate was 21.4% and 19.8% for the three months ended June 30, 2024 and 2023, respectively.",
    "On May 3, 2023, the Company entered into a three-year, $500 million unsecured term loan agreement with a syndicate of banks.",
    "Interest on the Series B debentures accrues at the Secured Overnight Financing Rate (SOFR) plus a spread of 2.50%.",
    "Revenue increased 8% to $4,512 million, primarily due to higher volumes in the Americas.",
    "The 2031 Notes were issued at 99.512% of par and have a stated interest rate of 3.625%.",
    " ".join([
        "On February 14, 2022, the Company, as borrower, entered into a Second Amended and Restated Credit Agreement,",
        "which provides for a senior unsecured revolving credit facility with an aggregate principal amount of up to $1.5 billion,",
        "including a $100 million sublimit for letters of credit and a $50 million sublimit for swingline loans.",
        "Loans under the facility bear interest, at the Company's option, at a base rate plus a margin ranging from 0.000% to 0.375%",
        "or at Term SOFR plus 0.10% plus a margin ranging from 0.875% to 1.375%, in each case depending on the Company's credit ratings.",
        "The Company also pays a facility fee ranging from 0.080% to 0.250% on the total commitments.",
        "As of December 31, 2023, there were no borrowings outstanding and $12.5 million of letters of credit issued under the facility,",
        "and the Company was in compliance with all of its financial covenants, including a maximum consolidated leverage ratio of 3.75 to 1.00.",
        "In addition, the Company's 4.375% Senior Notes due 2028, with an aggregate principal amount of $600.0 million, are guaranteed by certain subsidiaries.",
    ]),
]


def read_tokens(path: Path, limit: int) -> list[list[str]]:
    """The `tokens` of the first `limit` rows of a FiNER-format jsonl file."""
    docs = []
    try:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    tokens = json.loads(line).get("tokens")
                except (json.JSONDecodeError, AttributeError):
                    raise ExportError(f"{path}:{lineno}: not a JSON object; --parity-data needs FiNER-format jsonl") from None
                if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
                    raise ExportError(f"{path}:{lineno}: needs a 'tokens' list of strings")
                if tokens:
                    docs.append(tokens)
                if len(docs) >= limit:
                    break
    except OSError as e:
        raise ExportError(f"{path}: cannot read it ({e.strerror}); give a FiNER-format jsonl file") from None
    if not docs:
        raise ExportError(f"{path}: no sentences with tokens")
    return docs


@dataclass
class ParitySet:
    """Windows of real sentences and PyTorch's logits for them, computed once for every check."""

    batches: list  # (Encoded, reference logits)
    sentences: int

    @classmethod
    def build(cls, reference, tokenizer, docs: Sequence[Sequence[str]], config: TaggerConfig) -> "ParitySet":
        # Each document alone (its own bucket length) and all of them together (a batch of windows).
        encoded = [encode(tokenizer, batch, config) for batch in [[d] for d in docs] + [list(docs)]]
        return cls([(enc, reference(enc.input_ids, enc.attention_mask)) for enc in encoded], len(docs))

    def check(self, candidate) -> dict:
        """Max |logit difference| over attended positions (serving never reads padded ones)."""
        return self._compare(lambda enc: candidate(enc.input_ids, enc.attention_mask))

    def check_graph(self, sess) -> dict:
        """`check` of an exported graph, in the same pass also gating its label_ids and label_scores
        outputs: they must be its own logits' argmax and softmax maximum (`finer.windows.decision`)."""
        from finer.windows import decision
        from export.onnx_graph import OUTPUTS

        def run(enc):
            logits, ids, scores = sess.run(list(OUTPUTS), {"input_ids": enc.input_ids,
                                                           "attention_mask": enc.attention_mask})
            want_ids, want_scores = decision(logits)
            mask = enc.attention_mask.astype(bool)
            if not (ids[mask] == want_ids[mask]).all() or not np.allclose(scores[mask], want_scores[mask], atol=1e-5):
                raise ExportError("the graph's label_ids/label_scores differ from its own logits' argmax and softmax "
                                  "maximum; nothing written (report this with the onnxruntime version)")
            return logits

        return self._compare(run)

    def _compare(self, outputs) -> dict:
        worst, agree, total = 0.0, 0, 0
        for enc, ref in self.batches:
            got = outputs(enc)
            if got.shape != ref.shape:
                raise ExportError(f"the ONNX model returns logits {got.shape} where PyTorch returns {ref.shape}")
            mask = enc.attention_mask.astype(bool)
            worst = max(worst, float(np.abs(ref - got)[mask].max()))
            agree += int((ref.argmax(-1) == got.argmax(-1))[mask].sum())
            total += int(mask.sum())
        return {"max_abs_diff": worst, "argmax_agreement": agree / total, "sentences": self.sentences,
                "windows": len(self.batches[-1][0].input_ids)}


def validation_rows(path: Path) -> list[dict]:
    """The rows of a FiNER-format file or corpus folder (all its splits) that hold a word that may be an
    entity; ExportError if unreadable. The others cannot change an entity F1 (decoding tags only those
    words), so a gate of N sentences reads N that count: on the corpus's validation split every debt
    entity is in these, and the first 4,000 of them hold 61 against 42 in its first 4,000 rows."""
    from filings.sources import DataError, load_splits

    try:
        rows = [r for split in load_splits(path).values() for r in split]
    except DataError as e:
        raise ExportError(f"--validation {e}") from None
    return [r for r in rows if any(may_be_entity(t) for t in r["tokens"])]


# Sentences whose windows fix int8's activation scales: half hold an entity of the model's labels,
# half any number (as a filing reads). 512 (MinMax with padding) lost 0.2 points of F1 against fp32
# where 256 lost 0.6; padding left out, 0.1.
CALIBRATION_SENTENCES = 512


def calibration_feeds(rows: list[dict], tokenizer, config: TaggerConfig, sentences: int = CALIBRATION_SENTENCES,
                      seed: int = 0) -> list[dict]:
    """Model inputs of a seeded sample of `rows` (`validation_rows`), 8 sentences per batch, windowed as served."""
    known = set(config.labels) - {OUTSIDE}
    tagged = [r["tokens"] for r in rows if known & set(r["ner_tags"])]
    numbers = [r["tokens"] for r in rows if not known & set(r["ner_tags"])]
    rng = np.random.default_rng(seed)
    docs = [group[i] for group in (tagged, numbers)
            for i in rng.permutation(len(group))[: sentences // 2]]
    if not docs:
        raise ExportError("no sentence with a number in --validation to calibrate int8 on")
    return [{"input_ids": enc.input_ids, "attention_mask": enc.attention_mask}
            for enc in (encode(tokenizer, docs[i:i + 8], config) for i in range(0, len(docs), 8))]


def validation_f1(rows: list[dict], tokenizer, config: TaggerConfig, candidates: dict, max_sentences: int | None) -> dict:
    """Entity micro-F1 (seqeval, strict IOB2) of each ONNX model on the first `max_sentences` FiNER-format
    rows, and the seconds each took; tags outside the model's labels count as O. With candidates "fp32"
    and "int8", also int8's paired difference (int8 - fp32, bootstrap over the same sentences, 95% interval)."""
    from finer.labels import entity_type
    from evaluation.confidence import entity_counts, paired_difference
    from evaluation.evaluate import predict
    from training.metrics import entity_scores

    rows = rows[:max_sentences]
    known = set(config.labels)
    gold = [[t if t in known else OUTSIDE for t in r["ner_tags"]] for r in rows]
    if not any(t != OUTSIDE for g in gold for t in g):
        raise ExportError(f"--validation: no entity of the model's labels in {len(rows)} sentences; the F1 gate needs some")
    types = sorted({entity_type(t) for t in config.labels if t != OUTSIDE})
    scores, seconds, counts = {}, {}, {}
    for name, run in candidates.items():
        started = time.perf_counter()
        pred = predict(run, tokenizer, rows, config, desc=f"validation F1 ({name})")
        seconds[name] = round(time.perf_counter() - started, 2)
        scores[name] = entity_scores(gold, pred)["micro avg"]["f1-score"]
        counts[name] = entity_counts(gold, pred, types)
    result = {"sentences": len(rows), "f1": scores, "seconds": seconds}
    if {"fp32", "int8"} <= set(counts):
        point, lo, hi = paired_difference(counts["fp32"], counts["int8"])
        result["int8_minus_fp32_points"] = [100 * x for x in (point, lo, hi)]
        result["speedup"] = round(seconds["fp32"] / max(seconds["int8"], 1e-9), 2)
    return result


def parity_gate(check: dict, what: str) -> None:
    if not check["max_abs_diff"] <= PARITY_TOLERANCE:  # also catches NaN
        raise ExportError(f"parity gate failed: the {what} ONNX model's logits differ from PyTorch by up to "
                          f"{check['max_abs_diff']:.2e} (> {PARITY_TOLERANCE:g}) on {check['sentences']} sentences; "
                          "nothing written (the exporter changed the model's maths: check the torch/optimum/onnxruntime "
                          "versions against pyproject.toml)")
