"""Multi-process training with PyTorch DDP, started by ``torchrun``.

``torchrun --nproc-per-node N $(which medsight) train ...`` (multi-node: ``--nnodes``, ``--node-rank``,
``--rdzv-backend c10d --rdzv-endpoint HOST:PORT``) sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; medsight then
joins the process group (NCCL on GPUs, gloo on CPUs), each rank samples its own patches (seed + 1000 x rank), gradients
are averaged by :class:`~torch.nn.parallel.DistributedDataParallel`, and rank 0 alone writes plans, caches,
checkpoints, logs and reports. Decisions that must agree (stop now, early stopping, elapsed time) are taken on rank 0
and broadcast. Without ``torchrun`` every helper here is a no-op.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job: ``enabled`` is false for a plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def requested() -> bool:
    """Whether this process was started by torchrun (or another launcher) with more than one rank."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: str | None = None) -> DistInfo:
    """Join the process group once (NCCL when training on CUDA, else gloo); a no-op for a single process."""
    if not requested():
        return DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        log.info("rank %d of %d joined (%s)", dist.get_rank(), dist.get_world_size(), dist.get_backend())
    return info()


def info() -> DistInfo:
    """The current process group's ranks (a single-process :class:`DistInfo` when none is initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), True)


def is_main() -> bool:
    """True on rank 0 and in single-process runs: the process that writes files."""
    return info().is_main


def barrier() -> None:
    if info().enabled:
        dist.barrier()


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (picklable Python values; small)."""
    if not info().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (planning, preprocessing: it writes the files); the others wait, then run it and
    find everything already on disk."""
    if not info().is_main:
        barrier()
    yield
    if info().is_main:
        barrier()


def shutdown() -> None:
    """Leave the process group (end of ``medsight train``)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def finish() -> bool:
    """Leave the process group together (end of ``medsight train``); True on the rank that reports (rank 0)."""
    writer = is_main()
    shutdown()
    return writer
