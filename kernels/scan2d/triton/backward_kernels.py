"""The backward's scan passes: chunk adjoint states, then every input's gradient.

    chunk_adjoint  ->  chunk_carry (reversed, :mod:`.chunk_carry`)  ->  backward_grads

Each pass recomputes its chunk's states from the stored entry states (nothing per step is kept from the forward).
``backward_grads_kernel`` runs on (steps, channels, states) tiles or, by default, through
``_backward_state_loop`` in one-warp programs.
"""

import triton
import triton.language as tl

from .lane_sums import lane_sums
from .positions import step_positions
from .recurrence import LOG2E, adjoint_combine, combine, reverse_rows, tile_adjoint, tile_states
from .state_loop import state_loop_tile
from .tile_io import (
    STEP_VECTORS, accumulate, as_stored, block_channels, channel_blocks, channel_sum_rows, load_chunk, load_state,
    load_steps, load_td, offset, products_fp32, state_column, store_td, x_rows,
)


@triton.jit
def _states_from_entry(entry_ptr, pid_bk, pid_c, n_chunks, Dm, d, d_mask, n, t, delta, u, Bm, A, WIDE: tl.constexpr):
    """Decays, drives and states h_t (T, D, N) of a one-tile chunk started from its stored entry state."""
    return tile_states(load_state(entry_ptr, pid_bk, pid_c, n_chunks, Dm, d, d_mask, n, WIDE), t, delta, u, Bm, A)


@triton.jit
def _upstream_grad(
    pos_o, b_o, k, d, d_mask, valid, is_low, dout_ptr, s_gb, s_gk, s_gl, s_gd, weight_ptr, K, Dm,
    y, tok_ptr, vec_ptr, gbar_ptr, L_high, first_ptr,
    SUM_DIRECTIONS: tl.constexpr, HAS_WEIGHT: tl.constexpr, LN_UPSTREAM: tl.constexpr, ROWWISE: tl.constexpr,
    WIDE: tl.constexpr, ROUND_FIRST: tl.constexpr,
):
    """Gradient reaching this direction's output at each step, (T, D); zero for low-resolution tokens.

    LN_UPSTREAM: the gradient of the gate's pooled statistic mean_t LayerNorm(y_t) instead of an output gradient:
    rstd_t (g - mean(g) - xhat_t m_t) with g = vec[bk] and (mean, rstd, m) per token in tok.  With SUM_DIRECTIONS
    too, both: the output gradient (times the direction weight) plus the pooled statistic's, so that the gated
    layer's two upstreams take one backward pass (``directional.triton_op``).  ROUND_FIRST: direction 0's y as the
    gated forward stored it, in ``first_ptr``'s dtype (``tile_io.as_stored``).
    """
    m = (valid & (is_low == 0))[:, None] & d_mask[None, :]
    if LN_UPSTREAM:
        bk = b_o * K + k
        token = bk * L_high + pos_o
        mu = tl.load(tok_ptr + token * 3, mask=valid, other=0.0)
        rstd = tl.load(tok_ptr + token * 3 + 1, mask=valid, other=0.0)
        mt = tl.load(tok_ptr + token * 3 + 2, mask=valid, other=0.0)
        g = tl.load(vec_ptr + bk * Dm + d, mask=d_mask, other=0.0)
        gbar = tl.load(gbar_ptr + bk)
        xhat = (as_stored(y, k, d, first_ptr, ROUND_FIRST) - mu[:, None]) * rstd[:, None]
        dy_ln = tl.where(m, rstd[:, None] * (g[None, :] - gbar - xhat * mt[:, None]), 0.0)
    if SUM_DIRECTIONS or not LN_UPSTREAM:
        dy = load_td(dout_ptr + b_o * s_gb + offset(k, WIDE) * s_gk, pos_o * s_gl, offset(d, WIDE) * s_gd,
                     valid & (is_low == 0), d_mask, ROWWISE)
        if SUM_DIRECTIONS:
            if HAS_WEIGHT:
                dy = dy * tl.load(weight_ptr + (b_o * K + k) * Dm + d, mask=d_mask, other=0.0).to(tl.float32)[None, :]
        if LN_UPSTREAM:
            dy += dy_ln
    else:
        dy = dy_ln
    return dy


@triton.jit
def _backward_chunk(
    b, k, pid_d, pid_c, U, X, DELTA, BC, PROJ, A_ptr, dirs_ptr, H, W, Dm,
    ORDER: tl.constexpr, LOWRANK: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    R: tl.constexpr, N: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, IN_WINDOW: tl.constexpr,
    WIDE: tl.constexpr,
):
    """What both backward kernels read for the one-tile chunk ``pid_c`` of (batch b, direction k), channel block
    ``pid_d``: the chunk's indices and inputs (load_chunk) and A (D, N).  Shared so that the adjoint pass and the
    gradient pass recompute exactly the same chunk."""
    d, d_mask = block_channels(pid_d, BC[10], Dm, BLOCK_D, LOWRANK)
    t = tl.arange(0, BLOCK_T)
    n = tl.arange(0, N)
    pos, is_low, valid, u, delta_pre, delta, Bm, Cm = load_chunk(
        pid_c * BLOCK_T, t, b, k, pid_d, d, d_mask, U, X, DELTA, BC, PROJ, dirs_ptr, H, W, Dm, ORDER, LOWRANK,
        HAS_BIAS, SOFTPLUS, R, N, IN_WINDOW, WIDE)
    A = tl.load(A_ptr + k * Dm * N + d[:, None] * N + n[None, :], mask=d_mask[:, None], other=0.0).to(tl.float32)
    return d, d_mask, t, n, pos, is_low, valid, u, delta_pre, delta, Bm, Cm, A


@triton.jit
def _scan_output_grad(
    pos_o, b_o, k, d, d_mask, valid, is_low, dout_ptr, s_gb, s_gk, s_gl, s_gd, weight_ptr, z_ptr, s_zb, s_zl, s_zd,
    K, Dm, y, tok_ptr, vec_ptr, gbar_ptr, L_high, first_ptr,
    SUM_DIRECTIONS: tl.constexpr, HAS_WEIGHT: tl.constexpr, LN_UPSTREAM: tl.constexpr, HAS_Z: tl.constexpr,
    ROWWISE: tl.constexpr, WIDE: tl.constexpr, ROUND_FIRST: tl.constexpr,
):
    """``_upstream_grad`` taken back through the z gate (times silu(z) with HAS_Z): the gradient reaching the scan's
    C.h + D u at each step, (T, D), as ``chunk_adjoint`` sums it."""
    dy = _upstream_grad(pos_o, b_o, k, d, d_mask, valid, is_low, dout_ptr, s_gb, s_gk, s_gl, s_gd, weight_ptr, K, Dm,
                        y, tok_ptr, vec_ptr, gbar_ptr, L_high, first_ptr, SUM_DIRECTIONS, HAS_WEIGHT, LN_UPSTREAM,
                        ROWWISE, WIDE, ROUND_FIRST)
    if HAS_Z:
        z = load_td(z_ptr + b_o * s_zb, pos_o * s_zl, offset(d, WIDE) * s_zd, valid, d_mask, ROWWISE)
        dy = dy * z / (1.0 + tl.exp(-z))
    return dy


@triton.jit
def _adjoint_state_loop(
    local_ptr, dout_ptr, s_gb, s_gk, s_gl, s_gd, weight_ptr, z_ptr, s_zb, s_zl, s_zd, entry_ptr, Dskip_ptr,
    tok_ptr, vec_ptr, gbar_ptr, L_high, dy_ptr, U, X, DELTA, BC, PROJ, A_ptr, dirs_ptr, K, H, W, Dm, b, k, pid_c,
    base, ORDER: tl.constexpr, LOWRANK: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_Z: tl.constexpr, SUM_DIRECTIONS: tl.constexpr, HAS_WEIGHT: tl.constexpr, LN_UPSTREAM: tl.constexpr,
    HAS_D: tl.constexpr, R: tl.constexpr, N: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
    TILES: tl.constexpr, STATE_UNROLL: tl.constexpr, ROWWISE: tl.constexpr, PAIRED: tl.constexpr,
    IN_WINDOW: tl.constexpr, WIDE: tl.constexpr, STAGES: tl.constexpr, UNROLL_RANKS: tl.constexpr,
    ROUND_FIRST: tl.constexpr, KEEP_DY: tl.constexpr,
):
    """``chunk_adjoint_kernel``'s chunk one state at a time on (steps, channels) tiles with the steps in registers
    (``state_loop_tile``), where the sum over steps stays in each thread.  The chunk is TILES tiles of BLOCK_T steps
    (``TileConfig.adjoint_block_t``), each adding its steps' terms, with delta summed from the chunk's start, to
    the sums the tiles before it stored in ``local`` (each thread reads back what it wrote: no barrier).  For the
    LayerNorm gradient the recomputed states go from tile to tile in registers, every state unrolled
    (``state_loop_tile``'s IN_REGISTERS).  KEEP_DY: the gradient reaching each step's output is stored into
    ``dy_ptr`` (``backward_grads_kernel``'s DY_KEPT)."""
    b_o = offset(b, WIDE)
    d, d_mask = block_channels(tl.program_id(1), BC[10], Dm, BLOCK_D, LOWRANK)
    t = tl.arange(0, BLOCK_T)
    A_rows = A_ptr + (k * Dm + d) * N
    local_rows = local_ptr + (base + d) * N
    entry_rows = entry_ptr + (base + d) * N
    dy_rows = dy_ptr + base * (TILES * BLOCK_T) + d  # KEEP_DY: the chunk's first step
    in_registers: tl.constexpr = TILES > 1
    rows = tl.arange(0, N)[:, None]
    states = tl.zeros([N, BLOCK_D], dtype=tl.float32)  # the recomputed states between tiles (in_registers)
    if LN_UPSTREAM and in_registers:
        states = tl.load(entry_rows[None, :] + rows, mask=d_mask[None, :], other=0.0)
    start = tl.zeros([BLOCK_D], dtype=tl.float32)  # delta summed over the chunk's earlier tiles
    for j in range(TILES):
        pos, is_low, valid, u, delta_pre, delta, b_rows, c_rows, s_bn, s_cn = load_steps(
            (pid_c * TILES + j) * BLOCK_T, t, b, k, tl.program_id(1), d, d_mask, U, X, DELTA, BC, PROJ, dirs_ptr, H,
            W, Dm, ORDER, LOWRANK, HAS_BIAS, SOFTPLUS, R, N, STEPS_IN_REGISTERS=True, ROWWISE=ROWWISE, PAIRED=PAIRED,
            IN_WINDOW=IN_WINDOW, WIDE=WIDE, UNROLL_RANKS=UNROLL_RANKS)
        pos_o = offset(pos, WIDE)
        y = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)
        if LN_UPSTREAM:  # the LayerNorm gradient depends on y: recompute the chunk's outputs
            if HAS_D:
                y = u * tl.load(Dskip_ptr + k * Dm + d, mask=d_mask, other=0.0).to(tl.float32)[None, :]
            y, states = state_loop_tile(entry_rows, d_mask, entry_rows, A_rows, d_mask, t, delta, u, b_rows, c_rows,
                                        s_bn, s_cn, y, states, (pos_o, valid), N, OUTPUT=True, STORE_END=False,
                                        UNROLL=N if in_registers else STATE_UNROLL, IN_REGISTERS=in_registers,
                                        PAIRED=PAIRED, STAGES=STAGES, VECTORS=ROWWISE == STEP_VECTORS, WIDE=WIDE)
        dy = _scan_output_grad(pos_o, b_o, k, d, d_mask, valid, is_low, dout_ptr, s_gb, s_gk, s_gl, s_gd, weight_ptr,
                               z_ptr, s_zb, s_zl, s_zd, K, Dm, y, tok_ptr, vec_ptr, gbar_ptr, L_high, U[0],
                               SUM_DIRECTIONS, HAS_WEIGHT, LN_UPSTREAM, HAS_Z, ROWWISE, WIDE, ROUND_FIRST)
        if KEEP_DY:
            tl.store(dy_rows[None, :] + ((j * BLOCK_T + t) * Dm)[:, None], dy, mask=d_mask[None, :])
        reach = tl.cumsum(delta, axis=0)
        if TILES > 1:  # delta summed from the chunk's start
            reach += start[None, :]
            start += tl.sum(delta, axis=0)
        reach = reach * LOG2E
        for n0 in tl.range(0, N, STATE_UNROLL, num_stages=STAGES):
            for i in tl.static_range(STATE_UNROLL):
                n = n0 + i
                a = tl.load(A_rows + n, mask=d_mask, other=0.0).to(tl.float32)
                cn = state_column(c_rows, n, s_cn, pos_o, valid, d_mask, ROWWISE == STEP_VECTORS, WIDE)
                term = tl.sum(tl.exp2(reach * a[None, :]) * (dy * cn), axis=0)
                if TILES > 1:  # the earlier tiles' sum, which this thread stored
                    term += tl.load(local_rows + n, mask=d_mask & ((d * 0 + j) > 0), other=0.0)
                tl.store(local_rows + n, term, mask=d_mask)


@triton.jit(do_not_specialize=["chunk_first"])
def chunk_adjoint_kernel(
    local_ptr, dout_ptr, s_gb, s_gk, s_gl, s_gd, weight_ptr, z_ptr, s_zb, s_zl, s_zd,
    entry_ptr, Dskip_ptr, tok_ptr, vec_ptr, gbar_ptr, L_high, dy_ptr,
    U, X, DELTA, BC, PROJ, A_ptr, dirs_ptr, K, H, W, Dm, n_chunks, chunk_first,
    ORDER: tl.constexpr, LOWRANK: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, HAS_Z: tl.constexpr, SUM_DIRECTIONS: tl.constexpr, HAS_WEIGHT: tl.constexpr,
    LN_UPSTREAM: tl.constexpr, HAS_D: tl.constexpr,
    R: tl.constexpr, N: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, STATE_LOOP: tl.constexpr = False,
    STATE_UNROLL: tl.constexpr = 1, ROWWISE: tl.constexpr = False, PAIRED: tl.constexpr = False,
    IN_WINDOW: tl.constexpr = False, WIDE: tl.constexpr = True, STAGES: tl.constexpr = 1,
    UNROLL_RANKS: tl.constexpr = False, ROUND_FIRST: tl.constexpr = False, TILES: tl.constexpr = 1,
    KEEP_DY: tl.constexpr = False,
):
    """Adjoint of each chunk with nothing arriving from later chunks, taken back through its first decay:
    local = exp(delta_t0 A) * g_t0, the gradient the chunk sends to the state entering it.

    Only the adjoint at the chunk's first step is needed, so a sum over steps replaces the adjoint scan:
    exp(delta_0 A) g_0 = sum_t exp(A sum_{r<=t} delta_r) C_t dy_t.  One exp per element either way, and no reverse
    scan, which Triton 3.6-3.7 lowers with lane flips of every scanned tensor (bench/README.md).  STATE_LOOP: one
    state at a time on (steps, channels) tiles with the steps in registers, the chunk in TILES tiles of BLOCK_T
    steps (``_adjoint_state_loop``); else one (steps, channels, states) tile of BLOCK_T steps.

    KEEP_DY (the state loop, with LN_UPSTREAM): the gradient reaching each step's output, which the gated layer's
    LayerNorm gradient takes recomputed outputs to form, is also stored, (batch x K, chunks x chunk steps, dim)
    float32 in ``dy_ptr``, so that ``backward_grads_kernel`` reads it instead of recomputing the outputs (DY_KEPT).
    """
    pid_bk, pid_c = tl.program_id(0), tl.program_id(2) + chunk_first
    b, k = pid_bk // K, pid_bk % K
    base = (offset(pid_bk, WIDE) * n_chunks + pid_c) * Dm
    if STATE_LOOP:
        _adjoint_state_loop(
            local_ptr, dout_ptr, s_gb, s_gk, s_gl, s_gd, weight_ptr, z_ptr, s_zb, s_zl, s_zd, entry_ptr, Dskip_ptr,
            tok_ptr, vec_ptr, gbar_ptr, L_high, dy_ptr, U, X, DELTA, BC, PROJ, A_ptr, dirs_ptr, K, H, W, Dm, b, k,
            pid_c, base, ORDER, LOWRANK, HAS_BIAS, SOFTPLUS, HAS_Z, SUM_DIRECTIONS, HAS_WEIGHT, LN_UPSTREAM, HAS_D, R,
            N, BLOCK_T, BLOCK_D, TILES, STATE_UNROLL, ROWWISE, PAIRED, IN_WINDOW, WIDE, STAGES, UNROLL_RANKS,
            ROUND_FIRST, KEEP_DY)
    else:
        tl.static_assert(TILES == 1, "the tile kernels' chunk is one tile")
        tl.static_assert(not KEEP_DY, "the tile kernels do not keep dy")
        b_o = offset(b, WIDE)
        d, d_mask, t, n, pos, is_low, valid, u, delta_pre, delta, Bm, Cm, A = _backward_chunk(
            b, k, tl.program_id(1), pid_c, U, X, DELTA, BC, PROJ, A_ptr, dirs_ptr, H, W, Dm, ORDER, LOWRANK,
            HAS_BIAS, SOFTPLUS, R, N, BLOCK_T, BLOCK_D, IN_WINDOW, WIDE)
        y = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)
        if LN_UPSTREAM:  # the LayerNorm gradient depends on y: recompute the chunk's outputs
            _, _, h = _states_from_entry(entry_ptr, pid_bk, pid_c, n_chunks, Dm, d, d_mask, n, t, delta, u, Bm, A,
                                         WIDE)
            y = tl.sum(h * Cm, axis=2)
            if HAS_D:
                y += u * tl.load(Dskip_ptr + k * Dm + d, mask=d_mask, other=0.0).to(tl.float32)[None, :]
        pos_o = offset(pos, WIDE)
        dy = _scan_output_grad(pos_o, b_o, k, d, d_mask, valid, is_low, dout_ptr, s_gb, s_gk, s_gl, s_gd, weight_ptr,
                               z_ptr, s_zb, s_zl, s_zd, K, Dm, y, tok_ptr, vec_ptr, gbar_ptr, L_high, U[0],
                               SUM_DIRECTIONS, HAS_WEIGHT, LN_UPSTREAM, HAS_Z, False, WIDE, ROUND_FIRST)
        reach = tl.cumsum(delta, axis=0)
        first = tl.sum(tl.exp(reach[:, :, None] * A[None, :, :]) * (dy[:, :, None] * Cm), axis=0)
        tl.store(local_ptr + (base + d[:, None]) * N + n[None, :], first, mask=d_mask[:, None])


@triton.jit
def _output_grads(
    y, pos_o, b_o, k, d, d_mask, valid, is_low, part_base, dout_ptr, s_gb, s_gk, s_gl, s_gd, weight_ptr,
    dweight_part_ptr, z_ptr, dz_ptr, s_zb, s_zl, s_zd, tok_ptr, vec_ptr, gbar_ptr, L_high, K, Dm, first_ptr,
    SUM_DIRECTIONS: tl.constexpr, HAS_WEIGHT: tl.constexpr, LN_UPSTREAM: tl.constexpr, HAS_Z: tl.constexpr,
    ROWWISE: tl.constexpr, WIDE: tl.constexpr, ROUND_FIRST: tl.constexpr, OWN_PART: tl.constexpr = True,
    STORES: tl.constexpr = True,
):
    """Gradient dy (T, D) reaching this direction's y = C.h + D u (the z gate's factor applied), given y; with
    STORES, stores the chunk's direction-weight gradient (at ``part_base``; added there unless OWN_PART, as
    ``backward_grads_kernel``'s CHUNKS says) and dz on the way, which need y (without STORES y may be anything but
    for the LayerNorm gradient)."""
    dout = _upstream_grad(pos_o, b_o, k, d, d_mask, valid, is_low, dout_ptr, s_gb, s_gk, s_gl, s_gd, weight_ptr, K,
                          Dm, y, tok_ptr, vec_ptr, gbar_ptr, L_high, first_ptr, SUM_DIRECTIONS, HAS_WEIGHT,
                          LN_UPSTREAM, ROWWISE, WIDE, ROUND_FIRST)
    if SUM_DIRECTIONS and not LN_UPSTREAM and STORES:  # with LN_UPSTREAM a REDUCE = 4 pass has computed it already
        if HAS_WEIGHT:
            accumulate(dweight_part_ptr + part_base + d, weight_grad(y, pos_o, b_o, d, d_mask, valid, is_low, dout_ptr,
                                                                     s_gb, s_gl, s_gd, WIDE),
                       d_mask, OWN_PART, FIRST_WRITE=True)
    dy = dout
    if HAS_Z:
        dy = through_z_gate(dout, y, pos_o, b_o, d, d_mask, valid, z_ptr, dz_ptr, s_zb, s_zl, s_zd, ROWWISE, WIDE,
                            STORES)
    return dy


@triton.jit
def weight_grad(y, pos_o, b_o, d, d_mask, valid, is_low, dout_ptr, s_gb, s_gl, s_gd, WIDE: tl.constexpr):
    """This direction's weight gradient from a tile of steps, (D,): the sum over its high-resolution steps of
    dout * y, dout (b, pos, d) at b * s_gb + pos * s_gl + d * s_gd read without the weight."""
    raw = tl.load(dout_ptr + b_o * s_gb + pos_o[:, None] * s_gl + offset(d, WIDE)[None, :] * s_gd,
                  mask=(valid & (is_low == 0))[:, None] & d_mask[None, :], other=0.0).to(tl.float32)
    return tl.sum(raw * y, axis=0)


@triton.jit
def through_z_gate(dout, y, pos_o, b_o, d, d_mask, valid, z_ptr, dz_ptr, s_zb, s_zl, s_zd, ROWWISE: tl.constexpr,
                   WIDE: tl.constexpr, STORES: tl.constexpr):
    """The gradient dout (T, D) of y silu(z) taken back to y: dout silu(z); with STORES, dz = dout y silu'(z) stored
    on the way (z and dz (batch, L, dim), the same strides)."""
    rows, cols = pos_o * s_zl, offset(d, WIDE) * s_zd
    z = load_td(z_ptr + b_o * s_zb, rows, cols, valid, d_mask, ROWWISE)
    sig = 1.0 / (1.0 + tl.exp(-z))
    if STORES:
        store_td(dz_ptr + b_o * s_zb, rows, cols, dout * y * sig * (1.0 + z * (1.0 - sig)), valid, d_mask, ROWWISE)
    return dout * z * sig


@triton.jit
def _accumulate_du(du_ptr, du_low_ptr, U, b_o, pos_o, is_low, valid, d, d_mask, du, ORDER: tl.constexpr,
                   OWNED: tl.constexpr, ROWWISE: tl.constexpr, WIDE: tl.constexpr):
    """du (T, D) added at each step's token (u's low-resolution twin for low-resolution tokens): u can be read by
    several directions.  ROWWISE (with OWNED) reads and writes a row at a time, as ``load_td`` says why."""
    s_ub, s_ul, s_ud, s_ub_low = U[2], U[3], U[4], U[5]
    du_b = du_ptr + b_o * s_ub
    if ORDER == 0 and ROWWISE and OWNED:
        rows = pos_o * s_ul
        cols = offset(d, WIDE) * s_ud
        store_td(du_b, rows, cols, load_td(du_b, rows, cols, valid, d_mask, ROWWISE) + du, valid, d_mask, ROWWISE)
    else:
        mask_td = valid[:, None] & d_mask[None, :]
        du_high = du_b + pos_o[:, None] * s_ul + offset(d, WIDE)[None, :] * s_ud
        if ORDER == 0:
            accumulate(du_high, du, mask_td, OWNED)
        else:
            du_low = du_low_ptr + b_o * s_ub_low + pos_o[:, None] * s_ul + offset(d, WIDE)[None, :] * s_ud
            accumulate(tl.where(is_low[:, None], du_low, du_high), du, mask_td, OWNED)


@triton.jit
def _backward_state_loop(
    du_ptr, du_low_ptr, ddelta_ptr, dx_ptr, dx_low_ptr, dB_ptr, dC_ptr, dz_ptr,
    dA_part_ptr, dD_part_ptr, dbias_part_ptr, dW_part_ptr, dweight_part_ptr,
    dout_ptr, s_gb, s_gk, s_gl, s_gd, weight_ptr, entry_ptr, arrive_ptr, Dskip_ptr,
    z_ptr, s_zb, s_zl, s_zd, tok_ptr, vec_ptr, gbar_ptr, L_high, dy_ptr,
    U, X, DELTA, BC, PROJ, A_ptr, dirs_ptr, K, H, W, Dm, n_chunks, b, k, pid_bk, pid_c, s_dx_part, s_dxl_part,
    ORDER: tl.constexpr, LOWRANK: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, SUM_DIRECTIONS: tl.constexpr,
    HAS_WEIGHT: tl.constexpr, LN_UPSTREAM: tl.constexpr, DX_COPIES: tl.constexpr, DU_OWNED: tl.constexpr,
    LANE_SUMS: tl.constexpr, ROWWISE: tl.constexpr, R: tl.constexpr,
    N: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, RP: tl.constexpr, PAIRED: tl.constexpr,
    IN_WINDOW: tl.constexpr, WIDE: tl.constexpr, STAGES: tl.constexpr, ROUND_FIRST: tl.constexpr,
    CHUNKS: tl.constexpr, DY_KEPT: tl.constexpr, Y_IN_LOOP: tl.constexpr,
):
    """``backward_grads_kernel`` one state at a time (its STATE_LOOP): the 2D layer (LOWRANK) and the drop-in scan.

    The tile is (BLOCK_T steps, BLOCK_D channels) with each thread holding one channel's steps in registers, as in
    ``state_loop_tile``: per state n the states and the adjoint are scanned in registers (the adjoint over the steps
    reversed, with ``adjoint_combine``), du's and ddelta's sums over n accumulate in registers and dA's sum over steps
    stays in the thread.  Only dB and dC (sums over channels) cross threads: a sum over the warp's lanes and one add
    per step and state, which is why the host launches one warp per 32 channels (no barriers).  The dt low-rank
    gradients are two small products on the tile (tl.dot: (T, D) x (D, R) and (D, T) x (T, R)); the drop-in scan,
    given delta, stores ddelta instead.

    What other programs also write: dB, dC and the dt low-rank input's gradient (in dx and dx_low; the drop-in's dB
    and dC are laid out like B and C), summed over the channel blocks, are added with atomics, or with DX_COPIES
    stored into the block's own zeroed copy of dx and dx_low (dB and dC), ``s_dx_part`` and ``s_dxl_part`` elements
    apart, which the host then sums.  du, summed over directions, is added with atomics, or with DU_OWNED (the host
    launches one direction at a time) by a plain read-add-write; the (T, D) tile's atomics hold the most registers
    (compile_check, sm_90, Triton 3.7.1, the gated layers at dt rank 12: 72-88 bytes of spills with them, 0-36
    without).  Deterministic mode sets both.  (Looping over the channel blocks in one program instead, as the tile
    kernels do, kept what does not depend on the block, positions and row pointers, live across the loop: 1,032-1,268
    bytes of spills.)

    LANE_SUMS (BLOCK_D = 32, one warp): dB's and dC's sums over the channels are reduce-scattered over the lanes
    (``lane_sums``), each lane then adding the sum of one step, instead of every lane reducing every step.

    CHUNKS: the chunk's sums over steps (dA, dD, dbias, dW, the direction weights') are stored per chunk (1), or
    added with atomics into one zeroed sum per group of that many consecutive chunks (``backward_grads_kernel``).
    """
    s_xc = X[5]
    dtw_ptr = PROJ[0]
    b_o = offset(b, WIDE)
    pid_d = tl.program_id(1)
    d, d_mask = block_channels(pid_d, BC[10], Dm, BLOCK_D, LOWRANK)
    t = tl.arange(0, BLOCK_T)
    pos, is_low, valid, u, delta_pre, delta, b_rows, c_rows, s_bn, s_cn = load_steps(
        pid_c * BLOCK_T, t, b, k, pid_d, d, d_mask, U, X, DELTA, BC, PROJ, dirs_ptr, H, W, Dm, ORDER,
        LOWRANK, HAS_BIAS, SOFTPLUS, R, N, STEPS_IN_REGISTERS=True, ROWWISE=ROWWISE, PAIRED=PAIRED,
        IN_WINDOW=IN_WINDOW, WIDE=WIDE)
    pos_o = offset(pos, WIDE)
    mask_td = valid[:, None] & d_mask[None, :]
    chunk_base = (offset(pid_bk, WIDE) * n_chunks + pid_c) * Dm
    # The sums over steps (dA, dD, dbias, dW, the direction weights'): one per group of CHUNKS chunks.
    own_part: tl.constexpr = CHUNKS == 1
    if own_part:
        part_base = chunk_base
    else:
        part_base = (offset(pid_bk, WIDE) * tl.cdiv(n_chunks, CHUNKS) + pid_c // CHUNKS) * Dm
    entry_rows = entry_ptr + (chunk_base + d) * N
    arrive_rows = arrive_ptr + (chunk_base + d) * N
    A_rows = A_ptr + (k * Dm + d) * N
    if HAS_D:
        Dk = tl.load(Dskip_ptr + k * Dm + d, mask=d_mask, other=0.0).to(tl.float32)
    else:
        Dk = tl.zeros([BLOCK_D], dtype=tl.float32)
    if DY_KEPT:  # read below, where the state loop starts (nothing else here needs the outputs)
        tl.static_assert(LN_UPSTREAM and not HAS_Z, "dy is kept for the gated layer's LayerNorm gradient only")
    else:
        y = u * Dk[None, :]
        tl.static_assert(not Y_IN_LOOP or (HAS_Z and not LN_UPSTREAM and not (SUM_DIRECTIONS and HAS_WEIGHT)),
                         "the state loop sums the outputs for dz only")
        if LN_UPSTREAM or ((HAS_Z or (SUM_DIRECTIONS and HAS_WEIGHT)) and not Y_IN_LOOP):
            # These need the outputs: recompute them (Y_IN_LOOP: the state loop below sums them, for dz after it).
            y, _ = state_loop_tile(entry_rows, d_mask, entry_rows, A_rows, d_mask, t, delta, u, b_rows, c_rows,
                                    s_bn, s_cn, y, u, (pos_o, valid), N, OUTPUT=True, STORE_END=False,
                                    STAGES=STAGES, VECTORS=ROWWISE == STEP_VECTORS, WIDE=WIDE)
        dy = _output_grads(y, pos_o, b_o, k, d, d_mask, valid, is_low, part_base, dout_ptr, s_gb, s_gk, s_gl, s_gd,
                           weight_ptr, dweight_part_ptr, z_ptr, dz_ptr, s_zb, s_zl, s_zd, tok_ptr, vec_ptr,
                           gbar_ptr, L_high, K, Dm, U[0], SUM_DIRECTIONS, HAS_WEIGHT, LN_UPSTREAM, HAS_Z, ROWWISE,
                           WIDE, ROUND_FIRST, own_part, STORES=not Y_IN_LOOP)
    # dx and dx_low (dB and dC), or this channel block's copies of them (DX_COPIES).
    sums_a = (dx_ptr if LOWRANK else dB_ptr) + offset(pid_d, WIDE) * s_dx_part
    sums_b = (dx_low_ptr if LOWRANK else dC_ptr) + offset(pid_d, WIDE) * s_dxl_part
    db_rows, dc_rows = channel_sum_rows(sums_a, sums_b, X, BC, b_o, pos_o, is_low, k, pid_d, ORDER, LOWRANK, R, N,
                                         BLOCK_D, WIDE)
    if LANE_SUMS:
        # Where each lane adds its step's sum: the step's rows, recomputed for the lane's step (once per tile).
        per_step: tl.constexpr = BLOCK_D // BLOCK_T
        lane = tl.arange(0, BLOCK_D)
        pos_l, is_low_l, valid_l = step_positions(pid_c * BLOCK_T + lane // per_step, k, dirs_ptr, H, W, ORDER)
        db_lane, dc_lane = channel_sum_rows(sums_a, sums_b, X, BC, b_o, offset(pos_l, WIDE), is_low_l, k, pid_d,
                                             ORDER, LOWRANK, R, N, BLOCK_D, WIDE)
        lane_mask = valid_l & (lane % per_step == 0)
    if DY_KEPT:  # as chunk_adjoint formed it
        dy = tl.load(dy_ptr + (chunk_base * BLOCK_T + t * Dm)[:, None] + d[None, :], mask=d_mask[None, :], other=0.0)
    du_delta = delta * u
    first = (t == 0)[:, None]
    ones = tl.full([BLOCK_T, BLOCK_D], 1.0, tl.float32)
    gB = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)  # sum_n g B
    gA = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)  # sum_n A g exp(delta A) h_prev
    for n in tl.range(N, num_stages=STAGES):
        a = tl.load(A_rows + n, mask=d_mask, other=0.0).to(tl.float32)
        h0 = tl.load(entry_rows + n, mask=d_mask, other=0.0)
        g_end = tl.load(arrive_rows + n, mask=d_mask, other=0.0)
        bn = state_column(b_rows, n, s_bn, pos_o, valid, d_mask, ROWWISE == STEP_VECTORS, WIDE)
        cn = state_column(c_rows, n, s_cn, pos_o, valid, d_mask, ROWWISE == STEP_VECTORS, WIDE)
        decay = tl.exp2(delta * (a * LOG2E)[None, :])
        drive = du_delta * bn
        _, h = tl.associative_scan((decay, drive + tl.where(first, decay * h0[None, :], 0.0)), 0, combine)
        if Y_IN_LOOP:
            y += h * cn
        if LANE_SUMS:  # dC
            accumulate(dc_lane + offset(n, WIDE) * s_cn, lane_sums(dy * h, lane, BLOCK_T, BLOCK_D), lane_mask,
                        DX_COPIES, FIRST_WRITE=True)
        else:
            accumulate(dc_rows + offset(n, WIDE) * s_cn, tl.sum(dy * h, axis=1), valid, DX_COPIES, FIRST_WRITE=True)
        # The adjoint over the reversed steps: the tile's last step first, seeded with what arrives from later chunks.
        seed = reverse_rows(dy * cn) + tl.where(first, g_end[None, :], 0.0)
        _, _, g = tl.associative_scan((reverse_rows(decay), ones, seed), 0, adjoint_combine)
        g = reverse_rows(g)
        gB += g * bn
        g_prev = g * (h - drive)  # g exp(delta A) h_prev
        gA += g_prev * a[None, :]
        accumulate(dA_part_ptr + (part_base + d) * N + n, tl.sum(g_prev * delta, axis=0), d_mask, own_part,
                   FIRST_WRITE=True)
        if LANE_SUMS:  # dB
            accumulate(db_lane + offset(n, WIDE) * s_bn, lane_sums(g * du_delta, lane, BLOCK_T, BLOCK_D), lane_mask,
                        DX_COPIES, FIRST_WRITE=True)
        else:
            accumulate(db_rows + offset(n, WIDE) * s_bn, tl.sum(g * du_delta, axis=1), valid, DX_COPIES,
                        FIRST_WRITE=True)

    if Y_IN_LOOP:  # dz, now that the loop has summed y; dout and z are read again (L2 hits) rather than held
        # through the state loop, whose registers are full (compile_check: 255).
        _output_grads(y, pos_o, b_o, k, d, d_mask, valid, is_low, part_base, dout_ptr, s_gb, s_gk, s_gl, s_gd,
                      weight_ptr, dweight_part_ptr, z_ptr, dz_ptr, s_zb, s_zl, s_zd, tok_ptr, vec_ptr, gbar_ptr,
                      L_high, K, Dm, U[0], SUM_DIRECTIONS, HAS_WEIGHT, LN_UPSTREAM, HAS_Z, ROWWISE, WIDE, ROUND_FIRST,
                      own_part)
    du = gB * delta + dy * Dk[None, :]
    ddelta = gB * u + gA
    if SOFTPLUS:
        ddelta = ddelta / (1.0 + tl.exp(-delta_pre))
    ddelta = tl.where(mask_td, ddelta, 0.0)
    accumulate(dD_part_ptr + part_base + d, tl.sum(dy * u, axis=0), d_mask, own_part, FIRST_WRITE=True)
    accumulate(dbias_part_ptr + part_base + d, tl.sum(ddelta, axis=0), d_mask, own_part, FIRST_WRITE=True)
    _accumulate_du(du_ptr, du_low_ptr, U, b_o, pos_o, is_low, valid, d, d_mask, du, ORDER, DU_OWNED, ROWWISE, WIDE)
    if LOWRANK:
        # Through delta_pre = dt_low @ dt_weight[k].T: the input's gradient sums over channels and the weight's over
        # steps, both small products on the tile (RP >= 16, the smallest tl.dot; the host pads it).
        r = tl.arange(0, RP)
        mask_tr = valid[:, None] & (r < R)[None, :]
        mask_dr = d_mask[:, None] & (r < R)[None, :]
        w = tl.load(dtw_ptr + (k * Dm + d[:, None]) * R + r[None, :], mask=mask_dr, other=0.0).to(tl.float32)
        dxrow = x_rows(sums_a, sums_b, X, b_o, pos_o, is_low, k, ORDER)
        accumulate(dxrow[:, None] + r[None, :] * s_xc, tl.dot(ddelta, w, input_precision="ieee"), mask_tr,
                    DX_COPIES, FIRST_WRITE=True)
        xrow = x_rows(X[0], X[1], X, b_o, pos_o, is_low, k, ORDER)
        cols = tl.load(xrow[:, None] + r[None, :] * s_xc, mask=mask_tr, other=0.0).to(tl.float32)
        accumulate(dW_part_ptr + (part_base + d[:, None]) * R + r[None, :],
                   tl.dot(tl.trans(ddelta), cols, input_precision="ieee"), mask_dr, own_part, FIRST_WRITE=True)
    else:
        store_td(ddelta_ptr + b_o * DELTA[1], pos_o * DELTA[2], offset(d, WIDE) * DELTA[3], ddelta, valid, d_mask,
                 ROWWISE)


@triton.jit(do_not_specialize=["k_first", "chunk_first"])  # one compiled kernel for every direction and chunk
def backward_grads_kernel(
    # gradients
    du_ptr, du_low_ptr, ddelta_ptr, dx_ptr, dx_low_ptr, dB_ptr, dC_ptr, dz_ptr,
    dA_part_ptr, dD_part_ptr, dbias_part_ptr, dW_part_ptr, dweight_part_ptr,
    # upstream and saved
    dout_ptr, s_gb, s_gk, s_gl, s_gd, weight_ptr, entry_ptr, arrive_ptr, Dskip_ptr, z_ptr, s_zb, s_zl, s_zd,
    tok_ptr, vec_ptr, gbar_ptr, L_high, dy_ptr,
    U, X, DELTA, BC, PROJ, A_ptr, dirs_ptr, K, H, W, Dm, n_chunks, k_first, k_count, chunk_first, s_dx_part,
    s_dxl_part,
    ORDER: tl.constexpr, LOWRANK: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, SUM_DIRECTIONS: tl.constexpr,
    HAS_WEIGHT: tl.constexpr, LN_UPSTREAM: tl.constexpr, DETERMINISTIC: tl.constexpr, R: tl.constexpr,
    N: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, RP: tl.constexpr,
    STATE_LOOP: tl.constexpr = False, DX_COPIES: tl.constexpr = False, DU_OWNED: tl.constexpr = False,
    LANE_SUMS: tl.constexpr = False, ROWWISE: tl.constexpr = False, PAIRED: tl.constexpr = False,
    IN_WINDOW: tl.constexpr = False, WIDE: tl.constexpr = True, STAGES: tl.constexpr = 1,
    ROUND_FIRST: tl.constexpr = False, CHUNKS: tl.constexpr = 1, DY_KEPT: tl.constexpr = False,
    Y_IN_LOOP: tl.constexpr = False,
):
    """All gradients of one chunk: recompute h from the chunk's entry state, run the adjoint recurrence
    g_t = C_t dy_t + exp(delta_{t+1} A) g_{t+1} from the adjoint arriving at the chunk's end, then

        du     = delta * sum_n g B + D dy             ddelta = sum_n g (B u + A exp(delta A) h_prev)
        dB     = sum_d g delta u                      dC     = sum_d dy h
        dA     = sum_t g delta exp(delta A) h_prev    with exp(delta_t A) h_{t-1} = h_t - delta_t B_t u_t.

    The launch covers directions k_first .. k_first + k_count - 1.  Per-program sums over steps (dA, dD, dbias, dW,
    the direction weights) go to per-chunk buffers that the host adds up.  Gradients summed over channel blocks
    (dB, dC, the dt low-rank input) or over directions (du) use fp32 atomics, or with DETERMINISTIC a plain
    read-add-write: one program per chunk visits every channel block (``channel_blocks``) and the host launches
    one direction at a time, so no two programs of a launch write the same element.  STATE_LOOP: the same one state
    at a time (``_backward_state_loop``), which keeps a program per channel block and, in deterministic mode, sets
    DX_COPIES (each block stores its sums over channels into its own copy of dx and dx_low, ``s_dx_part`` and
    ``s_dxl_part`` elements apart) and DU_OWNED (du added without atomics, one direction per launch); STAGES: its
    loop over the states pipelined in that many stages (``TileConfig.state_loop_stages``).  ROUND_FIRST: direction
    0's recomputed output as the 16-bit gated forward stored it (``tile_io.as_stored``).

    CHUNKS (the state loop outside deterministic mode, ``TileConfig.backward_chunks``): the per-chunk buffers hold
    one sum per group of CHUNKS consecutive chunks, cdiv(n_chunks, CHUNKS) per (batch, direction), zeroed, which
    the group's programs add their sums to with atomics: the host reads and sums CHUNKS times fewer.

    DY_KEPT (the state loop, the gated layer's LayerNorm gradient): the gradient reaching each step's output is read
    from ``dy_ptr``, where ``chunk_adjoint_kernel`` stored it (KEEP_DY), instead of formed again from the outputs,
    which then need no recomputing: one pass of the recurrence fewer.  Y_IN_LOOP (the state loop, a z gate): the
    outputs, which only dz needs, are summed in the state loop as it goes and dz stored after it, instead of a
    state loop of their own before it (``TileConfig.backward_outputs_in_loop``).
    """
    # The gradients of u, x, delta, B, C are laid out like their inputs.  (Indexing, not unpacking into "_": a
    # name assigned before the channel loop must keep its type inside it.)
    s_xc = X[5]
    s_db, s_dl, s_dd = DELTA[1], DELTA[2], DELTA[3]
    s_bn, s_cn = BC[4], BC[8]
    dtw_ptr = PROJ[0]
    pid_g, pid_c = tl.program_id(0), tl.program_id(2) + chunk_first
    b, k = pid_g // k_count, k_first + pid_g % k_count
    pid_bk = b * K + k  # index of (batch, direction) in the state buffers
    b_o = offset(b, WIDE)
    if STATE_LOOP:
        _backward_state_loop(
            du_ptr, du_low_ptr, ddelta_ptr, dx_ptr, dx_low_ptr, dB_ptr, dC_ptr, dz_ptr,
            dA_part_ptr, dD_part_ptr, dbias_part_ptr, dW_part_ptr, dweight_part_ptr,
            dout_ptr, s_gb, s_gk, s_gl, s_gd, weight_ptr, entry_ptr, arrive_ptr, Dskip_ptr,
            z_ptr, s_zb, s_zl, s_zd, tok_ptr, vec_ptr, gbar_ptr, L_high, dy_ptr,
            U, X, DELTA, BC, PROJ, A_ptr, dirs_ptr, K, H, W, Dm, n_chunks, b, k, pid_bk, pid_c, s_dx_part,
            s_dxl_part, ORDER, LOWRANK, HAS_BIAS, SOFTPLUS, HAS_D, HAS_Z, SUM_DIRECTIONS, HAS_WEIGHT, LN_UPSTREAM,
            DX_COPIES, DU_OWNED, LANE_SUMS, ROWWISE, R, N, BLOCK_T, BLOCK_D, RP, PAIRED, IN_WINDOW, WIDE, STAGES,
            ROUND_FIRST, CHUNKS, DY_KEPT, Y_IN_LOOP)
        return
    # (Triton generates the code after the constexpr branch's return too.)
    tl.static_assert((CHUNKS == 1 and not DY_KEPT and not Y_IN_LOOP) or STATE_LOOP,
                     "the tile kernels keep one sum per chunk and form dy and y themselves")
    first_block, n_blocks = channel_blocks(Dm, BC[10], BLOCK_D, DETERMINISTIC)
    for blk in range(n_blocks):
        pid_d = first_block + blk
        d, d_mask, t, n, pos, is_low, valid, u, delta_pre, delta, Bm, Cm, A = _backward_chunk(
            b, k, pid_d, pid_c, U, X, DELTA, BC, PROJ, A_ptr, dirs_ptr, H, W, Dm, ORDER, LOWRANK,
            HAS_BIAS, SOFTPLUS, R, N, BLOCK_T, BLOCK_D, IN_WINDOW, WIDE)
        # The adjoint crosses each step with the next step's decay: delta from the tile reloaded one step on.
        # Bridging steps with the tile's own decays (a third scanned tensor) was tried and showed no clear win in
        # the compile reports: more shuffles or more registers (bench/README.md).
        _, _, _, _, _, delta_next, _, _ = load_chunk(  # the tile one step on: not inside one window
            pid_c * BLOCK_T + 1, t, b, k, pid_d, d, d_mask, U, X, DELTA, BC, PROJ, dirs_ptr, H, W, Dm, ORDER,
            LOWRANK, HAS_BIAS, SOFTPLUS, R, N, WIDE=WIDE)
        dn_mask = d_mask[:, None]
        chunk_base = (offset(pid_bk, WIDE) * n_chunks + pid_c) * Dm
        g_end = tl.load(arrive_ptr + (chunk_base + d[:, None]) * N + n[None, :], mask=dn_mask, other=0.0)
        pos_o = offset(pos, WIDE)
        mask_td = valid[:, None] & d_mask[None, :]

        # Recompute the chunk's states.
        decay, drive, h = _states_from_entry(entry_ptr, pid_bk, pid_c, n_chunks, Dm, d, d_mask, n, t, delta, u, Bm,
                                             A, WIDE)
        y_ssm = tl.sum(h * Cm, axis=2)

        if HAS_D:
            Dk = tl.load(Dskip_ptr + k * Dm + d, mask=d_mask, other=0.0).to(tl.float32)
        else:
            Dk = tl.zeros([BLOCK_D], dtype=tl.float32)
        y = y_ssm + u * Dk[None, :]
        # Gradient of this direction's output (its weight's and z's on the way).
        dy = _output_grads(y, pos_o, b_o, k, d, d_mask, valid, is_low, chunk_base, dout_ptr, s_gb, s_gk, s_gl,
                           s_gd, weight_ptr, dweight_part_ptr, z_ptr, dz_ptr, s_zb, s_zl, s_zd, tok_ptr, vec_ptr,
                           gbar_ptr, L_high, K, Dm, U[0], SUM_DIRECTIONS, HAS_WEIGHT, LN_UPSTREAM, HAS_Z, False,
                           WIDE, ROUND_FIRST)

        # dC is the last use of h: write it before the adjoint scan so that h and g are never live together (the
        # kernel's register peak, see compile_check).
        decayed_prev = h - drive  # exp(delta_t A) h_{t-1}
        dyh = h * dy[:, :, None]
        # dB's and dC's rows (columns of dx in the layer); state n lies as far on as in B and C.
        db_rows, dc_rows = channel_sum_rows(dx_ptr if LOWRANK else dB_ptr, dx_low_ptr if LOWRANK else dC_ptr, X, BC,
                                             b_o, pos_o, is_low, k, pid_d, ORDER, LOWRANK, R, N, BLOCK_D, WIDE)
        accumulate(dc_rows[:, None] + n[None, :] * (s_xc if LOWRANK else s_cn), tl.sum(dyh, axis=1),
                    valid[:, None], DETERMINISTIC)

        # Adjoint recurrence over the chunk, seeded with what arrives from later chunks.  The deterministic kernel
        # keeps Triton's reverse scan: it loops over channel blocks and already holds about 40 more registers, and
        # the reversal's extra ones spill there under Triton 3.6.
        g = tile_adjoint(delta_next, A, dy, Cm, g_end, t, BY_REGISTERS=not DETERMINISTIC)

        gB = tl.sum(g * Bm, axis=2)
        du = gB * delta + dy * Dk[None, :]
        g_prev = g * decayed_prev
        ddelta = gB * u + tl.sum(g_prev * A[None, :, :], axis=2)
        if SOFTPLUS:
            ddelta = ddelta / (1.0 + tl.exp(-delta_pre))
        ddelta = tl.where(mask_td, ddelta, 0.0)
        # The per-chunk sums first: g_prev dies here, before the product tiles below.
        tl.store(dA_part_ptr + (chunk_base + d[:, None]) * N + n[None, :],
                 tl.sum(g_prev * delta[:, :, None], axis=0), mask=dn_mask)
        tl.store(dD_part_ptr + chunk_base + d, tl.sum(dy * u, axis=0), mask=d_mask)
        tl.store(dbias_part_ptr + chunk_base + d, tl.sum(ddelta, axis=0), mask=d_mask)

        _accumulate_du(du_ptr, du_low_ptr, U, b_o, pos_o, is_low, valid, d, d_mask, du, ORDER, DETERMINISTIC, False,
                       WIDE)

        gdu = g * (delta * u)[:, :, None]
        accumulate(db_rows[:, None] + n[None, :] * (s_xc if LOWRANK else s_bn), tl.sum(gdu, axis=1),
                    valid[:, None], DETERMINISTIC)
        if LOWRANK:
            xrow = x_rows(X[0], X[1], X, b_o, pos_o, is_low, k, ORDER)
            dxrow = x_rows(dx_ptr, dx_low_ptr, X, b_o, pos_o, is_low, k, ORDER)
            # Through delta_pre = dt_low @ dt_weight[k].T.  Each product is one (T, D, RP) tile and one reduction:
            # a rank at a time took R reductions over channels, each with four barriers (the PTX).
            r = tl.arange(0, RP)
            mask_tr = valid[:, None] & (r < R)[None, :]
            mask_dr = d_mask[:, None] & (r < R)[None, :]
            w_t = tl.load(dtw_ptr + (k * Dm + d[None, :]) * R + r[:, None], mask=tl.trans(mask_dr),
                          other=0.0).to(tl.float32)  # (RP, D)
            accumulate(dxrow[:, None] + r[None, :] * s_xc, products_fp32(ddelta, w_t), mask_tr, DETERMINISTIC)
            cols = tl.load(xrow[:, None] + r[None, :] * s_xc, mask=mask_tr, other=0.0).to(tl.float32)
            tl.store(dW_part_ptr + (chunk_base + d[:, None]) * R + r[None, :],
                     tl.sum(ddelta[:, :, None] * cols[:, None, :], axis=0), mask=mask_dr)
        else:
            tl.store(ddelta_ptr + b_o * s_db + pos_o[:, None] * s_dl + offset(d, WIDE)[None, :] * s_dd, ddelta,
                     mask=mask_td)

        if DETERMINISTIC:
            # The next block's read-add-writes must see this block's stores, whichever thread made them.
            tl.debug_barrier()
