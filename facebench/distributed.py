"""One run over several processes with torch DDP, as started by ``torchrun``.

``torchrun --nproc_per_node N -m facebench ...`` starts N copies of the same command and tells
each its place through the environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT). Every rank composes the same config, builds the same components and draws the
same planned batch for each step (batches are a pure function of (seed, step), see
``facebench.train.BatchPlan``); each rank trains on its own equal, contiguous slice of that
global batch, and DDP averages the gradients. For a loss that is a mean over samples (softmax,
margin softmaxes, the centre term) a step is then the single-process step on the whole batch.

P x K batches are sliced by whole identities (P/N identities x K images per rank), never
gathered: pair and triplet mining (DeepID2's verification pairs, FaceNet's triplets, the
contrastive pairs) sees only the rank's own identities, so negatives come from P/N - 1 other
people instead of P - 1. A DDP run with ``pk_identities=P`` thus mines like a single-process
run with P/N identities per batch; raise ``trainer.pk_identities`` N-fold to keep the mining
pool. Gathering the embeddings instead would keep the pool but makes every rank compute the
whole loss and needs gradients through the gather.

What else differs from one process: buffers that a loss updates in ``forward`` (the centre
loss's centres, DeepID2's adaptive margin) are overwritten by rank 0's copy before each step
(DDP's buffer broadcast), so they follow rank 0's slice; BatchNorm becomes SyncBatchNorm on
CUDA (statistics of the global batch) but stays per rank on the CPU, where torch has no
SyncBatchNorm.

Ranks other than 0 train in lockstep and then run the rest of the experiment too (features,
evaluation), into a throwaway directory, with tracking off; only rank 0 writes the record,
the checkpoints and the tracker's run. Keeping the ranks busy with the same work keeps them
in step for the next training unit without waiting in a collective that could time out.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Optional

import torch
import torch.distributed as dist
from torch import nn

from facebench.components import Backbone, Loss, LossOutput
from facebench.config import ConfigError


@dataclass(frozen=True)
class Launch:
    """This process's place in a torchrun launch."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launch_from_env(environ: Mapping[str, str] = os.environ) -> Optional[Launch]:
    """The torchrun launch this process belongs to; None for an ordinary run (or a launch of one
    process, which needs no process group)."""
    if "RANK" not in environ or "WORLD_SIZE" not in environ:
        return None
    world_size = int(environ["WORLD_SIZE"])
    if world_size < 2:
        return None
    rank = int(environ["RANK"])
    return Launch(rank, world_size, int(environ.get("LOCAL_RANK", rank)))


def follower_overrides(scratch: Path) -> list[str]:
    """Overrides for ranks > 0: Hydra's run directory in ``scratch`` (their results are
    discarded) and no tracker, so a launch leaves one run directory and one tracked run."""
    return [f"hydra.run.dir={scratch}", "hydra.output_subdir=null", "tracker=none"]


@contextmanager
def process_group(device: str) -> Iterator[Optional[Launch]]:
    """Join the launch's process group for the duration of a run (nothing outside torchrun).

    NCCL when the run trains on CUDA, with GPU ``LOCAL_RANK`` as each rank's device; gloo on
    the CPU. ``device`` is the run's ``device`` setting (auto | cpu | cuda).
    """
    launch = launch_from_env()
    if launch is None:
        yield None
        return
    if ":" in device:
        raise ConfigError(
            f"device={device} under torchrun: use device=cuda or device=auto; each rank takes GPU LOCAL_RANK"
        )
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(launch.local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo", rank=launch.rank, world_size=launch.world_size)
    try:
        yield launch
    finally:
        dist.destroy_process_group()


def active() -> bool:
    """Whether this process trains as one of several DDP ranks."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main() -> bool:
    """Whether this process writes what a run leaves behind (checkpoints); True outside DDP."""
    return not active() or dist.get_rank() == 0


def batch_part(n: int, group: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous share of a global batch of ``n`` items that comes in blocks of
    ``group`` items (K images per identity for P x K batches, 1 otherwise).

    Shares are equal, so the mean of the ranks' mean losses is the global batch's mean loss,
    and whole blocks, so a rank's pair and triplet mining sees whole identities.
    """
    if n % (group * world_size):
        what = f"{n // group} identities" if group > 1 else f"{n} images"
        raise ConfigError(
            f"a global batch of {what} does not split evenly over {world_size} DDP processes; set "
            + ("trainer.pk_identities" if group > 1 else "trainer.batch_size")
            + f" to a multiple of {world_size} (and no larger than the training set allows)"
        )
    share = n // world_size
    return slice(rank * share, (rank + 1) * share)


def local_part(n: int, group: int) -> slice:
    """This process's share of a global batch (all of it outside DDP)."""
    if not active():
        return slice(0, n)
    return batch_part(n, group, dist.get_rank(), dist.get_world_size())


def _comm_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _max_over_ranks(value: int) -> int:
    t = torch.tensor([value], dtype=torch.int64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is true on any: decisions that end training (a
    diverged loss, the time budget) must be taken by all ranks at the same step, or the others
    would wait for a gradient reduction that never comes."""
    return bool(_max_over_ranks(int(flag))) if active() else flag


def any_rank_signal(received: Optional[int]) -> Optional[int]:
    """The stop signal that any rank has received (the highest number if they differ), on every
    rank; torchrun forwards a signal to all ranks, but each notices it at its own step."""
    if not active():
        return received
    return _max_over_ranks(received or 0) or None


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Logged training metrics averaged over the ranks, i.e. over the global batch."""
    if not active() or not values:
        return values
    keys = list(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t)
    return dict(zip(keys, (t / dist.get_world_size()).tolist()))


class TrainingModule(nn.Module):
    """Backbone and loss as one module whose forward returns the loss, so that DDP sees every
    parameter the optimiser steps, loss-owned ones (softmax heads) included, and reduces their
    gradients."""

    def __init__(self, backbone: Backbone, loss: Loss) -> None:
        super().__init__()
        self.backbone = backbone
        self.loss = loss

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        return self.loss(self.backbone(x), labels)


def wrap(backbone: Backbone, loss: Loss, device: torch.device) -> nn.Module:
    """The module a training step calls: backbone + loss, DDP-wrapped when this is one of
    several ranks. The backbone and loss keep their parameter objects (the optimiser's), so
    checkpoints and evaluation use them unchanged."""
    module = TrainingModule(backbone, loss)
    if not active():
        return module
    if device.type == "cuda":
        module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
    # Unused parameters are legitimate here (a side branch a loss ignores), hence the search.
    return nn.parallel.DistributedDataParallel(
        module,
        device_ids=[torch.cuda.current_device()] if device.type == "cuda" else None,
        find_unused_parameters=True,
    )
