"""The PyTorch selective scan: vectorised over batch, channels and state, chunked along the sequence.

The sequence is cut into chunks of ``chunk_size`` steps.  Inside a chunk the linear recurrence
``h_t = a_t * h_{t-1} + b_t`` is solved with a Hillis-Steele scan (log2(chunk_size) vectorised steps, each a
product of decays <= 1, so it cannot overflow the way an ``exp(-cumsum)`` trick does); chunks run one after the
other, carrying the float32 state.  Only one chunk's (batch, dim, chunk, N) tensors exist at a time.  Under autograd
every chunk is checkpointed: the forward keeps the chunk-start states, the backward recomputes one chunk at a time,
so memory stays O(batch * dim * (L + N * L / chunk_size)) instead of O(batch * dim * L * N).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

MIN_CHUNK, MAX_CHUNK = 16, 256
CHUNK_ELEMENTS = 1 << 20  # about 4 MB of float32 per (batch, dim, chunk, N) temporary


def default_chunk_size(batch: int, dim: int, n_state: int) -> int:
    """Largest power-of-two chunk whose temporaries stay near CHUNK_ELEMENTS: long chunks amortise the Python
    overhead per chunk on small layers, short ones bound memory on wide layers."""
    target = CHUNK_ELEMENTS // max(1, batch * dim * n_state)
    size = MIN_CHUNK
    while size * 2 <= min(target, MAX_CHUNK):
        size *= 2
    return size


def _linear_recurrence(h0: torch.Tensor, decay: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    """All states of ``h_t = decay_t * h_{t-1} + drive_t`` along dim -2.

    Args:
        h0: (..., N) state before the first step.
        decay, drive: (..., T, N).
    Returns:
        (..., T, N) states h_1..h_T.
    """
    drive = torch.cat([drive[..., :1, :] + decay[..., :1, :] * h0.unsqueeze(-2), drive[..., 1:, :]], dim=-2)
    steps = drive.shape[-2]
    offset = 1
    while offset < steps:
        drive = torch.cat(
            [drive[..., :offset, :], drive[..., offset:, :] + decay[..., offset:, :] * drive[..., :-offset, :]],
            dim=-2,
        )
        if offset * 2 < steps:
            decay = torch.cat([decay[..., :offset, :], decay[..., offset:, :] * decay[..., :-offset, :]], dim=-2)
        offset *= 2
    return drive


def _scan_chunk(h0, u, delta, A, B, C):
    """One chunk of the recurrence.

    Args:
        h0: (batch, G, dim/G, N) state entering the chunk.
        u, delta: (batch, G, dim/G, T) with delta already biased and softplus-ed.
        A: (G, dim/G, N).  B, C: (batch, G, 1, T, N).
    Returns:
        y (batch, G, dim/G, T) without the D skip, and the state after the chunk.
    """
    decay = torch.exp(delta.unsqueeze(-1) * A.unsqueeze(-2))
    drive = (delta * u).unsqueeze(-1) * B
    states = _linear_recurrence(h0, decay, drive)
    y = (states * C).sum(-1)
    return y, states[..., -1, :]


def selective_scan_chunked(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                           return_last_state=False, chunk_size: Optional[int] = None):
    """Selective scan on the PyTorch path (same arguments and semantics as :func:`scan2d.selective_scan`).

    Computes in float32 (float64 inputs stay float64) and returns ``out`` in ``u.dtype``.
    """
    batch, dim, length = u.shape
    compute = torch.promote_types(u.dtype, torch.float32)
    groups = 1 if B.dim() == 3 else B.shape[1]
    per_group = dim // groups
    chunk_size = chunk_size or default_chunk_size(batch, dim, A.shape[1])

    delta = delta.to(compute)
    if delta_bias is not None:
        delta = delta + delta_bias.to(compute)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    u_c = u.to(compute).view(batch, groups, per_group, length)
    delta = delta.view(batch, groups, per_group, length)
    A_c = A.to(compute).view(groups, per_group, -1)
    # (batch, G, N, L) -> (batch, G, 1, L, N): state last, so every chunk op is contiguous in N.
    B_c = B.to(compute).view(batch, groups, -1, length).transpose(-1, -2).unsqueeze(2)
    C_c = C.to(compute).view(batch, groups, -1, length).transpose(-1, -2).unsqueeze(2)

    recompute = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (u, delta, A, B, C)
    )
    h = u_c.new_zeros(batch, groups, per_group, A.shape[1])
    ys = []
    for start in range(0, length, chunk_size):
        sl = slice(start, start + chunk_size)
        args = (h, u_c[..., sl], delta[..., sl], A_c, B_c[..., sl, :], C_c[..., sl, :])
        if recompute:
            y, h = checkpoint(_scan_chunk, *args, use_reentrant=False)
        else:
            y, h = _scan_chunk(*args)
        ys.append(y)
    out = torch.cat(ys, dim=-1).view(batch, dim, length)
    if D is not None:
        out = out + u.to(compute) * D.to(compute)[:, None]
    if z is not None:
        out = out * F.silu(z.to(compute))
    out = out.to(u.dtype)
    if return_last_state:
        return out, h.reshape(batch, dim, -1)
    return out
