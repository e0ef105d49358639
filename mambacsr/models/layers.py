"""Small building blocks shared by the networks: MLP, drop-path, channel attention (CAB), channel gate."""

from __future__ import annotations

import torch
from torch import nn

import scan2d


class Mlp(nn.Module):
    """Token-wise MLP: Linear(dim, hidden), GELU, Linear(hidden, dim).  x: (..., dim)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch of a sample with probability ``rate`` while training."""

    def __init__(self, rate: float = 0.0):
        super().__init__()
        self.rate = float(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.rate == 0.0 or not self.training:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate:.4f}"


class ChannelAttention(nn.Module):
    """RCAN channel attention: global average pool, 1x1 squeeze, ReLU, 1x1 excite, Sigmoid.  x: (B, C, H, W)."""

    def __init__(self, channels: int, squeeze_factor: int):
        super().__init__()
        hidden = max(1, channels // squeeze_factor)
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class CAB(nn.Module):
    """Channel attention block: Conv3x3 C->C/compress, GELU, Conv3x3 back, channel attention.

    x: (B, H, W, C) channels-last tokens; returns the same layout.
    """

    def __init__(self, channels: int, compress_ratio: int, squeeze_factor: int):
        super().__init__()
        hidden = max(1, channels // compress_ratio)
        self.body = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, 1, 1),
            nn.GELU(),
            nn.Conv2d(hidden, channels, 3, 1, 1),
            ChannelAttention(channels, squeeze_factor),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class ChannelGate(nn.Module):
    """MambaCSR's per-direction channel gate: LayerNorm, mean over tokens, Linear C->C/8, GELU, Linear, Sigmoid.

    The scan kernels apply it to each direction's output before the directions are summed
    (see :class:`scan2d.ChannelGate`); this module owns the parameters.
    """

    def __init__(self, channels: int, reduction: float = 0.125):
        super().__init__()
        hidden = max(1, int(channels * reduction))
        self.norm = nn.LayerNorm(channels)
        self.reduce = nn.Linear(channels, hidden)
        self.act = nn.GELU()
        self.expand = nn.Linear(hidden, channels)

    def excite(self, pooled: torch.Tensor) -> torch.Tensor:
        """(batch, K, C) token-means of the normalised outputs -> (batch, K, C) multipliers in (0, 1)."""
        return torch.sigmoid(self.expand(self.act(self.reduce(pooled))))

    def spec(self) -> scan2d.ChannelGate:
        return scan2d.ChannelGate(self.norm.weight, self.norm.bias, self.norm.eps, self.excite)
