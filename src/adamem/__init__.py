"""adamem: PyTorch optimizers with Adaptive Memory (AM) momentum.

AM replaces the fixed momentum coefficient of heavy ball and AdamW with a coefficient
``beta_t`` solved in closed form at every step from a two-plane proximal model of the loss
(Topollai & Choromanska, AISTATS 2026). See :mod:`adamem.beta` for the shared math.
"""

from .amadamw import AMAdamW
from .ammuon import AMMuon
from .amsgd import AMSGD
from .beta import block_betas, select_beta
from .diagnostics import beta_summary
from .groups import muon_param_groups, param_groups
from .monitoring import BetaLogger, tensorboard_log_fn

__all__ = [
    "AMAdamW",
    "AMMuon",
    "AMSGD",
    "BetaLogger",
    "beta_summary",
    "block_betas",
    "muon_param_groups",
    "param_groups",
    "select_beta",
    "tensorboard_log_fn",
]
__version__ = "0.1.0"
