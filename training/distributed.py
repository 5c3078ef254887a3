"""Data-parallel training: which process this is, and what all processes must agree on.

`torchrun --nproc_per_node=N -m evaluation.run ...` (fit and score; `-m training.train` fits only) (or `accelerate launch`) starts one process
per device with RANK, LOCAL_RANK and WORLD_SIZE set; the Trainer reads them and trains with DDP
(NCCL between GPUs, gloo between CPU processes). Each process takes batch_size / WORLD_SIZE rows
of every global batch, so a recipe keeps its steps and learning-rate schedule on one device or eight.

What touches the outside world happens once, on rank 0: the MLflow run and its registered version,
the run-id file, the saved model folder and the test evaluation. Decisions taken from one
process's clock (the time budget) are shared, or the others would wait forever in the next
gradient all-reduce.
"""
from __future__ import annotations

import os


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def _initialised() -> bool:
    import torch.distributed as dist

    return world_size() > 1 and dist.is_available() and dist.is_initialized()


def _tensor(value: float):
    """A one-element float64 tensor where the process group's backend wants it (NCCL: on this GPU)."""
    import torch
    import torch.distributed as dist

    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if dist.get_backend() == "nccl" else "cpu"
    return torch.tensor([float(value)], dtype=torch.float64, device=device)


def any_process(flag: bool) -> bool:
    """True on every process when `flag` is True on any of them (one process alone: `flag`)."""
    if not _initialised():
        return flag
    import torch.distributed as dist

    t = _tensor(flag)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def global_sum(value):
    """The sum over all processes of a scalar tensor (differentiable inputs are detached: it is a normaliser)."""
    if not _initialised():
        return value
    import torch.distributed as dist

    total = value.detach().clone()
    dist.all_reduce(total)
    return total


def finish() -> None:
    """Leave the process group once the collective part is over (rank 0 then evaluates alone)."""
    if _initialised():
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
