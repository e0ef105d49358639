"""PyTorch path of the directional scan: gather every direction's sequence, scan, put back, gate, sum.

This materialises the permuted copies and per-direction outputs that the fused Triton kernels avoid; it is the
reference the kernels are tested against and the path that runs on the CPU.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..directions import ScanDirection, gather_index
from ..selective_scan.chunked import selective_scan_chunked
from .gate import ChannelGate


def scan_directions_raster(
    u: torch.Tensor,
    xdbl: torch.Tensor,
    dt_weight: torch.Tensor,
    dt_bias: torch.Tensor,
    A: torch.Tensor,
    D: torch.Tensor,
    directions: Sequence[ScanDirection],
    height: int,
    width: int,
    u_low: Optional[torch.Tensor] = None,
    xdbl_low: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Each direction's scan output in raster order, (batch, K, height * width, dim).  Shapes as in
    :func:`scan2d.directional_scan`."""
    batch, length, dim = u.shape
    K, rank = len(directions), dt_weight.shape[-1]
    n_state = A.shape[-1]
    if u_low is not None:
        u = torch.cat([u, u_low], dim=1)
        xdbl = torch.cat([xdbl, xdbl_low], dim=1)
    index = torch.stack([gather_index(d, height, width, u.device) for d in directions])  # (K, T)
    steps = index.shape[1]
    u_seq = u[:, index]  # (batch, K, T, dim)
    proj = xdbl[:, index, torch.arange(K, device=u.device)[:, None]]  # (batch, K, T, rank + 2N)
    dt_low, B, C = torch.split(proj, [rank, n_state, n_state], dim=-1)
    delta = torch.einsum("bktr,kdr->bkdt", dt_low, dt_weight)
    ys = selective_scan_chunked(
        u_seq.permute(0, 1, 3, 2).reshape(batch, K * dim, steps),
        delta.reshape(batch, K * dim, steps),
        A.reshape(K * dim, n_state),
        B.permute(0, 1, 3, 2),
        C.permute(0, 1, 3, 2),
        D.reshape(K * dim),
        delta_bias=dt_bias.reshape(K * dim),
        delta_softplus=True,
    ).view(batch, K, dim, steps)
    inverse = torch.stack([d.inverse(height, width, u.device) for d in directions])  # (K, L)
    ys = ys.gather(3, inverse[None, :, None, :].expand(batch, K, dim, length))
    return ys.transpose(2, 3)


def directional_scan_torch(u, xdbl, dt_weight, dt_bias, A, D, directions, height, width, u_low=None,
                           xdbl_low=None, gate: Optional[ChannelGate] = None,
                           direction_weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    ys = scan_directions_raster(u, xdbl, dt_weight, dt_bias, A, D, directions, height, width, u_low, xdbl_low)
    weights = direction_weights
    if gate is not None:
        weights = gate.excite(gate.pool(ys)) * (1 if weights is None else weights)  # (batch, K, dim)
    if weights is None:
        return ys.sum(dim=1)
    return (ys * weights.unsqueeze(2).to(ys.dtype)).sum(dim=1)
