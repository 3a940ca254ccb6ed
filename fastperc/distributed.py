"""fastperc inside torch.distributed (torchrun; gloo on CPU, NCCL on GPU): ranks, sharding, seeds, and
the one loss reduction that DistributedDataParallel gets wrong for sparse data.

Every helper works without a process group (one process is rank 0 of 1), so the same script runs
with `python` and with `torchrun`. The rank comes from the initialised process group, or else from
torchrun's RANK / WORLD_SIZE environment (set before Python starts, so even import-time messages know
it).
"""
from __future__ import annotations

import importlib
import os
import sys
import warnings

import torch
import torch.distributed as dist


def initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if initialized() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if initialized() else int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0: the one process that prints, warns and writes files."""
    return rank() == 0


def warn(message: str, category=RuntimeWarning, stacklevel: int = 2) -> None:
    """warnings.warn on rank 0 only. fastperc's warnings (a kernel falling back to the reference, a
    model without weights) come from the build and the arguments, which every rank shares: one copy
    per job says it, not one per rank."""
    if is_main_process():
        warnings.warn(message, category, stacklevel=stacklevel + 1)


def launched() -> bool:
    """True under a launcher (torchrun) with more than one process."""
    return world_size() > 1


def setup(device: str = "auto") -> torch.device:
    """Joins the job torchrun started (init_process_group from the environment, once) and returns this
    rank's device: cuda:LOCAL_RANK with NCCL when CUDA is used, else the CPU with gloo. Without a
    launcher it only picks the device. device: "auto" (CUDA when available), "cpu" or "cuda"."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but torch sees no CUDA device")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    target = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(target)
    if launched() and not initialized():
        # torch._dynamo first: imported after init_process_group (the first optimizer imports it),
        # it takes references to the default group that destroy_process_group does not drop (torch
        # 2.14). The group then outlived cleanup(), and its threads (gloo's socket loop and workers)
        # ran on into interpreter exit: the likely cause of a rank's rare abort at exit in CI
        # ("terminate called without an active exception"; not reproduced here). Imported first, it
        # holds no group, and the group's threads end with it.
        importlib.import_module("torch._dynamo")
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return target


def cleanup() -> None:
    """Leaves the job: waits for every rank (a barrier), then destroys the process group. Without the
    barrier, a rank that finished first tore its gloo group down while rank 0 was still writing the
    checkpoint, and once aborted at exit ("terminate called without an active exception", CI). Called
    while an exception propagates (a `finally`), it skips the barrier: the other ranks may be waiting
    in another collective, and the barrier would hang against it instead of failing. gloo's threads
    end when the last object holding the group is freed: here, or with a DistributedDataParallel
    model that outlives this call."""
    if initialized():
        if sys.exc_info()[0] is None:
            dist.barrier()
        dist.destroy_process_group()


def shard(items, rank_: int | None = None, world: int | None = None) -> list:
    """This rank's share of items, strided (items[rank::world]): every item goes to exactly one rank,
    counts differ by at most one, and neighbouring items (often of similar size) spread over ranks."""
    r = rank() if rank_ is None else rank_
    w = world_size() if world is None else world
    return list(items)[r::w]


def rank_seed(seed: int) -> int:
    """The seed of this rank's data stream: seed + rank. Model initialisation should use `seed` itself
    on every rank (DDP also broadcasts rank 0's parameters); augmentation and sampling use this one so
    that ranks do not draw the same crops."""
    return seed + rank()


def gather_objects(obj) -> list:
    """Every rank's obj, in rank order, on every rank (all_gather_object); [obj] without a group."""
    if not initialized() or dist.get_world_size() == 1:
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum over ranks (a new tensor; the input is not changed). Identity without a group."""
    out = tensor.clone()
    if initialized() and dist.get_world_size() > 1:
        dist.all_reduce(out)
    return out


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean over ranks (a new tensor): what a value logged on rank 0 should be, e.g. the combined
    batch's loss when every rank's batch has the same size. Identity without a group."""
    return all_reduce_sum(tensor) / world_size()


def mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """The loss to give DDP when the mean should run over the union of all ranks' elements and ranks
    hold different numbers of them (sparse sites, ragged point clouds, the last partial batch).

    DDP averages gradients over ranks, so each rank's values.mean() would weight a rank with few sites
    like one with many. This returns sum(values) * world / total count, whose DDP-averaged gradient is
    exactly the gradient of the mean over every rank's values. One all-reduce of a count per call.
    """
    count = all_reduce_sum(torch.tensor([values.numel()], dtype=torch.float64, device=values.device))
    if count.item() == 0:
        raise ValueError("mean_over_ranks: no rank holds any value")
    return values.sum() * (world_size() / count[0].to(values.dtype))
