"""Residual blocks: RLMB (MambaCSR), the MambaIR block, and the cross-scale fusion block.  Tokens are
channels-last (B, H, W, C) throughout."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

import scan2d

from .layers import CAB, DropPath, Mlp
from .ss2d import SS2D


class RLMB(nn.Module):
    """Residual Local Mamba Block.

        h = LN1(x);  x = s1 * x + drop_path(LW-SS2D(h)) + cab_scale * CAB(h)
        x = s2 * x + drop_path(MLP(LN2(x)))

    CAB here is the released code's small one (compress 24, squeeze 24: 180 -> 7 -> 180), weighted by 0.01.
    """

    def __init__(self, dim: int, directions: Sequence[scan2d.ScanDirection], d_state: int = 16,
                 mlp_ratio: float = 2.0, drop_path: float = 0.0, cab: bool = True, cab_compress: int = 24,
                 cab_squeeze: int = 24, cab_scale: float = 0.01, backend: str = "auto"):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.ss2d = SS2D(dim, directions, d_state, channel_gate=True, backend=backend)
        self.skip_scale = nn.Parameter(torch.ones(dim))
        self.cab = CAB(dim, cab_compress, cab_squeeze) if cab else None
        self.cab_scale = cab_scale
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.skip_scale2 = nn.Parameter(torch.ones(dim))
        self.mlp = Mlp(dim, int(mlp_ratio * dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        out = x * self.skip_scale + self.drop_path(self.ss2d(h))
        if self.cab is not None:
            out = out + self.cab_scale * self.cab(h)
        return out * self.skip_scale2 + self.drop_path(self.mlp(self.norm2(out)))


class MambaIRBlock(nn.Module):
    """MambaIR's residual state-space block: ``x = s1*x + SS2D(LN1(x)); x = s2*x + CAB(LN2(x))``, no MLP,
    SS2D without channel gate, CAB 180 -> 60 -> 180 with squeeze 30."""

    def __init__(self, dim: int, directions: Sequence[scan2d.ScanDirection], d_state: int = 16,
                 drop_path: float = 0.0, cab_compress: int = 3, cab_squeeze: int = 30, backend: str = "auto"):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.ss2d = SS2D(dim, directions, d_state, channel_gate=False, backend=backend)
        self.skip_scale = nn.Parameter(torch.ones(dim))
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim)
        self.skip_scale2 = nn.Parameter(torch.ones(dim))
        self.cab = CAB(dim, cab_compress, cab_squeeze)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.skip_scale + self.drop_path(self.ss2d(self.norm1(x)))
        return x * self.skip_scale2 + self.cab(self.norm2(x))


class CrossScaleBlock(nn.Module):
    """Fuses the half-resolution branch into the main features with one cross-scale scan layer.

        out = s1 * x + CrossSS2D(LN1(x), x_low);   out = s2 * out + MLP(LN2(out))

    x_low is not normalised here (it leaves the low-resolution group as is).  No CAB, no drop-path.
    ``released_layout``: see :class:`SS2D`.
    """

    def __init__(self, dim: int, directions: Sequence[scan2d.ScanDirection], d_state: int = 16,
                 mlp_ratio: float = 4.0, backend: str = "auto", released_layout: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.ss2d = SS2D(dim, directions, d_state, channel_gate=True, cross_scale=True, backend=backend,
                         released_layout=released_layout)
        self.skip_scale = nn.Parameter(torch.ones(dim))
        self.norm2 = nn.LayerNorm(dim)
        self.skip_scale2 = nn.Parameter(torch.ones(dim))
        self.mlp = Mlp(dim, int(mlp_ratio * dim))

    def forward(self, x: torch.Tensor, x_low: torch.Tensor) -> torch.Tensor:
        out = x * self.skip_scale + self.ss2d(self.norm1(x), x_low)
        return out * self.skip_scale2 + self.mlp(self.norm2(out))


class RLMG(nn.Module):
    """Residual group: blocks, then Conv3x3, plus the group input.  x: (B, H, W, C)."""

    def __init__(self, blocks: Sequence[nn.Module], dim: int):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for block in self.blocks:
            h = block(h)
        return self.conv(h.permute(0, 3, 1, 2)).permute(0, 2, 3, 1) + x
