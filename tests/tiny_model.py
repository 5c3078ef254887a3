"""A tiny random token classifier saved like a trained one (save_pretrained folder + fast tokenizer).

For tests that need a real model folder without downloads: export, serving, evaluation.

    from tiny_model import build_tiny_model
    folder = build_tiny_model(tmp_path / "model")               # DistilBERT, debt labels
    folder = build_tiny_model(tmp_path / "bert", arch="bert")   # BERT (has token_type_ids)
    folder = build_tiny_model(tmp_path / "m", number_shapes=SHAPES)  # reads numbers as shape tokens
"""
from __future__ import annotations

import string
from pathlib import Path
from typing import Sequence

from finer.labels import LabelScope

SEED = 13
SHAPES = ["[NUM]", "[X.XX]", "[X.X]", "[X]", "[XX]", "[XXX]", "[X,XXX]", "[X.XXX]"]

WORDS = """
the a an of to in on at for and or by with as per from due under our we its company
interest rate rates debt credit facility facilities notes note loan loans term senior secured
revolving line borrowing capacity maximum effective stated spread basis points libor sofr plus
annum million billion thousand percent bear bears bore issued outstanding amount principal
agreement quarter year years fiscal ended december june march september total net income revenue
was were is are has had have will be which this that these may approximately up aggregate
""".split()


def write_vocab(path: Path) -> Path:
    """A WordPiece vocab: special tokens, digits, punctuation, letters (whole and ##), filing words."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += list(string.digits) + list(string.punctuation) + list(string.ascii_lowercase)
    tokens += [f"##{c}" for c in string.digits + string.ascii_lowercase]
    tokens += [w for w in dict.fromkeys(WORDS) if w not in tokens]
    path.write_text("\n".join(tokens) + "\n")
    return path


def build_tiny_model(folder: str | Path, *, labels: Sequence[str] | None = None, arch: str = "distilbert",
                     seed: int = SEED, number_shapes: Sequence[str] = ()) -> Path:
    """Save a random 2-layer, 32-wide token classifier and its BertTokenizerFast into `folder`.

    The classifier weights are widened so tags vary word by word (an untrained head says `O`
    everywhere), with a slight bias towards `O`: decoding tags numbers only (`finer.words.may_be_entity`), and
    most numbers of a test sentence still come out as entities.
    With `number_shapes`, the tokenizer gets the shape tokens and finer.json records them, as
    `training.train --number_shapes` leaves a model.
    """
    import torch
    from transformers import (BertConfig, BertForTokenClassification, BertTokenizerFast, DistilBertConfig,
                              DistilBertForTokenClassification)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    labels = list(labels or LabelScope.parse("debt").label_names)
    tokenizer = BertTokenizerFast(vocab_file=str(write_vocab(folder / "vocab.txt")), do_lower_case=True)
    if number_shapes:
        tokenizer.add_special_tokens({"additional_special_tokens": list(number_shapes)})
    names = {"id2label": dict(enumerate(labels)), "label2id": {t: i for i, t in enumerate(labels)}}
    torch.manual_seed(seed)
    if arch == "distilbert":
        config = DistilBertConfig(vocab_size=len(tokenizer), dim=32, hidden_dim=64, n_layers=2, n_heads=2, **names)
        model = DistilBertForTokenClassification(config)
    elif arch == "bert":
        config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=512, **names)
        model = BertForTokenClassification(config)
    else:
        raise ValueError(f"arch must be 'distilbert' or 'bert', not {arch!r}")
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 1.0)
        model.classifier.bias.zero_()
        model.classifier.bias[0] = 1.0
    model.eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if number_shapes:
        from training.features import tagger_config

        tagger_config(tokenizer, names["id2label"], number_shapes=number_shapes).save(folder)
    return folder
