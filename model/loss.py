"""Soft-margin weighted triplet loss with in-batch hard-negative mining, as the paper trains with."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

HARD_NEGATIVE_EPOCHS = (20, 40, 60)


def hard_topk_ratio_for_epoch(epoch: int, ratios: tuple[float, float, float, float] = (1.0, 0.1, 0.05, 0.01)) -> float:
    """The fraction of triplets kept at `epoch` (counted from 0): epochs 0-20, 21-40, 41-60, then the rest."""
    for boundary, ratio in zip(HARD_NEGATIVE_EPOCHS, ratios, strict=False):
        if epoch <= boundary:
            return ratio
    return ratios[-1]


def soft_margin_triplet_loss(
    sat: torch.Tensor,
    grd: torch.Tensor,
    loss_weight: float = 10.0,
    hard_topk_ratio: float = 1.0,
    utm: torch.Tensor | None = None,
    min_negative_distance: float = 25.0,
    not_negatives: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of `log(1 + exp(w * (d_pos - d_neg)))` over the hardest triplets, averaged over both directions.

    `sat[i]` and `grd[i]` are a matching pair; every other in-batch item is a negative, except (with
    `utm`, CVACT) those whose positions lie closer than `min_negative_distance` metres, and the (aerial i,
    ground j) entries where `not_negatives` (B, B) is True (VIGOR: `covering_pairs`). Such pairs are
    left out of both the sum and the count; the authors' code multiplies them by zero instead, which
    still adds log 2 each and counts them. Computed in float32 even under autocast.
    """
    with torch.autocast(sat.device.type, enabled=False):  # bf16 distances would blur the hard negatives
        dists = 2 - 2 * sat.float() @ grd.float().T
    positives = dists.diagonal()
    n = dists.shape[0]
    negatives = ~torch.eye(n, dtype=torch.bool, device=dists.device)
    if utm is not None:
        utm = utm.to(device=dists.device, dtype=torch.float64)
        negatives &= torch.cdist(utm, utm) >= min_negative_distance
    if not_negatives is not None:
        negatives &= ~not_negatives.to(device=dists.device, dtype=torch.bool)
    kept = int(hard_topk_ratio * n * (n - 1))
    aerial_query = F.softplus(loss_weight * (positives[:, None] - dists))
    ground_query = F.softplus(loss_weight * (positives[None, :] - dists))
    return (_mean_of_hardest(aerial_query[negatives], kept) + _mean_of_hardest(ground_query[negatives], kept)) / 2


def covering_pairs(positive: torch.Tensor, semi_positives: torch.Tensor) -> torch.Tensor:
    """(B, B) True where the aerial tile of pair i (`positive[i]`) covers the panorama of pair j: it is j's
    positive or one of its semi-positives (B, S), so it shows j's place and cannot serve as j's negative."""
    labels = torch.cat([positive[:, None], semi_positives], dim=1)
    return (positive[:, None, None] == labels[None, :, :]).any(-1)


def _mean_of_hardest(losses: torch.Tensor, kept: int) -> torch.Tensor:
    """Mean of the `kept` largest values; at least one is kept, so tiny batches never divide by zero."""
    if losses.numel() == 0:
        return losses.sum()
    kept = min(max(kept, 1), losses.numel())
    if kept < losses.numel():
        losses = losses.topk(kept).values
    return losses.sum() / kept


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward sums the gradients over the processes and keeps this process's rows."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rows = slice(dist.get_rank() * tensor.shape[0], (dist.get_rank() + 1) * tensor.shape[0])
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rows]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Every process's `tensor` concatenated along dim 0, in rank order; gradients flow back to each's own part.

    Every process must give the same number of rows (DDP's sampler pads the shards to equal length). The
    loss of the gathered batch is the same on every process, and the backward pass sums each part's
    gradients over the processes, so after DDP's average the weights get the gradient of that global loss.
    """
    return _GatherWithGrad.apply(tensor)
