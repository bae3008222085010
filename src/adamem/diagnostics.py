"""Summaries of AM's beta for logging, computed on the device without a host sync."""

from __future__ import annotations

import torch
from torch import Tensor

from ._core.optimizer import AMOptimizer


def beta_summary(optimizer: AMOptimizer) -> dict[str, Tensor]:
    """Mean, min and max of the betas solved in the last step and of their effective momentum.

    Each tensor whose beta the last step solved counts once (not weighted by size; see
    :meth:`AMOptimizer.solved_betas <adamem._core.optimizer.AMOptimizer.solved_betas>` for which
    tensors those are). The values are 0-d float32 tensors on the device of the first such
    tensor: reading one (``float(x)``, ``.item()``) is the only synchronisation, so call this
    every step and read it at the logging interval. Returns an empty dict when the last step
    solved no beta (before the second step of AM-SGD, for instance).

    >>> import torch, adamem
    >>> w = torch.nn.Parameter(torch.ones(3))
    >>> opt = adamem.AMSGD([w], lr=0.1)
    >>> for _ in range(2):
    ...     w.grad = torch.tensor([1.0, -2.0, 0.5]) * w.detach()
    ...     opt.step()
    >>> sorted(beta_summary(opt))
    ['beta_max', 'beta_mean', 'beta_min', 'momentum_max', 'momentum_mean', 'momentum_min']
    """
    betas, momenta = [], []
    for group, solved in zip(optimizer.param_groups, optimizer.solved_betas()):
        if solved is None:
            continue
        beta = solved[1].float()
        betas.append(beta)
        momenta.append(optimizer.effective_momentum(beta, group))
    if not betas:
        return {}
    device = betas[0].device
    summary = {}
    for name, values in (("beta", betas), ("momentum", momenta)):
        stacked = torch.cat([v.to(device) for v in values])
        summary[f"{name}_mean"] = stacked.mean()
        summary[f"{name}_min"] = stacked.min()
        summary[f"{name}_max"] = stacked.max()
    return summary
