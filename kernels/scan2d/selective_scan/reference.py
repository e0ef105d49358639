"""Step-by-step selective scan: the plain definition, one time step at a time, used as ground truth by the tests.

It follows mamba-ssm's ``selective_scan_ref`` semantics:

    delta' = softplus(delta + delta_bias)        (softplus only when delta_softplus)
    h_t    = exp(delta'_t * A) * h_{t-1} + delta'_t * B_t * u_t
    y_t    = sum_n C_t[n] * h_t[n] + D * u_t
    out    = y * silu(z)                          (only when z is given)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def expand_groups(BC: torch.Tensor, dim: int) -> torch.Tensor:
    """(batch, N, L) or (batch, G, N, L) -> (batch, dim, N, L), each group repeated over dim // G channels."""
    if BC.dim() == 3:
        BC = BC.unsqueeze(1)
    return BC.repeat_interleave(dim // BC.shape[1], dim=1)


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False, dtype=torch.float64):
    """Reference selective scan computed in ``dtype`` (float64 by default) with a Python loop over time.

    Args:
        u, delta: (batch, dim, L).  A: (dim, N).  B, C: (batch, N, L) or (batch, G, N, L).
        D, delta_bias: (dim,).  z: (batch, dim, L).
    Returns:
        out (batch, dim, L) in ``dtype``; with ``return_last_state`` also the final state (batch, dim, N).
    """
    u, delta, A = u.to(dtype), delta.to(dtype), A.to(dtype)
    dim = u.shape[1]
    B, C = expand_groups(B.to(dtype), dim), expand_groups(C.to(dtype), dim)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    h = u.new_zeros(u.shape[0], dim, A.shape[1])
    ys = []
    for t in range(u.shape[2]):
        h = torch.exp(delta[:, :, t, None] * A) * h + (delta[:, :, t] * u[:, :, t])[..., None] * B[..., t]
        ys.append((h * C[..., t]).sum(-1))
    out = torch.stack(ys, dim=2)
    if D is not None:
        out = out + u * D.to(dtype)[:, None]
    if z is not None:
        out = out * F.silu(z.to(dtype))
    return (out, h) if return_last_state else out
