"""The states-across-lanes one-pass forward in Gluon: every layout chosen, none left to Triton.

``one_pass_compile.one_pass_forward_kernel`` with all N states in one trip (``STATES_ACROSS_LANES``) puts each
(state, channel) pair on a thread with its tile's steps in registers, but Triton picks the layout of everything else:
the dt projection and softplus run on every thread for its pair's channel, 16 times over, and B, C and the (step,
channel) values reach the states' layout through shared memory with barriers and address arithmetic (bench/JOURNAL.md,
"The states across the lanes in the op": 20-33 SASS instructions per element).  This kernel does the same work with
two layouts of its own (``scan2d.triton.one_pass_gluon.lanes_layouts``, the op's kernel's):

- ``TILE`` for the (steps, states, channels) recurrence: a thread holds one or more (state, channel) pairs and all the
  tile's steps, the states across the lanes, the channels across lanes and warps;
- ``ROWS`` for the (step, channel) work: one (step, channel) a thread, its dt ranks (and in ``ROWS`` too, y's N
  states) in its registers, so the projection, softplus and u are computed once per (step, channel);

and converts between them twice a tile: delta and delta * u into ``TILE`` (each thread takes its channel's steps), and
the products C h into ``ROWS``, where the sum over the states is a thread's own. B and C are read straight into
``TILE`` (each thread reads its state's column). Strides are constexprs, so every load's address is a register plus
an immediate. Under the interpreter ``gluon_lang`` runs the same source with the layouts dropped; that is how CI
checks it (``tests/test_one_pass_prototype.py``).
"""

from __future__ import annotations

import triton
import triton.language as tl

from scan2d.triton.gluon_lang import gl, jit
from scan2d.triton.one_pass_gluon import lanes_layouts
from scan2d.triton.recurrence import LOG2E, combine
from scan2d.triton.tile_io import softplus


@jit
def gluon_lanes_kernel(u_ptr, x_ptr, w_ptr, bias_ptr, A_ptr, Dskip_ptr, y_ptr, L, Dm: tl.constexpr,
                       s_xl: tl.constexpr, R: tl.constexpr, RP: tl.constexpr, N: tl.constexpr,
                       BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, TILE: tl.constexpr, ROWS: tl.constexpr):
    """y = selective scan of one raster-order direction, one program per (batch, BLOCK_D channels) over all L steps.

    u, y: (batch, L, Dm) contiguous; x: (batch, L, R + 2N) rows [dt_low | B | C], s_xl apart; w: (Dm, R); bias, Dskip:
    (Dm,); A: (Dm, N).  RP: R's next power of two.  TILE: a layout of (BLOCK_T, N, BLOCK_D) with dim 0 in each
    thread's registers; ROWS: a layout of (BLOCK_T, any, BLOCK_D) with dim 1 in each thread's registers.
    """
    TN: gl.constexpr = gl.SliceLayout(2, TILE)  # (steps, states): B and C
    ND: gl.constexpr = gl.SliceLayout(0, TILE)  # (states, channels): A, the state between tiles
    STEPCH: gl.constexpr = gl.SliceLayout(1, ROWS)  # (steps, channels): one pair a thread
    TR: gl.constexpr = gl.SliceLayout(2, ROWS)  # (steps, ranks)
    RD: gl.constexpr = gl.SliceLayout(0, ROWS)  # (ranks, channels)
    b = gl.program_id(0)
    d0 = gl.program_id(1) * BLOCK_D

    n_nd = gl.arange(0, N, layout=gl.SliceLayout(1, ND))
    d_nd = d0 + gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, ND))
    a = gl.load(A_ptr + d_nd[None, :] * N + n_nd[:, None], mask=(d_nd < Dm)[None, :], other=0.0) * LOG2E
    r_rd = gl.arange(0, RP, layout=gl.SliceLayout(1, RD))
    d_rd = d0 + gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, RD))
    w = gl.load(w_ptr + d_rd[None, :] * R + r_rd[:, None], mask=(r_rd < R)[:, None] & (d_rd < Dm)[None, :],
                other=0.0)
    t_sc = gl.arange(0, BLOCK_T, layout=gl.SliceLayout(1, STEPCH))
    d_sc = d0 + gl.arange(0, BLOCK_D, layout=gl.SliceLayout(0, STEPCH))
    dmask = d_sc < Dm
    bias = gl.load(bias_ptr + d_sc, mask=dmask, other=0.0)
    Dk = gl.load(Dskip_ptr + d_sc, mask=dmask, other=0.0)
    t_tr = gl.arange(0, BLOCK_T, layout=gl.SliceLayout(1, TR))
    r_tr = gl.arange(0, RP, layout=gl.SliceLayout(0, TR))
    t_tn = gl.arange(0, BLOCK_T, layout=gl.SliceLayout(1, TN))
    n_tn = gl.arange(0, N, layout=gl.SliceLayout(0, TN))
    # Each tile adds one scalar row offset to these; the steps' and columns' offsets stay in registers.
    off_tr = t_tr[:, None] * s_xl + r_tr[None, :]
    off_tn = t_tn[:, None] * s_xl + n_tn[None, :]
    off_sc = t_sc[:, None] * Dm + d_sc[None, :]
    h = gl.zeros([N, BLOCK_D], gl.float32, ND)
    full_tiles = L // BLOCK_T
    for tile in range(0, full_tiles):  # no step masks: every load of a full tile is in bounds
        h = _tile(u_ptr, x_ptr, y_ptr, b * L + tile * BLOCK_T, BLOCK_T, off_tr, off_tn, off_sc, t_tr, t_tn, t_sc,
                  dmask, r_tr < R, w, bias, Dk, a, h, Dm, s_xl, R, N, BLOCK_T, False, TILE, ROWS)
    if full_tiles * BLOCK_T < L:
        _tile(u_ptr, x_ptr, y_ptr, b * L + full_tiles * BLOCK_T, L - full_tiles * BLOCK_T, off_tr, off_tn, off_sc,
              t_tr, t_tn, t_sc, dmask, r_tr < R, w, bias, Dk, a, h, Dm, s_xl, R, N, BLOCK_T, True, TILE, ROWS)


@jit
def _tile(u_ptr, x_ptr, y_ptr, row0, steps, off_tr, off_tn, off_sc, t_tr, t_tn, t_sc, dmask, rmask, w, bias, Dk, a,
          h_in, Dm: tl.constexpr, s_xl: tl.constexpr, R: tl.constexpr, N: tl.constexpr, BLOCK_T: tl.constexpr,
          MASK_STEPS: tl.constexpr, TILE: tl.constexpr, ROWS: tl.constexpr):
    """One tile of ``steps`` steps from row ``row0`` of the flattened (batch, L): writes its outputs, returns the
    (N, BLOCK_D) state after its last step."""
    TD: gl.constexpr = gl.SliceLayout(1, TILE)
    xb = x_ptr + row0.to(gl.int64) * s_xl
    if MASK_STEPS:
        m_tr = (t_tr < steps)[:, None] & rmask[None, :]
        m_tn = (t_tn < steps)[:, None]
        m_sc = (t_sc < steps)[:, None] & dmask[None, :]
    else:
        m_tr = rmask[None, :]
        m_sc = dmask[None, :]
    # The (step, channel) work, one pair a thread: dt low-rank projection (the ranks in registers), softplus, du.
    xr = gl.load(xb + off_tr, mask=m_tr, other=0.0)
    delta = softplus(gl.sum(gl.expand_dims(xr, 2) * gl.expand_dims(w, 0), axis=1) + bias[None, :])
    if MASK_STEPS:
        delta = gl.where(m_sc, delta, 0.0)  # past the end: no decay, no input
    u = gl.load(u_ptr + row0.to(gl.int64) * Dm + off_sc, mask=m_sc, other=0.0)
    delta3 = gl.expand_dims(gl.convert_layout(delta, TD), 1)
    du3 = gl.expand_dims(gl.convert_layout(delta * u, TD), 1)
    if MASK_STEPS:
        Bm = gl.expand_dims(gl.load(xb + R + off_tn, mask=m_tn, other=0.0), 2)
        Cm = gl.expand_dims(gl.load(xb + R + N + off_tn, mask=m_tn, other=0.0), 2)
    else:
        Bm = gl.expand_dims(gl.load(xb + R + off_tn), 2)
        Cm = gl.expand_dims(gl.load(xb + R + N + off_tn), 2)
    # The recurrence, each thread's steps in its registers; the state entering the tile joins its first step.
    decay = gl.exp2(delta3 * gl.expand_dims(a, 0))
    first = gl.expand_dims(gl.expand_dims(t_tn == 0, 1), 2)
    drive = du3 * Bm
    drive = gl.where(first, drive + decay * gl.expand_dims(h_in, 0), drive)
    _, h = gl.associative_scan((decay, drive), 0, combine)
    # y: the products C h moved to one (step, channel) a thread, summed over the states in its registers.
    y = gl.sum(gl.convert_layout(h * Cm, ROWS), axis=1)
    gl.store(y_ptr + row0.to(gl.int64) * Dm + off_sc, y + u * Dk[None, :], mask=m_sc)
    # The last step's state: -0.0 elsewhere, so the sum folds to that one register.
    last = gl.expand_dims(gl.expand_dims(t_tn == BLOCK_T - 1, 1), 2)
    return gl.sum(gl.where(last, h, -0.0), axis=0)


def launch(inp: dict, R: int, N: int, block_d: int, warps: int, block_t: int = 16):
    """``gluon_lanes_kernel`` on ``one_pass_compile.inputs``: y (batch, L, Dm)."""
    import torch

    u, x = inp["u"], inp["x"]
    batch, L, Dm = u.shape
    if u.stride() != (L * Dm, Dm, 1) or x.stride(2) != 1:
        raise ValueError("the Gluon prototype needs contiguous u and x rows")
    tile, rows = lanes_layouts(block_d, warps, N, block_t)
    y = torch.empty_like(u)
    gluon_lanes_kernel[(batch, triton.cdiv(Dm, block_d))](
        u, x, inp["w"], inp["bias"], inp["A"], inp["Dk"], y, L, Dm, x.stride(1), R=R, RP=triton.next_power_of_2(R),
        N=N, BLOCK_T=block_t, BLOCK_D=block_d, TILE=tile, ROWS=rows, num_warps=warps)
    return y
