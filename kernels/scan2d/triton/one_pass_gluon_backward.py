"""The one-pass lanes backward written in Gluon, every layout explicit (``TileConfig.one_pass_gluon_backward``;
opt-in, untimed).

``one_pass_lanes_backward`` walks each scan from its last tile to its first, one program per (batch, direction, block
of channels), the (steps, states, channels) tiles with each thread holding its (state, channel) pairs' steps in
registers; Triton picks every other layout, and its tile costs 76 SASS instructions per element, a quarter of them in
the sums over the channels (dB, dC) and over the states (bench/JOURNAL.md, "The backward in one pass, the states
across the lanes").  This kernel does the same work with the layouts of the Gluon forward (``one_pass_gluon``) and
one more (``backward_layouts``):

- ``TILE`` (steps, states, channels): the recurrence and the adjoint, each a scan in a thread's registers (the
  adjoint over the steps reversed, ``recurrence.reverse_steps``, which renames registers: Triton lowers
  ``associative_scan(reverse=True)`` with shuffles even along registers);
- ``ROWS`` (steps, any, channels), one (step, channel) a thread with the middle axis in its registers: positions, u,
  delta and its gradient once per (step, channel), and the sums over the states (y, sum_n g B, sum_n g A e h) of
  tiles converted there, each a thread's own additions; the dt weight's gradient accumulates there elementwise over
  the tiles and is summed over the steps once, at the end;
- ``COLS`` (steps, any, channels), one (step, state or rank) a thread or two with the block's channels in its
  registers: the sums over the channels (dB, dC, the dt low-rank input's gradient), a thread's own additions, then
  one float32 atomic per (step, state or rank) and program, no thread adding what another adds.

The arguments, grid, outputs and atomics are ``one_pass_lanes_backward_kernel``'s, so that
``launch.one_pass_lanes_backward_launch`` launches either.  Under the interpreter ``gluon_lang`` runs this source with
its layouts dropped, so CI checks it like every kernel.
"""

import triton.language as tl

from .backward_kernels import _accumulate_du, _upstream_grad, through_z_gate, weight_grad
from .gluon_lang import gl, jit
from .one_pass_gluon import lanes_layouts, program_layouts_and_weights, program_operands, tile_inputs
from .recurrence import LOG2E, adjoint_combine, combine, reverse_steps
from .tile_io import accumulate, channel_sum_rows, offset, one_pass_params, store_td, x_rows


def backward_layouts(block_d: int, warps: int, n_state: int, block_t: int):
    """(TILE, ROWS, COLS) of ``one_pass_gluon_backward_kernel``: ``one_pass_gluon.lanes_layouts``' two, and COLS, the
    block's channels in each thread's registers, the tile's steps across the lanes (32 at most), the middle axis
    (states or dt ranks) across the rest of the lanes and the warps.  Raises ValueError where the first two cannot
    hold the block (``one_pass_gluon.fits``)."""
    tile, rows = lanes_layouts(block_d, warps, n_state, block_t)
    steps_across = min(block_t, 32)
    cols = gl.BlockedLayout([1, 1, block_d], [steps_across, 32 // steps_across, 1], [1, warps, 1], [2, 1, 0])
    return tile, rows, cols


@jit
def _sum_over_channels(x, COLS: tl.constexpr):
    """x (steps, M, channels) summed over its channels: converted to COLS, where they are a thread's registers."""
    return gl.sum(gl.convert_layout(x, COLS), axis=2)


@jit
def _sum_over_states(x, ROWS: tl.constexpr):
    """x (steps, states, channels) summed over its states: converted to ROWS, where they are a thread's registers."""
    return gl.sum(gl.convert_layout(x, ROWS), axis=1)


@jit(do_not_specialize=["k_first"])  # one compiled kernel for every direction
def one_pass_gluon_backward_kernel(
    # gradients
    du_ptr, du_low_ptr, ddelta_ptr, dx_ptr, dx_low_ptr, dB_ptr, dC_ptr, dz_ptr,
    dA_part_ptr, dD_part_ptr, dbias_part_ptr, dW_part_ptr, dweight_part_ptr,
    # upstream and saved
    dout_ptr, s_gb, s_gk, s_gl, s_gd, weight_ptr, entry_ptr, Dskip_ptr, z_ptr, s_zb, s_zl, s_zd,
    tok_ptr, vec_ptr, gbar_ptr, L_high,
    U, X, DELTA, BC, PROJ, A_ptr, dirs_ptr, K, H, W, Dm, n_chunks, k_first, k_count, length,
    ORDER: tl.constexpr, LOWRANK: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, SUM_DIRECTIONS: tl.constexpr, HAS_WEIGHT: tl.constexpr,
    LN_UPSTREAM: tl.constexpr, DU_OWNED: tl.constexpr, R: tl.constexpr, N: tl.constexpr, BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr, RP: tl.constexpr, IN_WINDOW: tl.constexpr, WIDE: tl.constexpr,
    ROUND_FIRST: tl.constexpr, TILE: tl.constexpr, ROWS: tl.constexpr, COLS: tl.constexpr,
):
    """``one_pass_lanes_backward.one_pass_lanes_backward_kernel``'s gradients, arguments and grid, with its layouts
    explicit.

    RP: R's next power of two (the dt ranks a ``ROWS`` thread holds, the rest masked).  TILE, ROWS, COLS:
    ``backward_layouts`` of (BLOCK_D, the program's warps, N, BLOCK_T).  The other arguments, the buffers it adds to
    or stores (du by atomics, or with DU_OWNED a read-add-write; dB, dC and the dt input's gradient by atomics; the
    sums over steps one row per (batch, direction)) and the entry states it reads are that kernel's.
    """
    TN: gl.constexpr = gl.SliceLayout(2, TILE)  # (steps, states): B and C
    ND: gl.constexpr = gl.SliceLayout(0, TILE)  # (states, channels): A, the states and adjoints between tiles
    TD: gl.constexpr = gl.SliceLayout(1, TILE)  # (steps, channels) as the tile's threads hold them
    SC: gl.constexpr = gl.SliceLayout(1, ROWS)  # (steps, channels), one pair a thread
    TR: gl.constexpr = gl.SliceLayout(2, ROWS)  # (steps, ranks)
    RD: gl.constexpr = gl.SliceLayout(0, ROWS)  # (ranks, channels)
    CS: gl.constexpr = gl.SliceLayout(2, COLS)  # (steps, states or ranks): the sums over channels
    T_CS: gl.constexpr = gl.SliceLayout(1, CS)
    pid_g, pid_d = gl.program_id(0), gl.program_id(1)
    b, k = pid_g // k_count, k_first + pid_g % k_count
    b_o = offset(b, WIDE)
    bk_o = offset(b * K + k, WIDE)

    d, d_mask, d_nd, d_nd_mask, A, w, r_tr = program_layouts_and_weights(pid_d, k, BC, PROJ, A_ptr, Dm, LOWRANK, R,
                                                                         RP, N, BLOCK_D, TILE, ROWS)
    a = A * LOG2E
    d_o = offset(d, WIDE)[None, :]
    # (1, BLOCK_D) each; the direction weight multiplies dy in _upstream_grad.
    Dk, bias, no_weight = one_pass_params(Dskip_ptr, PROJ[1], Dskip_ptr, k * Dm + d[None, :], b_o, K, Dm,
                                          d_mask[None, :], HAS_D, HAS_BIAS, False)
    n_nd = gl.arange(0, N, layout=gl.SliceLayout(1, ND))
    state_rows = d_nd[None, :] * N + n_nd[:, None]  # (N, BLOCK_D) offsets of the (dim, N) states
    state_mask = (n_nd[:, None] >= 0) & d_nd_mask[None, :]
    t_sc = gl.arange(0, BLOCK_T, layout=gl.SliceLayout(1, SC))
    t_tn = gl.arange(0, BLOCK_T, layout=gl.SliceLayout(1, TN))
    first_step = gl.expand_dims(gl.expand_dims(t_tn == 0, 1), 2)  # (BLOCK_T, 1, 1)
    last_step = gl.expand_dims(gl.expand_dims(t_tn == BLOCK_T - 1, 1), 2)
    n_cs = gl.arange(0, N, layout=gl.SliceLayout(0, CS))
    r_cs = gl.arange(0, RP, layout=gl.SliceLayout(0, CS))
    if LOWRANK:  # state n of dB and dC lies as far on as in B and C
        s_bn, s_cn = X[5], X[5]
    else:
        s_bn, s_cn = BC[4], BC[8]
    bases, geometry = program_operands(pid_d, b_o, k, X, BC, dirs_ptr, H, W, ORDER, LOWRANK, R, N, BLOCK_D,
                                       IN_WINDOW, WIDE, TN)
    ones = gl.full([BLOCK_T, N, BLOCK_D], 1.0, gl.float32, TILE)
    g_next = gl.zeros([N, BLOCK_D], gl.float32, ND)  # the adjoint the tiles after this one send to its last step
    dA_sum = gl.zeros([N, BLOCK_D], gl.float32, ND)
    # The sums over steps of (step, channel) terms, kept elementwise and summed over the steps once, at the end.
    dD_sum = gl.zeros([BLOCK_T, BLOCK_D], gl.float32, SC)
    dbias_sum = gl.zeros([BLOCK_T, BLOCK_D], gl.float32, SC)
    dW_sum = gl.zeros([BLOCK_T, RP, BLOCK_D], gl.float32, ROWS)
    dweight_sum = gl.zeros([BLOCK_D], gl.float32, gl.SliceLayout(0, SC))
    n_tiles = gl.cdiv(length, BLOCK_T)
    for i in range(0, n_tiles):
        tile = n_tiles - 1 - i
        pos, is_low, valid, mask, u, xr, delta_pre, delta, Bm, Cm = tile_inputs(
            tile, t_sc, b_o, k, d_o, d_mask, bias, w, r_tr, bases, geometry, U, X, DELTA, BC, dirs_ptr, H, W,
            ORDER, LOWRANK, HAS_BIAS, SOFTPLUS, R, BLOCK_T, IN_WINDOW, WIDE, TN, TR)
        pos_o = offset(pos, WIDE)

        # The tile's states from the one entering it, which the training forward stored.
        h0 = gl.load(entry_ptr + (bk_o * n_chunks + tile) * Dm * N + state_rows, mask=state_mask, other=0.0)
        du_delta = delta * u
        delta_td = gl.expand_dims(gl.convert_layout(delta, TD), 1)
        decay = gl.exp2(delta_td * gl.expand_dims(a, 0))  # (BLOCK_T, N, BLOCK_D), each exponential once
        du_delta_td = gl.expand_dims(gl.convert_layout(du_delta, TD), 1)
        drive = du_delta_td * gl.expand_dims(Bm, 2)
        _, h = gl.associative_scan((decay, gl.where(first_step, drive + decay * gl.expand_dims(h0, 0), drive)), 0,
                                   combine)

        # The gradient reaching each step's C.h + D u (its direction weight's and z's on the way), one (step,
        # channel) a thread.
        y = gl.zeros([BLOCK_T, BLOCK_D], gl.float32, SC)
        if HAS_Z or (SUM_DIRECTIONS and HAS_WEIGHT) or LN_UPSTREAM:  # what needs the outputs
            y = _sum_over_states(h * gl.expand_dims(Cm, 2), ROWS) + u * Dk
        dy = _upstream_grad(pos_o, b_o, k, d, d_mask, valid, is_low, dout_ptr, s_gb, s_gk, s_gl, s_gd, weight_ptr,
                            K, Dm, y, tok_ptr, vec_ptr, gbar_ptr, L_high, U[0], SUM_DIRECTIONS, HAS_WEIGHT,
                            LN_UPSTREAM, False, WIDE, ROUND_FIRST)
        if SUM_DIRECTIONS and HAS_WEIGHT and not LN_UPSTREAM:  # (with LN_UPSTREAM a gate pass has it already)
            dweight_sum += weight_grad(y, pos_o, b_o, d, d_mask, valid, is_low, dout_ptr, s_gb, s_gl, s_gd, WIDE)
        if HAS_Z:
            dy = through_z_gate(dy, y, pos_o, b_o, d, d_mask, valid, z_ptr, dz_ptr, s_zb, s_zl, s_zd, False, WIDE, True)
        dy_td = gl.expand_dims(gl.convert_layout(dy, TD), 1)

        # dC, a sum over the channels; each (step, state) added by one thread.  A low-resolution token's dy is 0: no
        # dC to add.
        db_rows, dc_rows = channel_sum_rows(dx_ptr if LOWRANK else dB_ptr, dx_low_ptr if LOWRANK else dC_ptr, X, BC,
                                             b_o, pos_o, is_low, k, pid_d, ORDER, LOWRANK, R, N, BLOCK_D, WIDE)
        valid_cs = gl.convert_layout(valid, T_CS)[:, None]
        high_cs = valid_cs & (gl.convert_layout(is_low, T_CS) == 0)[:, None]
        accumulate(gl.convert_layout(dc_rows, T_CS)[:, None] + n_cs[None, :] * s_cn,
                   _sum_over_channels(h * dy_td, COLS), high_cs, False)

        # The adjoint over the steps reversed (the tile's last step first, seeded with what the later tiles send): a
        # forward scan in each thread's registers.
        # (The reversed tiles back in TILE, a renaming of registers: with one state Gluon infers other layouts for
        # them than ones', and a scan's operands must share one.)
        seed = gl.expand_dims(Cm, 2) * dy_td + gl.where(last_step, gl.expand_dims(g_next, 0), 0.0)
        _, _, g = gl.associative_scan((gl.convert_layout(reverse_steps(decay), TILE), ones,
                                       gl.convert_layout(reverse_steps(seed), TILE)), 0, adjoint_combine)
        g = gl.convert_layout(reverse_steps(g), TILE)
        g_next = gl.sum(gl.where(first_step, decay * g, 0.0), axis=0)  # sent through the tile's first decay

        g_prev = g * (h - drive)  # g exp(delta A) h_prev
        dA_sum += gl.sum(g_prev * delta_td, axis=0)
        accumulate(gl.convert_layout(db_rows, T_CS)[:, None] + n_cs[None, :] * s_bn,
                   _sum_over_channels(g * du_delta_td, COLS), valid_cs, False)
        gB = _sum_over_states(g * gl.expand_dims(Bm, 2), ROWS)  # (BLOCK_T, BLOCK_D) in SC
        ddelta = gB * u + _sum_over_states(g_prev * gl.expand_dims(A, 0), ROWS)
        du = gB * delta + dy * Dk
        if SOFTPLUS:
            ddelta = ddelta / (1.0 + gl.exp(-delta_pre))
        ddelta = gl.where(mask, ddelta, 0.0)
        dD_sum += dy * u
        dbias_sum += ddelta
        _accumulate_du(du_ptr, du_low_ptr, U, b_o, pos_o, is_low, valid, d, d_mask, du, ORDER, DU_OWNED, False, WIDE)
        if LOWRANK:  # through delta_pre = dt_low @ dt_weight[k].T: the input's gradient and the weight's
            dxrow = x_rows(dx_ptr, dx_low_ptr, X, b_o, pos_o, is_low, k, ORDER)
            accumulate(gl.convert_layout(dxrow, T_CS)[:, None] + r_cs[None, :] * X[5],
                       _sum_over_channels(gl.expand_dims(ddelta, 1) * gl.expand_dims(w, 0), COLS),
                       valid_cs & (r_cs < R)[None, :], False)
            dW_sum += gl.expand_dims(ddelta, 1) * gl.expand_dims(xr, 2)
        else:
            store_td(ddelta_ptr + b_o * DELTA[1], pos_o * DELTA[2], offset(d, WIDE) * DELTA[3], ddelta, valid,
                     d_mask, False)

    part = bk_o * Dm  # one row of sums per (batch, direction)
    gl.store(dA_part_ptr + part * N + state_rows, dA_sum, mask=state_mask)
    gl.store(dD_part_ptr + part + d, gl.sum(dD_sum, axis=0), mask=d_mask)
    gl.store(dbias_part_ptr + part + d, gl.sum(dbias_sum, axis=0), mask=d_mask)
    if SUM_DIRECTIONS and HAS_WEIGHT and not LN_UPSTREAM:
        gl.store(dweight_part_ptr + part + d, dweight_sum, mask=d_mask)
    if LOWRANK:
        r_rd = gl.arange(0, RP, layout=gl.SliceLayout(1, RD))
        d_rd = gl.convert_layout(d, gl.SliceLayout(0, RD))
        gl.store(dW_part_ptr + (part + d_rd[None, :]) * R + r_rd[:, None], gl.sum(dW_sum, axis=0),
                 mask=(r_rd < R)[:, None] & gl.convert_layout(d_mask, gl.SliceLayout(0, RD))[None, :])
