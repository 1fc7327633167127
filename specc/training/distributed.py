"""Multi-process training: DistributedDataParallel over torchrun's environment.

    torchrun --nproc-per-node 2 -m specc train spec.yaml --data cifar10     # one machine
    specc train spec.yaml --data cifar10 --nproc 2                          # the same

Several machines: start the same command on every node with torchrun's rendezvous, e.g.

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d \\
             --rdzv-endpoint HOST0:29400 --rdzv-id RUN42 --max-restarts 0 -m specc train ...

(a new --rdzv-id for every start, a resume included; specc recovers with --resume, not with
torchrun's restarts, which rerun the first command in a folder that now holds a run). The result equals one machine with as
many processes (tests/train/test_multinode.py: two agents on loopback vs --nproc 2).

The run directory must be on a filesystem every node sees (rank 0 writes it; every rank
reads the checkpoint on `--resume`). NCCL on GPUs, gloo on CPUs. Every rank draws the same
epoch plan and takes its strided shard (see `specc.training.data.loader`); gradients are
averaged by DDP, metrics are summed over ranks with `all_reduce`, and only rank 0 prints,
writes metrics and checkpoints. `specc train --nproc N` starts and watches the processes
itself (`specc.training.launch`).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

from specc.errors import UserError


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 when alone)."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1
    local_size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that prints and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    """The World that torchrun's variables describe (RANK, LOCAL_RANK, WORLD_SIZE, ...)."""
    env = os.environ

    def number(key: str, default: int) -> int:
        try:
            return int(env.get(key, default))
        except ValueError:
            raise UserError(f"environment variable {key}={env[key]!r} is not an integer") from None

    size = number("WORLD_SIZE", 1)
    return World(number("RANK", 0), number("LOCAL_RANK", 0), size, number("LOCAL_WORLD_SIZE", size))


def start(world: World, device: torch.device) -> None:
    """Join the process group (no-op for a single process)."""
    if not world.distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(world.local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    # Gloo binds to the interface the hostname resolves to; on a single machine with a
    # loopback master (what `--nproc` uses) that may not be reachable, loopback always is.
    if backend == "gloo" and os.environ.get("MASTER_ADDR") in ("127.0.0.1", "localhost"):
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(backend)


def stop(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """Sum `tensor` over all ranks, in place; returns it."""
    if world.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_min(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """The elementwise minimum of `tensor` over all ranks, in place; returns it."""
    if world.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return tensor


def gather(obj, world: World) -> list:
    """`[obj of rank 0, obj of rank 1, ...]` on every rank (small picklable objects only)."""
    if not world.distributed:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def same_everywhere(model: torch.nn.Module, world: World) -> bool:
    """Whether every rank holds bit-identical parameters (DDP's promise; checked at the end)."""
    if not world.distributed:
        return True
    flat = torch.cat([t.detach().reshape(-1).float() for t in model.state_dict().values()])
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    agree = torch.tensor([float(torch.equal(flat, reference))], device=flat.device)
    return bool(all_min(agree, world).item())


def free_port() -> int:
    """A TCP port free on loopback right now (for the rendezvous of one machine's processes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
