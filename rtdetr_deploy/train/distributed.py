"""Multi-process training under ``torchrun``: process group set-up, sharded sampling, gathering results.

Single-process runs go through the same functions with ``world == 1``, so there is one code path.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = ["Distributed", "EpochSampler", "setup_distributed", "all_gather", "broadcast", "cleanup_distributed"]


@dataclass(frozen=True)
class Distributed:
    """This process's place in the run: ``rank`` of ``world`` processes, training on ``device``."""

    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and plots, and prints."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process (no-op in a single process)."""
        if self.world > 1:
            dist.barrier()


def setup_distributed(device: str) -> Distributed:
    """Join the process group that ``torchrun`` describes in the environment (NCCL on GPU, gloo on CPU).

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; under torchrun a CUDA device becomes
            ``cuda:LOCAL_RANK``.

    Raises:
        ValueError: CUDA was asked for but is not available.
    """
    wants_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if wants_cuda and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed(0, 1, torch.device(device if device != "auto" else "cuda" if wants_cuda else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if wants_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if wants_cuda else "gloo")
    target = torch.device("cuda", local_rank) if wants_cuda else torch.device("cpu")
    return Distributed(dist.get_rank(), dist.get_world_size(), target)


def cleanup_distributed() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_gather(obj: Any, world: int) -> list[Any]:
    """Every process's ``obj`` (picklable), in rank order; ``[obj]`` in a single process."""
    if world == 1:
        return [obj]
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast(obj: Any, world: int) -> Any:
    """Rank 0's ``obj`` on every process."""
    if world == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class EpochSampler(Sampler[int]):
    """Dataset indices for one process: shuffled per epoch from a seed, resumable from any batch.

    Training (``shuffle=True``) follows ``DistributedSampler``: one permutation per epoch, padded by
    repetition to a multiple of ``world`` and dealt out by rank, then cut to whole batches. Evaluation
    (``shuffle=False``) deals the indices in order without padding, so no image is counted twice.

    Args:
        size: dataset length.
        batch: images per batch in this process.
        rank, world: this process and the number of processes.
        seed: base of the per-epoch permutation.
        shuffle: training order (see above).
    """

    def __init__(self, size: int, *, batch: int, rank: int = 0, world: int = 1, seed: int = 0, shuffle: bool = True):
        self.size = size
        self.batch = batch
        self.rank = rank
        self.world = world
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, *, start_batch: int = 0) -> None:
        """Select the epoch's permutation and skip its first ``start_batch`` batches (resuming mid-epoch)."""
        self.epoch = epoch
        self.start_batch = start_batch

    @property
    def batches_per_epoch(self) -> int:
        """Whole batches per epoch in each process (training); the last batch may be short in evaluation."""
        if self.shuffle:
            return -(-self.size // self.world) // self.batch
        return -(-len(range(self.rank, self.size, self.world)) // self.batch)

    def _indices(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.rank, self.size, self.world))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        padded = -(-self.size // self.world) * self.world
        order = (order * (-(-padded // self.size)))[:padded]
        return order[self.rank :: self.world][: self.batches_per_epoch * self.batch]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.start_batch * self.batch :])

    def __len__(self) -> int:
        return max(len(self._indices()) - self.start_batch * self.batch, 0)
