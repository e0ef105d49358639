"""The PyTorch selective scan: vectorised over batch, channels and state, chunked along the sequence.

The sequence is cut into chunks of ``chunk_size`` steps.  Inside a chunk the linear recurrence
``h_t = a_t * h_{t-1} + b_t`` is solved in two levels (:func:`_linear_recurrence`: blocks of a few steps scanned
side by side, then the state carried from block to block; O(T) work and only products of decays <= 1, so it cannot
overflow the way an ``exp(-cumsum)`` trick does); chunks run one after the other, carrying the float32 state.  Only
one chunk's (batch, dim, chunk, N) tensors exist at a time.  The backward (hand-written, see :class:`_ChunkedScan`)
recomputes one chunk at a time from the stored chunk-entry states, so memory stays
O(batch * dim * (L + N * L / chunk_size)) instead of O(batch * dim * L * N).  (torch.utils.checkpoint was tried
first: in torch 2.13 it kept every chunk's temporaries alive during the forward.)
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

LOG2E = math.log2(math.e)
MIN_CHUNK, MAX_CHUNK = 16, 256
CHUNK_ELEMENTS = 1 << 22  # at most about 16 MB of float32 per (batch, dim, chunk, N) temporary
LONG_CHUNK, LONG_CHUNK_ELEMENTS = 64, 1 << 20  # past 64 steps, only while a temporary stays under 4 MB


def default_chunk_size(batch: int, dim: int, n_state: int) -> int:
    """Longest power-of-two chunk, from MIN_CHUNK to MAX_CHUNK steps, whose temporaries stay within CHUNK_ELEMENTS,
    and past LONG_CHUNK steps within LONG_CHUNK_ELEMENTS.  Long chunks amortise the Python overhead per chunk on
    small layers, short ones bound memory on wide layers.  On the 2-core CI machine (32 MB of L3), for the model's
    layers (720 scanned channels, N = 16), 64 steps ran fastest at batch 1 and 4, and 32 at batch 8 (forward+backward):
    longer chunks leave the cache, shorter ones cost more operations (bench/README.md, "CPU results")."""
    per_step = max(1, batch * dim * n_state)
    size = MIN_CHUNK
    while size * 2 <= MAX_CHUNK and size * 2 * per_step <= (
            CHUNK_ELEMENTS if size * 2 <= LONG_CHUNK else LONG_CHUNK_ELEMENTS):
        size *= 2
    return size


def _block_steps(steps: int) -> int:
    """Steps per block of :func:`_linear_recurrence`: the smallest power of two at least sqrt(steps / 2), near the
    fewest vectorised operations ((block - 1) steps inside the blocks, steps / block carries between them)."""
    block = 1
    while 2 * block * block < steps:
        block *= 2
    return block


def _linear_recurrence(h0: torch.Tensor, decay: torch.Tensor, drive: torch.Tensor,
                       reverse: bool = False) -> torch.Tensor:
    """All states of ``h_t = decay_t * h_{t-1} + drive_t`` along dim -2, or with ``reverse`` of
    ``h_t = decay_t * h_{t+1} + drive_t`` from the last step back (``h0`` then enters after the last step).

    Runs without autograd (the caller's autograd.Function owns the backward) and in place: the caller hands over
    ``decay`` and ``drive`` as scratch.  The steps are cut into blocks of :func:`_block_steps` steps; every block is
    scanned from a zero state, all blocks at once, one step at a time, keeping each step's product of the decays
    since its block began; then the state is carried from block to block, and each step adds its product times the
    state entering its block.  That is O(T) work in about 2 sqrt(2T) vectorised operations, where the Hillis-Steele
    doubling it replaced did O(T log T) (bench/README.md, "CPU results").

    Args:
        h0: (..., N) state before the first step (after the last with ``reverse``).
        decay, drive: (..., T, N), the caller's own tensors (not views of its inputs): both are overwritten.
    Returns:
        (..., T, N) states h_1..h_T, in ``drive``'s storage when T is a multiple of the block.
    """
    steps = drive.shape[-2]
    block = _block_steps(steps)
    pad = -steps % block
    if pad:  # steps that change nothing: decay 1, drive 0 (after the last step in either direction)
        decay = F.pad(decay, (0, 0, 0, pad), value=1.0)
        drive = F.pad(drive, (0, 0, 0, pad))
    blocks = (steps + pad) // block
    states = drive.unflatten(-2, (blocks, block))  # (..., blocks, block, N)
    products = decay.unflatten(-2, (blocks, block))
    inner = range(block - 2, -1, -1) if reverse else range(1, block)
    prev = 1 if reverse else -1
    for r in inner:
        states[..., r, :].addcmul_(products[..., r, :], states[..., r + prev, :])
        products[..., r, :].mul_(products[..., r + prev, :])
    entering = torch.empty_like(states[..., 0, :])  # (..., blocks, N): the state entering each block
    last = 0 if reverse else -1
    h = h0
    for b in (range(blocks - 1, -1, -1) if reverse else range(blocks)):
        entering[..., b, :] = h
        h = torch.addcmul(states[..., b, last, :], products[..., b, last, :], h)
    states.addcmul_(products, entering.unsqueeze(-2))
    return states.flatten(-3, -2)[..., :steps, :]


def _chunk_inputs(u, delta, A_log2, B, sl):
    """Decays exp(delta*A) and drives delta*B*u of one chunk, (batch, G, dim/G, T, N).  ``A_log2`` is A * log2(e):
    PyTorch's exp2 on the CPU takes half exp's time (200 against 410 us on a chunk of 737K float32 elements, AVX2),
    and the decays are the scan's largest elementwise cost."""
    d = delta[..., sl]
    decay = torch.exp2(d.unsqueeze(-1) * A_log2.unsqueeze(-2))
    drive = (d * u[..., sl]).unsqueeze(-1) * B[..., sl, :]
    return decay, drive


class _ChunkedScan(torch.autograd.Function):
    """The recurrence y_t = C_t . h_t with h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t, chunk by chunk.

    Forward keeps only the state entering each chunk; backward walks the chunks from the end, recomputes one
    chunk's states from its stored entry state and runs the adjoint recurrence
    g_t = C_t dy_t + exp(delta_{t+1} A) g_{t+1}.  Because exp(delta_t A) h_{t-1} = h_t - delta_t B_t u_t, the
    gradients need h_t only, never a division by a decay.

    Shapes: u, delta (batch, G, dim/G, L) with delta already biased and softplus-ed; A (G, dim/G, N);
    B, C (batch, G, 1, L, N).  Output y (batch, G, dim/G, L) and the last state (batch, G, dim/G, N).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, chunk_size):
        length = u.shape[-1]
        h = u.new_zeros(u.shape[:-1] + (A.shape[-1],))
        A_log2 = A * LOG2E
        y = torch.empty_like(u)  # written chunk by chunk: no list of chunk outputs beside a concatenated copy
        entry_states = []
        for start in range(0, length, chunk_size):
            sl = slice(start, start + chunk_size)
            entry_states.append(h)
            decay, drive = _chunk_inputs(u, delta, A_log2, B, sl)
            states = _linear_recurrence(h, decay, drive)
            y[..., sl] = torch.linalg.vecdot(states, C[..., sl, :])
            h = states[..., -1, :].clone()
        ctx.chunk_size = chunk_size
        if not entry_states:  # an empty sequence: no chunks, an empty output and the zero state
            entry_states = [h[..., :0, :]]
        ctx.save_for_backward(u, delta, A, B, C, torch.stack(entry_states, dim=-2))
        return y, h

    @staticmethod
    def backward(ctx, dy, dlast):
        u, delta, A, B, C, entry_states = ctx.saved_tensors
        chunk_size, length = ctx.chunk_size, u.shape[-1]
        du, ddelta = torch.empty_like(u), torch.empty_like(delta)
        dB, dC = torch.empty_like(B), torch.empty_like(C)
        dA = torch.zeros_like(A)
        A_log2 = A * LOG2E
        g_next = dlast if dlast is not None else torch.zeros_like(entry_states[..., 0, :])
        starts = list(range(0, length, chunk_size))
        for index in reversed(range(len(starts))):
            sl = slice(starts[index], starts[index] + chunk_size)
            decay, drive = _chunk_inputs(u, delta, A_log2, B, sl)
            d, uu = delta[..., sl], u[..., sl]
            # The adjoint's decays (g_t = C_t dy_t + decay_{t+1} g_{t+1}), before the states overwrite decay.
            back_decay = torch.cat([decay[..., 1:, :], torch.ones_like(decay[..., :1, :])], dim=-2)
            first_decay = decay[..., 0, :].clone()
            states = _linear_recurrence(entry_states[..., index, :], decay, drive)
            g = _linear_recurrence(g_next, back_decay, dy[..., sl].unsqueeze(-1) * C[..., sl, :], reverse=True)
            scaled_u = (d * uu).unsqueeze(-1)
            g_decayed = g * torch.addcmul(states, scaled_u, B[..., sl, :], value=-1)  # g_t exp(delta_t A) h_{t-1}
            gB = torch.linalg.vecdot(g, B[..., sl, :])
            ddelta[..., sl] = gB * uu + torch.linalg.vecdot(g_decayed, A.unsqueeze(-2))
            du[..., sl] = gB * d
            dB[..., sl, :] = (g * scaled_u).sum(2, keepdim=True)
            dC[..., sl, :] = (states * dy[..., sl].unsqueeze(-1)).sum(2, keepdim=True)
            dA += (g_decayed * d.unsqueeze(-1)).sum(dim=(0, 3))
            g_next = g[..., 0, :] * first_decay
        return du, ddelta, dA, dB, dC, None


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
    n_state = A.shape[1]
    A_c = A.to(compute).view(groups, per_group, n_state)
    # (batch, G, N, L) -> (batch, G, 1, L, N), copied so that a step's N states are adjacent: every chunk op
    # broadcasts them over the channels, which on mamba-ssm's layout (N a row of L apart) ran 1.5-1.9x slower.
    B_c = B.to(compute).view(batch, groups, n_state, length).transpose(-1, -2).contiguous().unsqueeze(2)
    C_c = C.to(compute).view(batch, groups, n_state, length).transpose(-1, -2).contiguous().unsqueeze(2)

    out, h = _ChunkedScan.apply(u_c, delta, A_c, B_c, C_c, chunk_size)
    out = out.reshape(batch, dim, length)
    if D is not None:
        out = out.addcmul_(u.to(compute), D.to(compute)[:, None])  # in place: out is the scan's own, fresh tensor
    if z is not None:
        out = out * F.silu(z.to(compute))
    out = out.to(u.dtype)
    if return_last_state:
        return out, h.reshape(batch, dim, n_state)
    return out
