"""Token classifiers of the product default's size, randomly initialised, for speed benchmarks.

The Hugging Face hub is out of reach here, so DistilBERT-base or BERT-base weights cannot be
downloaded; their speed does not depend on the weights, only on the architecture and the
vocabulary. `build` writes a `save_pretrained` folder of that architecture with all of FiNER-139's
labels and the 30,522-token uncased WordPiece vocabulary of the offline encoder (the same vocabulary
as bert-base-uncased), seeded, so `loadtest.bench --arch distilbert-base` measures the product
default's cost. Its entities are noise: the bench's agreement and F1 columns mean nothing for it.
"""
from __future__ import annotations

from pathlib import Path

ARCHS = {
    # the sizes of distilbert-base-cased and bert-base-cased
    "distilbert-base": dict(kind="distilbert", dim=768, n_layers=6, n_heads=12, hidden_dim=3072),
    "bert-base": dict(kind="bert", hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}
SEED = 13


def build(arch: str, folder: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification, DistilBertConfig, \
        DistilBertForTokenClassification

    from finer.labels import finer_label_names
    from training.models import offline_encoder_path

    if arch not in ARCHS:
        raise ValueError(f"--arch {arch!r}: choose one of {', '.join(ARCHS)}")
    if (folder / "config.json").is_file():
        return folder
    tokenizer = AutoTokenizer.from_pretrained(offline_encoder_path())
    labels = finer_label_names()
    names = {"id2label": dict(enumerate(labels)), "label2id": {t: i for i, t in enumerate(labels)}}
    sizes = dict(ARCHS[arch])
    kind = sizes.pop("kind")
    torch.manual_seed(SEED)
    if kind == "distilbert":
        model = DistilBertForTokenClassification(DistilBertConfig(vocab_size=tokenizer.vocab_size, **sizes, **names))
    else:
        model = BertForTokenClassification(BertConfig(vocab_size=tokenizer.vocab_size, **sizes, **names))
    model.eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
