"""The per-direction channel gate that MambaCSR applies between the scan and the sum over directions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ChannelGate:
    """Gate each direction's output by a function of its token-mean after a LayerNorm.

    For direction k with raster-order output ``y_k`` (batch, L, dim):
        pooled_k = mean over tokens of LayerNorm(y_k; norm_weight, norm_bias, eps)     (batch, dim)
        out      = sum_k y_k * excite(pooled)[:, k]
    where ``excite`` maps (batch, K, dim) -> (batch, K, dim) (MambaCSR: Linear, GELU, Linear, Sigmoid).  The
    kernels only need the pooled statistics and the final weighted sum, so ``excite`` can be any differentiable
    PyTorch function.

    Attributes:
        norm_weight, norm_bias: (dim,) LayerNorm affine parameters.
        eps: LayerNorm epsilon.
        excite: callable (batch, K, dim) -> (batch, K, dim).
    """

    norm_weight: torch.Tensor
    norm_bias: torch.Tensor
    eps: float
    excite: Callable[[torch.Tensor], torch.Tensor]

    def pool(self, ys: torch.Tensor) -> torch.Tensor:
        """(batch, K, L, dim) raster-order outputs -> (batch, K, dim) token-means of their LayerNorm."""
        return F.layer_norm(ys, (ys.shape[-1],), self.norm_weight, self.norm_bias, self.eps).mean(dim=2)
