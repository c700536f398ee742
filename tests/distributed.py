"""Running a function in several gloo processes on loopback, for tests of what DDP computes.

The processes are spawned, not forked: a child forked after the parent's first OpenMP matrix product
can hang in its own. So the functions they run live here, importable by name, and import what they
need themselves, so that a child loads no more than its function uses. One process runs here, in a
group of one.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def run_in_processes(function: Callable[..., dict[str, Any]], world: int, out_dir: Path, *args: Any) -> list[dict]:
    """`function(rank, world, *args)` in `world` processes joined in one gloo group; their results by rank."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    if world == 1:
        _joined(0, 1, port, function, str(out_dir), args)
    else:
        mp.start_processes(_joined, args=(world, port, function, str(out_dir), args), nprocs=world,
                           start_method="spawn")
    return [torch.load(Path(out_dir) / f"rank{rank}.pt") for rank in range(world)]


def _joined(rank: int, world: int, port: int, function: Callable[..., dict], out_dir: str, args: tuple) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.save(function(rank, world, *args), Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()  # no process tears its group down while another still talks to it
    finally:
        dist.destroy_process_group()


def sharded_recall(rank: int, world: int, sat: torch.Tensor, grd: torch.Tensor, utm: torch.Tensor,
                   radius: float) -> dict:
    from utils.recall import Shard, recall_at_k, recall_within_distance

    shard = Shard.of_process_group()
    return {"paired": recall_at_k(sat, grd, chunk_size=7, shard=shard),
            "radius": recall_within_distance(sat, grd, utm, radius=radius, chunk_size=7, shard=shard)}


def global_negatives_loss(rank: int, world: int, sat: torch.Tensor, grd: torch.Tensor, utm: torch.Tensor) -> dict:
    """This process's slice of the batch, the loss over every process's slices, and its slice's gradients."""
    from dataset.negatives import WithinDistance
    from model.loss import gather_with_grad, soft_margin_triplet_loss

    local = slice(rank * len(sat) // world, (rank + 1) * len(sat) // world)
    own_sat, own_grd = sat[local].clone().requires_grad_(), grd[local].clone().requires_grad_()
    loss = soft_margin_triplet_loss(gather_with_grad(own_sat), gather_with_grad(own_grd), 10.0, 0.1,
                                    not_negatives=WithinDistance(25.0)({"utm": gather_with_grad(utm[local])}))
    loss.backward()
    return {"loss": loss.detach(), "sat": own_sat.grad, "grd": own_grd.grad}


def sharded_ranking(rank: int, world: int, sat: torch.Tensor, grd: torch.Tensor, positive: torch.Tensor,
                    semi_positives: torch.Tensor) -> dict:
    from utils.recall import Positives, Shard, rank

    ranking = rank(grd, sat, Positives.of_indices(positive, semi_positives), chunk_size=5,
                   shard=Shard.of_process_group(), top1=True)
    return {"closer": ranking.closer, "closer_not_covering": ranking.closer_not_covering, "top1": ranking.top1}
