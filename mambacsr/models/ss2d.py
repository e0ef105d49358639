"""The 2D selective-scan layer: SS2D (MambaIR) and LW-SS2D (MambaCSR, windowed scans with a channel gate).

    x -> in_proj -> [u | z];  u -> depthwise Conv3x3 -> SiLU -> scan in K directions -> (gate) -> sum
      -> LayerNorm -> * SiLU(z) -> out_proj

The whole "permute + scan + merge" is one call to :func:`scan2d.directional_scan`, so the fused Triton kernels
replace the PyTorch path without touching this module.  With ``cross_scale=True`` the layer also takes the
half-resolution features, projects them with their own input projection and depthwise conv, and scans both scales
together (the position-aligned cross-scale scan); only high-resolution tokens come out.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

import scan2d

from .layers import ChannelGate
from .released_layout import directional_scan_as_released
from .ssm_params import DirectionalSSMParams


def _depthwise_conv(channels: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=True)


class SS2D(nn.Module):
    """2D selective scan over K directions.

    Args:
        dim: token channels (180).  d_state: N (16).  expand: inner channels = expand * dim (360).
        directions: the K :class:`scan2d.ScanDirection` of this layer.
        channel_gate: gate each direction's output before the sum (LW-SS2D) or not (MambaIR's SS2D).
        cross_scale: also scan half-resolution tokens (all directions must then be cross-scale).
        backend: scan backend, "auto" | "torch" | "triton".
        released_layout: in a cross-scale layer, put the column-first directions' outputs where the released code
            puts them on non-square maps (:mod:`.released_layout`), to run the authors' weights as they ran.
    """

    def __init__(self, dim: int, directions: Sequence[scan2d.ScanDirection], d_state: int = 16, expand: float = 2.0,
                 channel_gate: bool = True, cross_scale: bool = False, backend: str = "auto",
                 released_layout: bool = False):
        super().__init__()
        inner = int(expand * dim)
        self.directions = tuple(directions)
        if cross_scale != all(d.cross_scale is not None for d in self.directions):
            raise ValueError(
                f"cross_scale={cross_scale} but directions are {[d.name for d in self.directions]} with cross-scale "
                f"modes {[d.cross_scale for d in self.directions]}; they must agree."
            )
        self.backend = backend
        self.released_layout = released_layout
        self.in_proj = nn.Linear(dim, 2 * inner, bias=False)
        self.conv = _depthwise_conv(inner)
        self.act = nn.SiLU()
        self.ssm = DirectionalSSMParams(len(self.directions), inner, d_state, dt_rank=math.ceil(dim / 16))
        self.gate = ChannelGate(inner) if channel_gate else None
        if cross_scale:
            # Only the u half: the released code computes a z half for the low-resolution tokens and never uses it.
            self.in_proj_low = nn.Linear(dim, inner, bias=False)
            self.conv_low = _depthwise_conv(inner)
        self.out_norm = nn.LayerNorm(inner)
        self.out_proj = nn.Linear(inner, dim, bias=False)

    def _conv_tokens(self, conv: nn.Conv2d, u: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> depthwise conv + SiLU -> (B, H*W, C) channels-last tokens."""
        u = self.act(conv(u.permute(0, 3, 1, 2)))
        return u.permute(0, 2, 3, 1).flatten(1, 2)

    def forward(self, x: torch.Tensor, x_low: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (B, H, W, dim); x_low: (B, ceil(H/2), ceil(W/2), dim) for a cross-scale layer.  Returns (B, H, W, dim)."""
        dim = self.in_proj.in_features
        if x.dim() != 4 or x.shape[-1] != dim:
            hint = ": for (B, C, H, W) input pass x.permute(0, 2, 3, 1)" if x.dim() == 4 and x.shape[1] == dim else ""
            raise ValueError(f"SS2D({dim}) takes channels-last (B, H, W, {dim}) input, got {tuple(x.shape)}{hint}.")
        batch, height, width, _ = x.shape
        u, z = self.in_proj(x).chunk(2, dim=-1)
        u = self._conv_tokens(self.conv, u)
        u_low = xdbl_low = None
        if x_low is not None:
            u_low = self._conv_tokens(self.conv_low, self.in_proj_low(x_low))
            xdbl_low = self.ssm.project(u_low)
        scan = directional_scan_as_released if self.released_layout else scan2d.directional_scan
        y = scan(
            u, self.ssm.project(u), self.ssm.dt_proj_weight, self.ssm.dt_proj_bias, self.ssm.A(), self.ssm.D,
            self.directions, height, width, u_low=u_low, xdbl_low=xdbl_low,
            gate=self.gate.spec() if self.gate is not None else None, backend=self.backend,
        )
        y = self.out_norm(y).view(batch, height, width, -1) * self.act(z)
        return self.out_proj(y)

    def extra_repr(self) -> str:
        return "directions=[" + ", ".join(d.name + (f"/{d.cross_scale}" if d.cross_scale else "")
                                          for d in self.directions) + "]"
