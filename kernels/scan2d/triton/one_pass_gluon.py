"""The one-pass lanes forward written in Gluon, every layout explicit (``TileConfig.one_pass_gluon``; opt-in, untimed).

``one_pass_lanes`` computes each (steps, states, channels) tile with the states across the lanes, but Triton picks
every other layout: it builds delta and u in the states' layout, once per state, and moves B, C and the (step,
channel) values as it sees fit (20-33 SASS instructions per element, bench/JOURNAL.md, "The states across the lanes in
the op").  This kernel does the same work, position for position, with two layouts of its own (``lanes_layouts``):

- ``TILE`` (steps, states, channels) for the recurrence: a thread holds one (state, channel) pair (more with wider
  channel blocks) and all the tile's steps in its registers, as in ``one_pass_lanes``;
- ``ROWS`` (steps, any, channels), one (step, channel) a thread with the middle axis in its registers: the dt ranks
  for the projection, the N states for y's sum.

Each tile: the steps' positions, u, delta (projection, bias, softplus) and du one (step, channel) a thread in
``ROWS``; delta and du converted into ``TILE`` (each thread takes its channel's steps); the positions converted to
every step of a thread for B and C's rows; the scan in each thread's registers; the products C h converted back to
``ROWS``, where the sum over the states is a thread's own additions; the output stored as ``one_pass_lanes`` stores
it (z, direction weights, the directions' sum, atomics).  The prototype of the layout, its counts and what remains:
bench/JOURNAL.md, "The states across the lanes in Gluon".

Under the interpreter ``gluon_lang`` runs this source with its layouts dropped, so CI checks it like every kernel.
"""

import triton
import triton.language as tl

from .gluon_lang import gl, jit
from .positions import DIRECTION_COLUMNS, RASTER, plain_window_geometry, plain_window_tile, tile_positions
from .recurrence import LOG2E, combine
from .tile_io import block_group, channels_of_block, offset, one_pass_params, one_pass_store, step_deltas


def lanes_layouts(block_d: int, warps: int, n_state: int, block_t: int):
    """(TILE, ROWS) of ``one_pass_gluon_kernel``: the N states across the lanes, 32 / N channels across the rest of
    a warp's lanes, the warps over channels and the block's remaining channels in each thread's registers; ROWS the
    tile's steps across the lanes (32 at most), then the channels.  Raises ValueError for a block that cannot fill the
    layout (``fits``)."""
    if not fits(block_d, warps, n_state):
        lanes_d = 32 // n_state if n_state <= 32 and 32 % n_state == 0 else None
        hint = f"a multiple of {lanes_d * warps} channels" if lanes_d else "a state size that divides 32"
        raise ValueError(f"the Gluon lanes forward cannot lay {block_d} channels of {n_state} states over {warps} "
                         f"warps: choose {hint} (TileConfig.one_pass_lanes_block_d, one_pass_lanes_warps)")
    lanes_d = 32 // n_state
    tile = gl.BlockedLayout([block_t, 1, block_d // (lanes_d * warps)], [1, n_state, lanes_d], [1, 1, warps],
                            [0, 1, 2])
    steps_across = min(block_t, 32)
    rows = gl.BlockedLayout([1, 1, 1], [steps_across, 1, 32 // steps_across], [1, 1, warps], [0, 1, 2])
    return tile, rows


def fits(block_d: int, warps: int, n_state: int) -> bool:
    """Whether ``lanes_layouts`` lays a block of ``block_d`` channels of ``n_state`` states over ``warps`` warps:
    the states a divisor of 32, the channels a multiple of (32 / states) x warps."""
    if n_state > 32 or 32 % n_state:
        return False
    per_layer = (32 // n_state) * warps
    return block_d >= per_layer and block_d % per_layer == 0


@jit
def _channels(pid_d, per_group, Dm, BLOCK_D: tl.constexpr, ONE_GROUP: tl.constexpr, layout: tl.constexpr):
    """``tile_io.block_channels`` with the channels' layout given: (d, mask)."""
    return channels_of_block(pid_d, gl.arange(0, BLOCK_D, layout=layout), per_group, Dm, BLOCK_D, ONE_GROUP)


@jit
def program_operands(pid_d, b_o, k, X, BC, dirs_ptr, H, W, ORDER: tl.constexpr, LOWRANK: tl.constexpr,
                     R: tl.constexpr, N: tl.constexpr, BLOCK_D: tl.constexpr, IN_WINDOW: tl.constexpr,
                     WIDE: tl.constexpr, TN: tl.constexpr):
    """What a program's tiles address, worked out once per program (``tile_inputs`` takes it): (B's pointers at
    each state of a thread's pairs, (N,) in TN's states axis; the same in x_low (LOWRANK) or C's (the drop-in); C's
    distance from B in an x row (LOWRANK; C's columns follow B's) or 0; the window geometry of a plain windowed
    direction, ``positions.plain_window_geometry``, or 0).  Each step then adds its row's offset."""
    n_tn = gl.arange(0, N, layout=gl.SliceLayout(0, TN))
    if LOWRANK:
        x_ptr, x_low_ptr, s_xb, s_xl, s_xk, s_xr, s_xb_low = X
        bases = (x_ptr + k * s_xk + (R + n_tn) * s_xr, x_low_ptr + k * s_xk + (R + n_tn) * s_xr, N * s_xr)
    else:
        B_ptr, C_ptr, s_bb, s_bg, s_bn, s_bl, s_cb, s_cg, s_cn, s_cl, per_group = BC
        grp = block_group(pid_d, per_group, BLOCK_D, WIDE)
        bases = (B_ptr + b_o * s_bb + grp * s_bg + n_tn * s_bn, C_ptr + b_o * s_cb + grp * s_cg + n_tn * s_cn, 0)
    if ORDER == 0 and IN_WINDOW and IN_WINDOW != RASTER:  # read once rather than every tile
        geometry = plain_window_geometry(dirs_ptr + k * DIRECTION_COLUMNS, H, W)
    else:
        geometry = 0
    return bases, geometry


@jit
def tile_inputs(tile, t_sc, b_o, k, d_o, d_mask, bias, w, r_tr, bases, geometry, U, X, DELTA, BC, dirs_ptr, H, W,
                ORDER: tl.constexpr, LOWRANK: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
                R: tl.constexpr, BLOCK_T: tl.constexpr, IN_WINDOW: tl.constexpr, WIDE: tl.constexpr,
                TN: tl.constexpr, TR: tl.constexpr):
    """Tile ``tile``'s steps as the Gluon kernels read them: positions, u and delta one (step, channel) a thread
    (SC, ``ROWS`` sliced), x's dt ranks one step a thread (TR), B and C at every step of each thread's (state,
    channel) pairs (TN).  d_o (1, BLOCK_D) and d_mask (BLOCK_D,): the program's channels in SC; w (RP, BLOCK_D)
    and r_tr (RP,): the dt projection's weights and ranks (LOWRANK); bases, geometry: ``program_operands``.

    Returns (pos, is_low, valid) (BLOCK_T,), mask (BLOCK_T, BLOCK_D) (valid step and channel), u, x's ranks
    (BLOCK_T, RP; 0 without LOWRANK), delta_pre (the projection plus bias, before softplus), delta (0 where not
    ``mask``: decay 1 and input 0, the recurrence's identity), Bm and Cm (BLOCK_T, N), all float32.  B and C are
    read unmasked: an invalid step reads position 0 (always in bounds), and its delta 0 makes it the identity
    whatever it reads.
    """
    T_TN: gl.constexpr = gl.SliceLayout(1, TN)
    T_TR: gl.constexpr = gl.SliceLayout(1, TR)
    if ORDER == 0 and IN_WINDOW and IN_WINDOW != RASTER:
        pos, is_low, valid = plain_window_tile(geometry, tile * BLOCK_T, t_sc, BLOCK_T)
    else:
        pos, is_low, valid = tile_positions(tile * BLOCK_T, t_sc, k, dirs_ptr, H, W, ORDER, IN_WINDOW, BLOCK=BLOCK_T)
    pos_o = offset(pos, WIDE)[:, None]
    mask = valid[:, None] & d_mask[None, :]
    u_ptr, u_low_ptr, s_ub, s_ul, s_ud, s_ub_low = U
    high_u = u_ptr + b_o * s_ub + pos_o * s_ul + d_o * s_ud
    if ORDER == 0:
        u = gl.load(high_u, mask=mask, other=0.0).to(gl.float32)
    else:
        low_u = u_low_ptr + b_o * s_ub_low + pos_o * s_ul + d_o * s_ud
        u = gl.load(gl.where(is_low[:, None], low_u, high_u), mask=mask, other=0.0).to(gl.float32)
    # Each step's row offset in B and C (x's rows in the layer), worked out once per step and moved to every thread
    # that reads the step's B and C.
    if LOWRANK:
        x_ptr, x_low_ptr, s_xb, s_xl, s_xk, s_xr, s_xb_low = X
        if ORDER == 0:
            rows = b_o * s_xb + offset(pos, WIDE) * s_xl
        else:
            rows = gl.where(is_low, b_o * s_xb_low, b_o * s_xb) + offset(pos, WIDE) * s_xl
        # The ranks of each step's x row in the registers of its threads.
        rows_tr = gl.convert_layout(rows, T_TR)
        if ORDER == 0:
            xrow = x_ptr + k * s_xk + rows_tr
        else:
            xrow = gl.where(gl.convert_layout(is_low, T_TR), x_low_ptr, x_ptr) + k * s_xk + rows_tr
        x_mask = gl.convert_layout(valid, T_TR)[:, None] & (r_tr < R)[None, :]
        xr = gl.load(xrow[:, None] + r_tr[None, :] * s_xr, mask=x_mask, other=0.0).to(gl.float32)
        delta_pre = gl.sum(gl.expand_dims(xr, 2) * gl.expand_dims(w, 0), axis=1)
    else:
        xr = 0.0
        rows = offset(pos, WIDE) * BC[5]
        delta_ptr, s_db, s_dl, s_dd = DELTA
        delta_pre = gl.load(delta_ptr + b_o * s_db + pos_o * s_dl + d_o * s_dd, mask=mask, other=0.0).to(gl.float32)
    delta_pre, delta = step_deltas(delta_pre, bias, mask, HAS_BIAS, SOFTPLUS)
    b_base, other_base, c_apart = bases
    rows_tn = gl.expand_dims(gl.convert_layout(rows, T_TN), 1)
    if LOWRANK:
        if ORDER == 0:
            b_ptrs = gl.expand_dims(b_base, 0) + rows_tn
        else:
            low_tn = gl.expand_dims(gl.convert_layout(is_low, T_TN), 1)
            b_ptrs = gl.where(low_tn, gl.expand_dims(other_base, 0), gl.expand_dims(b_base, 0)) + rows_tn
        c_ptrs = b_ptrs + c_apart
    else:
        b_ptrs = gl.expand_dims(b_base, 0) + rows_tn
        c_ptrs = gl.expand_dims(other_base, 0) + gl.expand_dims(gl.convert_layout(offset(pos, WIDE) * BC[9], T_TN),
                                                                 1)
    Bm = gl.load(b_ptrs).to(gl.float32)
    Cm = gl.load(c_ptrs).to(gl.float32)
    return pos, is_low, valid, mask, u, xr, delta_pre, delta, Bm, Cm


@jit
def program_layouts_and_weights(pid_d, k, BC, PROJ, A_ptr, Dm, LOWRANK: tl.constexpr, R: tl.constexpr,
                                RP: tl.constexpr, N: tl.constexpr, BLOCK_D: tl.constexpr, TILE: tl.constexpr,
                                ROWS: tl.constexpr):
    """The program's channels and direction k's per-channel weights, each in the layout that uses it: (d, d_mask)
    (BLOCK_D,) in SC's channels axis; (d_nd, d_nd_mask) in ND's; A (N, BLOCK_D) in ND, float32; w (RP, BLOCK_D)
    the dt projection's weights in RD (0 without LOWRANK); r_tr (RP,) the ranks in TR's."""
    SC: gl.constexpr = gl.SliceLayout(1, ROWS)
    ND: gl.constexpr = gl.SliceLayout(0, TILE)
    RD: gl.constexpr = gl.SliceLayout(0, ROWS)
    d, d_mask = _channels(pid_d, BC[10], Dm, BLOCK_D, LOWRANK, gl.SliceLayout(0, SC))
    d_nd, d_nd_mask = _channels(pid_d, BC[10], Dm, BLOCK_D, LOWRANK, gl.SliceLayout(0, ND))
    n_nd = gl.arange(0, N, layout=gl.SliceLayout(1, ND))
    A = gl.load(A_ptr + (k * Dm + d_nd[None, :]) * N + n_nd[:, None], mask=d_nd_mask[None, :],
                other=0.0).to(gl.float32)
    if LOWRANK:  # (RP, BLOCK_D): the dt projection's weights, in the registers of each (step, channel) thread
        d_rd, d_rd_mask = _channels(pid_d, BC[10], Dm, BLOCK_D, LOWRANK, gl.SliceLayout(0, RD))
        r_rd = gl.arange(0, RP, layout=gl.SliceLayout(1, RD))
        w = gl.load(PROJ[0] + (k * Dm + d_rd[None, :]) * R + r_rd[:, None],
                    mask=(r_rd < R)[:, None] & d_rd_mask[None, :], other=0.0).to(gl.float32)
    else:
        w = 0.0
    r_tr = gl.arange(0, RP, layout=gl.SliceLayout(0, gl.SliceLayout(2, ROWS)))
    return d, d_mask, d_nd, d_nd_mask, A, w, r_tr


@jit(do_not_specialize=["k_first"])  # one compiled kernel for every direction
def one_pass_gluon_kernel(
    out_ptr, s_ob, s_ok, s_ol, s_od, weight_ptr, entry_ptr, dsum_ptr, final_ptr,
    Dskip_ptr, z_ptr, s_zb, s_zl, s_zd,
    U, X, DELTA, BC, PROJ, A_ptr, dirs_ptr, K, H, W, Dm, n_chunks, k_first, k_count, length,
    ORDER: tl.constexpr, LOWRANK: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_WEIGHT: tl.constexpr, ACCUMULATE: tl.constexpr,
    STORE_STATES: tl.constexpr, R: tl.constexpr, RP: tl.constexpr, N: tl.constexpr, BLOCK_T: tl.constexpr,
    BLOCK_D: tl.constexpr, IN_WINDOW: tl.constexpr, WIDE: tl.constexpr, ATOMIC: tl.constexpr,
    TILE: tl.constexpr, ROWS: tl.constexpr,
):
    """``one_pass_lanes.one_pass_lanes_kernel``'s outputs, arguments and grid, with its layouts explicit.

    RP: R's next power of two (the dt ranks a ``ROWS`` thread holds, the rest masked).  TILE, ROWS:
    ``lanes_layouts`` of (BLOCK_D, the program's warps, N, BLOCK_T).  The other arguments, the outputs (out, entry,
    dsum, final) and the treatment of invalid steps are ``one_pass_lanes_kernel``'s.
    """
    TN: gl.constexpr = gl.SliceLayout(2, TILE)  # (steps, states): B and C
    ND: gl.constexpr = gl.SliceLayout(0, TILE)  # (states, channels): A, the state between tiles
    TD: gl.constexpr = gl.SliceLayout(1, TILE)  # (steps, channels) as the tile's threads hold them
    SC: gl.constexpr = gl.SliceLayout(1, ROWS)  # (steps, channels), one pair a thread
    TR: gl.constexpr = gl.SliceLayout(2, ROWS)  # (steps, ranks)
    pid_g, pid_d = gl.program_id(0), gl.program_id(1)
    b, k = pid_g // k_count, k_first + pid_g % k_count
    b_o = offset(b, WIDE)
    bk_o = offset(b * K + k, WIDE)

    d, d_mask, d_nd, d_nd_mask, A, w, r_tr = program_layouts_and_weights(pid_d, k, BC, PROJ, A_ptr, Dm, LOWRANK, R,
                                                                         RP, N, BLOCK_D, TILE, ROWS)
    a = A * LOG2E
    d_o = offset(d, WIDE)[None, :]
    params = k * Dm + d[None, :]  # this direction's row of the (K, dim) parameters
    Dk, bias, wk = one_pass_params(Dskip_ptr, PROJ[1], weight_ptr, params, b_o, K, Dm, d_mask[None, :], HAS_D,
                                   HAS_BIAS, HAS_WEIGHT)
    n_nd = gl.arange(0, N, layout=gl.SliceLayout(1, ND))
    state_rows = d_nd[None, :] * N + n_nd[:, None]  # (N, BLOCK_D) offsets of the (dim, N) states
    state_mask = (n_nd[:, None] >= 0) & d_nd_mask[None, :]
    t_sc = gl.arange(0, BLOCK_T, layout=gl.SliceLayout(1, SC))
    t_tn = gl.arange(0, BLOCK_T, layout=gl.SliceLayout(1, TN))
    first_step = gl.expand_dims(gl.expand_dims(t_tn == 0, 1), 2)  # (BLOCK_T, 1, 1)
    last_step = gl.expand_dims(gl.expand_dims(t_tn == BLOCK_T - 1, 1), 2)
    bases, geometry = program_operands(pid_d, b_o, k, X, BC, dirs_ptr, H, W, ORDER, LOWRANK, R, N, BLOCK_D,
                                       IN_WINDOW, WIDE, TN)
    h = gl.zeros([N, BLOCK_D], gl.float32, ND)
    for tile in range(0, gl.cdiv(length, BLOCK_T)):
        pos, is_low, valid, mask, u, xr, delta_pre, delta, Bm, Cm = tile_inputs(
            tile, t_sc, b_o, k, d_o, d_mask, bias, w, r_tr, bases, geometry, U, X, DELTA, BC, dirs_ptr, H, W,
            ORDER, LOWRANK, HAS_BIAS, SOFTPLUS, R, BLOCK_T, IN_WINDOW, WIDE, TN, TR)
        if STORE_STATES:  # the state entering this tile, the backward's chunk, and the chunk's delta sum
            chunk_o = bk_o * n_chunks + tile
            gl.store(entry_ptr + chunk_o * Dm * N + state_rows, h, mask=state_mask)
            gl.store(dsum_ptr + chunk_o * Dm + d, gl.sum(delta, axis=0), mask=d_mask)
        # The recurrence, each thread's steps in its registers; the state entering the tile joins its first step.
        decay = gl.exp2(gl.expand_dims(gl.convert_layout(delta, TD), 1) * gl.expand_dims(a, 0))
        drive = gl.expand_dims(gl.convert_layout(delta * u, TD), 1) * gl.expand_dims(Bm, 2)
        drive = gl.where(first_step, drive + decay * gl.expand_dims(h, 0), drive)
        _, states = gl.associative_scan((decay, drive), 0, combine)
        # The last step's state (an invalid last step carries it unchanged): -0.0 elsewhere, so that the sum is that
        # one register, exactly.
        h = gl.sum(gl.where(last_step, states, -0.0), axis=0)
        # y: the products C h moved to one (step, channel) a thread, summed over the states in its registers.
        y = gl.sum(gl.convert_layout(states * gl.expand_dims(Cm, 2), ROWS), axis=1)
        if HAS_D:
            y += u * Dk
        one_pass_store(y, out_ptr, s_ob, s_ok, s_ol, s_od, z_ptr, s_zb, s_zl, s_zd, wk, b_o, k,
                       offset(pos, WIDE)[:, None], d_o, mask, is_low[:, None], HAS_Z, HAS_WEIGHT, ACCUMULATE, WIDE,
                       ATOMIC)
    gl.store(final_ptr + bk_o * Dm * N + state_rows, h, mask=state_mask)


def rank_block(rank: int) -> int:
    """The dt ranks a thread of ``ROWS`` holds: ``rank``'s next power of two (1 without a projection)."""
    return triton.next_power_of_2(max(rank, 1))
