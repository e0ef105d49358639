"""Per-direction selective-scan parameters (x_proj, dt_proj, A, D) with Mamba's initialisation."""

from __future__ import annotations

import math

import torch
from torch import nn


class DirectionalSSMParams(nn.Module):
    """Parameters of K scan directions over ``dim`` channels.

    Attributes:
        x_proj_weight: (K, rank + 2N, dim)  per-token projection to [dt low-rank | B | C].
        dt_proj_weight: (K, dim, rank), dt_proj_bias: (K, dim)  dt up-projection; softplus(bias) starts
            log-uniform in [dt_min, dt_max].
        A_log: (K, dim, N) with A = -exp(A_log), initialised to log(1..N) (S4D-real).
        D: (K, dim) skip, initialised to 1.
    """

    def __init__(self, num_directions: int, dim: int, d_state: int, dt_rank: int,
                 dt_min: float = 1e-3, dt_max: float = 0.1, dt_init_floor: float = 1e-4):
        super().__init__()
        K = num_directions
        self.dt_rank, self.d_state = dt_rank, d_state
        bound = dim ** -0.5  # nn.Linear's default init for the stacked x_proj weights
        self.x_proj_weight = nn.Parameter(torch.empty(K, dt_rank + 2 * d_state, dim).uniform_(-bound, bound))
        dt_std = dt_rank ** -0.5
        self.dt_proj_weight = nn.Parameter(torch.empty(K, dim, dt_rank).uniform_(-dt_std, dt_std))
        dt = torch.exp(torch.rand(K, dim) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_proj_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        A = torch.arange(1, d_state + 1, dtype=torch.float32).expand(K, dim, d_state)
        self.A_log = nn.Parameter(torch.log(A).clone())
        self.D = nn.Parameter(torch.ones(K, dim))

    @property
    def num_directions(self) -> int:
        return self.x_proj_weight.shape[0]

    def project(self, u: torch.Tensor) -> torch.Tensor:
        """(batch, L, dim) tokens -> (batch, L, K, rank + 2N) x_proj outputs for every direction."""
        K, out, dim = self.x_proj_weight.shape
        return nn.functional.linear(u, self.x_proj_weight.reshape(K * out, dim)).unflatten(-1, (K, out))

    def A(self) -> torch.Tensor:
        return -torch.exp(self.A_log.float())
