"""Per-position loss weights for the Trainer (`--numeric_o_weight`).

Filers leave many numbers untagged, so an `O` on a number is partly noise; the weight lets those
positions count for less than a real tag without dropping them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import Trainer

from training import distributed
from training.features import IGNORE


def collator(base):
    """Wraps a token-classification collator: pads `loss_weights` (when the windows have them)."""

    def collate(features: list[dict]) -> dict:
        weights = [f.get("loss_weights") for f in features]
        batch = base([{k: v for k, v in f.items() if k != "loss_weights"} for f in features])
        if weights[0] is not None:
            length = batch["input_ids"].shape[1]
            batch["loss_weights"] = torch.tensor([w + [0.0] * (length - len(w)) for w in weights])
        return batch

    return collate


class WeightedLossTrainer(Trainer):
    """Cross-entropy with per-position weights, normalised by the weight of the labelled positions;
    batches without `loss_weights` (validation, or no --numeric_o_weight) get the Trainer's own loss,
    except in data-parallel training, where every training batch is normalised over the global batch."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The Trainer drops batch keys the model's forward() does not name, loss_weights included.
        if self.args.remove_unused_columns:
            raise ValueError("WeightedLossTrainer needs TrainingArguments(remove_unused_columns=False)")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        weights = inputs.pop("loss_weights", None)
        parallel = model.training and distributed.world_size() > 1
        if weights is None and not parallel:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        losses = F.cross_entropy(outputs.logits.flatten(0, 1).float(), labels.flatten(),
                                 ignore_index=IGNORE, reduction="none",
                                 label_smoothing=self.args.label_smoothing_factor)
        w = (labels.flatten() != IGNORE).to(losses.dtype)
        if weights is not None:
            w = w * weights.flatten()
        # DDP averages the processes' gradients. Dividing each share by the global batch's weight
        # (times the world size) makes that average the gradient of one loss over the whole global
        # batch, as one process would compute it; a per-process mean would weigh short shares more.
        norm = distributed.global_sum(w.sum()) / distributed.world_size() if parallel else w.sum()
        loss = (losses * w).sum() / norm.clamp_min(1e-6)
        return (loss, outputs) if return_outputs else loss
