"""One training process among several (torchrun, DDP) or alone: its rank, its device, and agreeing when to stop.

Both trainers (intra and STEM) start and end the same way: under torchrun each process joins the group (NCCL on
GPUs, gloo on CPUs) on the device of its local rank; alone, it uses the device asked for.
"""

from __future__ import annotations

import os
import time

import torch


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch sees no CUDA device")
    return torch.device(name)


def start(device_name: str, threads: int | None) -> tuple[int, int, torch.device]:
    """(world size, rank, device) of this process, its process group joined when there are several."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
    else:
        device = pick_device(device_name)
    if threads:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return world, rank, device


def time_is_up(deadline: float, world: int, device: torch.device) -> bool:
    """Whether this chunk's minutes are spent, agreed by all ranks (one stopping alone would hang the others)."""
    up = time.time() >= deadline
    if world == 1:
        return up
    import torch.distributed as dist

    flag = torch.tensor([int(up)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def finish(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()


def quiet(_: str) -> None:
    """`say` for the ranks that do not report."""
