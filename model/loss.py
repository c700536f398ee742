"""The losses, by name: the paper's soft-margin weighted triplet loss with in-batch hard-negative mining
(the default), and the symmetric InfoNCE of Sample4Geo. Each takes the two batches of descriptors and one
mask of the pairs that are not negatives (`dataset.negatives` builds it); none knows a dataset."""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

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
    not_negatives: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of `log(1 + exp(w * (d_pos - d_neg)))` over the hardest triplets, averaged over both directions.

    `sat[i]` and `grd[i]` are a matching pair; every other in-batch item is a negative, except the (aerial i,
    ground j) entries where `not_negatives` (B, B) is True (`dataset.negatives`: CVACT's 25 m, VIGOR's
    covering tiles). Such pairs are left out of both the sum and the count; the authors' code multiplies
    them by zero instead, which still adds log 2 each and counts them. Computed in float32 even under
    autocast.
    """
    dists = _distances(sat, grd)
    positives = dists.diagonal()
    negatives = negatives_mask(len(dists), not_negatives, dists.device)
    kept = int(hard_topk_ratio * len(dists) * (len(dists) - 1))
    aerial_query = F.softplus(loss_weight * (positives[:, None] - dists))
    ground_query = F.softplus(loss_weight * (positives[None, :] - dists))
    return (mean_of_hardest(aerial_query[negatives], kept) + mean_of_hardest(ground_query[negatives], kept)) / 2


def symmetric_info_nce_loss(
    sat: torch.Tensor,
    grd: torch.Tensor,
    logit_scale: torch.Tensor,
    not_negatives: torch.Tensor | None = None,
    label_smoothing: float = 0.1,
) -> torch.Tensor:
    """Cross-entropy of each aerial image over the panoramas and of each panorama over the aerial images,
    averaged, with logits `exp(logit_scale) * cosine similarity`: the loss Sample4Geo trains with.

    Entries `not_negatives` marks (B, B) leave both the softmax and the smoothed target; the smoothing
    spreads `label_smoothing` over the candidates left, the true pair's included. Computed in float32.
    """
    with torch.autocast(sat.device.type, enabled=False):
        logits = logit_scale.float().exp() * (sat.float() @ grd.float().T)
    candidates = negatives_mask(len(logits), not_negatives, logits.device)
    candidates.fill_diagonal_(True)
    return (_smoothed_cross_entropy(logits, candidates, label_smoothing)
            + _smoothed_cross_entropy(logits.T, candidates.T, label_smoothing)) / 2


def _smoothed_cross_entropy(logits: torch.Tensor, candidates: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Mean over rows of the cross-entropy against row i's class i, among each row's candidates only."""
    log_probs = logits.masked_fill(~candidates, float("-inf")).log_softmax(dim=1).masked_fill(~candidates, 0.0)
    target = candidates * (smoothing / candidates.sum(dim=1, keepdim=True))
    target = target + torch.eye(len(logits), device=logits.device) * (1.0 - smoothing)
    return -(target * log_probs).sum(dim=1).mean()


def _distances(sat: torch.Tensor, grd: torch.Tensor) -> torch.Tensor:
    """(B, B) squared distances of unit vectors, 2 - 2 cos; in float32, since bf16 would blur hard negatives."""
    with torch.autocast(sat.device.type, enabled=False):
        return 2 - 2 * sat.float() @ grd.float().T


def negatives_mask(size: int, not_negatives: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """(B, B) True where aerial i and ground j form a negative pair: off the diagonal and not ruled out."""
    negatives = ~torch.eye(size, dtype=torch.bool, device=device)
    if not_negatives is not None:
        negatives &= ~not_negatives.to(device=device, dtype=torch.bool)
    return negatives


def mean_of_hardest(losses: torch.Tensor, kept: int) -> torch.Tensor:
    """Mean of the `kept` largest values; at least one is kept, so tiny batches never divide by zero."""
    if losses.numel() == 0:
        return losses.sum()
    kept = min(max(kept, 1), losses.numel())
    if kept < losses.numel():
        losses = losses.topk(kept).values
    return losses.sum() / kept


class SoftMarginTripletLoss(nn.Module):
    """The paper's loss (`soft_margin_triplet_loss`) with its weight; mines the `hard_topk_ratio` hardest."""

    def __init__(self, loss_weight: float = 10.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, sat: torch.Tensor, grd: torch.Tensor, not_negatives: torch.Tensor | None = None,
                hard_topk_ratio: float = 1.0) -> torch.Tensor:
        return soft_margin_triplet_loss(sat, grd, self.loss_weight, hard_topk_ratio, not_negatives)


class SymmetricInfoNCELoss(nn.Module):
    """`symmetric_info_nce_loss` with a learnable temperature, started at 0.07 as Sample4Geo starts it; every
    candidate counts (no hard-negative ratio)."""

    def __init__(self, label_smoothing: float = 0.1) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.label_smoothing = label_smoothing

    def forward(self, sat: torch.Tensor, grd: torch.Tensor, not_negatives: torch.Tensor | None = None,
                hard_topk_ratio: float = 1.0) -> torch.Tensor:
        return symmetric_info_nce_loss(sat, grd, self.logit_scale, not_negatives, self.label_smoothing)


LOSSES: dict[str, type[nn.Module]] = {"triplet": SoftMarginTripletLoss, "infonce": SymmetricInfoNCELoss}


def build_loss(name: str, **options: Any) -> nn.Module:
    """The loss registered as `name`, given those of `options` its constructor takes (`loss_weight`: the
    triplet's); it is called as `loss(sat, grd, not_negatives, hard_topk_ratio)`."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of {', '.join(LOSSES)}")
    accepted = inspect.signature(LOSSES[name]).parameters
    return LOSSES[name](**{key: value for key, value in options.items() if key in accepted})


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
