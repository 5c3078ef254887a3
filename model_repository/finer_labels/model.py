"""Triton Python model: the label list, version and model card of the exported model that is being served."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

# The shared core this version was exported with (`<step>/<N>/finer/`, written by export) comes
# first, so a rolled-back version runs the code it was tested with; else the installed one.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from finer.pipeline import TaggerConfig  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        folder = Path(args["model_repository"]) / args["model_version"]  # this version's own finer.json
        self.labels = np.array([t.encode() for t in TaggerConfig.load(folder).labels], dtype=np.object_)
        self.version = np.array([folder.name.encode()], dtype=np.object_)
        card = folder / "MODEL_CARD.md"  # written by export.model_card
        self.card = np.array([card.read_bytes() if card.is_file() else b""], dtype=np.object_)

    def execute(self, requests):
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("LABELS", self.labels),
                                                           pb_utils.Tensor("VERSION", self.version),
                                                           pb_utils.Tensor("MODEL_CARD", self.card)])
                for _ in requests]
