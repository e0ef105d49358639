"""The whole backward in one pass, all N states across the lanes (``TileConfig.one_pass_lanes_backward``; opt-in,
untimed).

The chunked backward makes three passes: ``chunk_adjoint`` (the adjoint each chunk sends back, with nothing from
later chunks), ``chunk_carry`` reversed (what arrives at each chunk's end) and ``backward_grads`` (every gradient),
each recomputing its chunk's states, and it keeps its sums over steps (dA, dD, the dt bias's and weight's) per chunk
or group of chunks for the host to add up.  Here one program per (batch, direction, block of channels) walks its scan
from the last tile to the first, the layout of ``one_pass_lanes`` ((steps, states, channels) tiles, each thread
holding its (state, channel) pair's steps in registers):
- each tile's states are recomputed from the entry state the forward stored (its tiles are the backward's chunks),
- the adjoint runs over the tile's steps reversed in registers (``reverse_steps``, ``adjoint_combine``: each step's
  own decay, no tile reloaded one step on), and what it sends to the tile before stays in registers,
- the sums over steps stay in registers until the scan's first step, then one store per program,
- the sums over channels (dB, dC, the dt low-rank input's gradient) are summed over the program's channels, then
  added with float32 atomics, as in ``backward_grads_kernel`` (deterministic mode keeps the chunked backward);
- the gated layer's LayerNorm gradient comes from each tile's recomputed outputs.
In the source one exponential per element, the states' decays, which the adjoint reuses (Triton builds them again
in the reversed steps' layout rather than move them: two in the PTX).
bench/JOURNAL.md, "The backward in one pass, the states across the lanes".
"""

import triton
import triton.language as tl

from .backward_kernels import _accumulate_du, _upstream_grad, through_z_gate, weight_grad
from .recurrence import LOG2E, adjoint_combine, combine, reverse_steps
from .tile_io import (
    accumulate, block_channels, channel_sum_rows, dot_fp32, load_steps, offset, products_fp32, store_td, x_rows,
)


@triton.jit(do_not_specialize=["k_first"])  # one compiled kernel for every direction
def one_pass_lanes_backward_kernel(
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
    PAIRED: tl.constexpr = False, ROUND_FIRST: tl.constexpr = False, DT_DOT: tl.constexpr = False,
):
    """All gradients of directions k_first .. k_first + k_count - 1, each program one (batch, direction, block of
    BLOCK_D channels) over its whole scan of ``length`` steps, in tiles of BLOCK_T steps from the last:

        h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t     (recomputed from entry, the state entering each tile)
        g_t = C_t dy_t + exp(delta_{t+1} A) g_{t+1}        (the adjoint, from the scan's end)
        du = delta sum_n g B + D dy     ddelta = sum_n g (B u + A exp(delta A) h_prev)
        dB = sum_d g delta u            dC = sum_d dy h       dA = sum_t g delta exp(delta A) h_prev

    Grid: (batch x k_count, channel blocks of BLOCK_D).  Gradient buffers as ``backward_grads_kernel``'s (zeroed,
    float32, laid out like their inputs; dB and dC columns of dx / dx_low in the layer (LOWRANK), laid out like B
    and C in the drop-in scan, which stores ddelta instead of dx's dt columns).  du, which the directions share, is
    added with atomics, or with DU_OWNED (one direction per launch) by a read-add-write.  The sums over steps go
    to (batch*K, 1, dim, ...) float32 buffers, one row per (batch, direction), stored once: dA_part (.., N),
    dD_part, dbias_part, dW_part (.., R), dweight_part (SUM_DIRECTIONS with HAS_WEIGHT, without LN_UPSTREAM).  dout:
    element (b, k, pos, d) at b * s_gb + k * s_gk + pos * s_gl + d * s_gd (s_gk = 0 for the directions' sum), times
    weight (batch, K, dim) with HAS_WEIGHT; z (batch, L, dim) through its strides, and dz stored (one direction: the
    drop-in scan).  LN_UPSTREAM (the gated layer): the gradient of the gate's pooled LayerNorm statistic from the
    recomputed outputs, as ``backward_kernels._upstream_grad`` forms it from tok (batch*K, L_high, 3), vec
    (batch*K, dim) and gbar (batch*K,), instead of or (SUM_DIRECTIONS) beside the output's; ROUND_FIRST: direction
    0's outputs rounded as the 16-bit gated forward stored them.
    entry: (batch*K, n_chunks, dim, N) float32, the state entering each tile of BLOCK_T steps (the backward's
    chunks).  RP: R padded to a power of two, at least 16 with DT_DOT (BLOCK_T >= 16: the dt input's gradient by
    tl.dot, ``tile_io.dot_fp32``).  IN_WINDOW: every tile lies inside one window
    (``operands.ScanOperands.in_windows`` of BLOCK_T).
    """
    pid_g, pid_d = tl.program_id(0), tl.program_id(1)
    b, k = pid_g // k_count, k_first + pid_g % k_count
    pid_bk = b * K + k
    b_o = offset(b, WIDE)
    d, d_mask = block_channels(pid_d, BC[10], Dm, BLOCK_D, LOWRANK)  # (BLOCK_D,)
    t = tl.arange(0, BLOCK_T)
    n = tl.arange(0, N)
    first = (t == 0)[:, None, None]
    last = (t == BLOCK_T - 1)[:, None, None]
    # (N, BLOCK_D): this direction's A for the block, the states' layout.
    state_rows = d[None, :] * N + n[:, None]
    state_mask = tl.broadcast_to(d_mask[None, :], [N, BLOCK_D])
    A = tl.load(A_ptr + k * Dm * N + state_rows, mask=state_mask, other=0.0).to(tl.float32)
    a = A * LOG2E
    if HAS_D:
        Dk = tl.load(Dskip_ptr + k * Dm + d, mask=d_mask, other=0.0).to(tl.float32)
    else:
        Dk = tl.zeros([BLOCK_D], dtype=tl.float32)
    if LOWRANK:
        r = tl.arange(0, RP)
        mask_dr = d_mask[:, None] & (r < R)[None, :]
        w_t = tl.load(PROJ[0] + (k * Dm + d[None, :]) * R + r[:, None], mask=tl.trans(mask_dr),
                      other=0.0).to(tl.float32)  # (RP, BLOCK_D): dt_weight[k] for the block, transposed
        dW_sum = tl.zeros([BLOCK_D, RP], dtype=tl.float32)
    entry_base = offset(pid_bk, WIDE) * n_chunks
    ones = tl.full([BLOCK_T, N, BLOCK_D], 1.0, tl.float32)
    g_next = tl.zeros([N, BLOCK_D], dtype=tl.float32)  # the adjoint the tiles after this one send to its last step
    dA_sum = tl.zeros([N, BLOCK_D], dtype=tl.float32)
    dD_sum = tl.zeros([BLOCK_D], dtype=tl.float32)
    dbias_sum = tl.zeros([BLOCK_D], dtype=tl.float32)
    dweight_sum = tl.zeros([BLOCK_D], dtype=tl.float32)
    n_tiles = tl.cdiv(length, BLOCK_T)
    for i in range(n_tiles):
        tile = n_tiles - 1 - i
        pos, is_low, valid, u, delta_pre, delta, b_rows, c_rows, s_bn, s_cn = load_steps(
            tile * BLOCK_T, t, b, k, pid_d, d, d_mask, U, X, DELTA, BC, PROJ, dirs_ptr, H, W, Dm, ORDER, LOWRANK,
            HAS_BIAS, SOFTPLUS, R, N, STEPS_IN_REGISTERS=True, PAIRED=PAIRED, IN_WINDOW=IN_WINDOW, WIDE=WIDE)
        pos_o = offset(pos, WIDE)
        mask_td = valid[:, None] & d_mask[None, :]
        # (BLOCK_T, N) rows of B and C, unmasked: an invalid step reads position 0 (in bounds), and its delta 0 and
        # dy 0 make it the identity of both recurrences whatever it reads.
        Bm = tl.load(b_rows[:, None] + n[None, :] * s_bn).to(tl.float32)
        Cm = tl.load(c_rows[:, None] + n[None, :] * s_cn).to(tl.float32)

        # The tile's states from the one entering it.
        h0 = tl.load(entry_ptr + (entry_base + tile) * Dm * N + state_rows, mask=state_mask, other=0.0)
        du_delta = delta * u
        decay = tl.exp2(delta[:, None, :] * a[None, :, :])  # (BLOCK_T, N, BLOCK_D)
        drive = du_delta[:, None, :] * Bm[:, :, None]
        _, h = tl.associative_scan((decay, drive + tl.where(first, decay * h0[None, :, :], 0.0)), 0, combine)

        # The gradient reaching each step's C.h + D u (its direction weight's and z's on the way).
        y = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)
        if HAS_Z or (SUM_DIRECTIONS and HAS_WEIGHT) or LN_UPSTREAM:  # what needs the outputs
            y = tl.sum(h * Cm[:, :, None], axis=1) + u * Dk[None, :]
        dy = _upstream_grad(pos_o, b_o, k, d, d_mask, valid, is_low, dout_ptr, s_gb, s_gk, s_gl, s_gd, weight_ptr,
                            K, Dm, y, tok_ptr, vec_ptr, gbar_ptr, L_high, U[0], SUM_DIRECTIONS, HAS_WEIGHT,
                            LN_UPSTREAM, False, WIDE, ROUND_FIRST)
        if SUM_DIRECTIONS and HAS_WEIGHT and not LN_UPSTREAM:  # (with LN_UPSTREAM a gate pass has it already)
            dweight_sum += weight_grad(y, pos_o, b_o, d, d_mask, valid, is_low, dout_ptr, s_gb, s_gl, s_gd, WIDE)
        if HAS_Z:
            dy = through_z_gate(dy, y, pos_o, b_o, d, d_mask, valid, z_ptr, dz_ptr, s_zb, s_zl, s_zd, False, WIDE, True)

        # dC, the last use of h but for h_prev below; state n lies as far on as in B and C.
        db_rows, dc_rows = channel_sum_rows(dx_ptr if LOWRANK else dB_ptr, dx_low_ptr if LOWRANK else dC_ptr, X, BC,
                                             b_o, pos_o, is_low, k, pid_d, ORDER, LOWRANK, R, N, BLOCK_D, WIDE)
        high = (valid & (is_low == 0))[:, None]  # a low-resolution token's dy is 0: no dC to add
        accumulate(dc_rows[:, None] + n[None, :] * s_cn, tl.sum(h * dy[:, None, :], axis=2), high, False)

        # The adjoint over the steps reversed (the tile's last step first, seeded with what the later tiles send):
        # a forward scan in each thread's registers.
        seed = Cm[:, :, None] * dy[:, None, :] + tl.where(last, g_next[None, :, :], 0.0)
        _, _, g = tl.associative_scan((reverse_steps(decay), ones, reverse_steps(seed)), 0, adjoint_combine)
        g = reverse_steps(g)
        g_next = tl.sum(tl.where(first, decay * g, 0.0), axis=0)  # sent through the tile's first decay

        gB = tl.sum(g * Bm[:, :, None], axis=1)  # (BLOCK_T, BLOCK_D)
        g_prev = g * (h - drive)  # g exp(delta A) h_prev
        ddelta = gB * u + tl.sum(g_prev * A[None, :, :], axis=1)
        dA_sum += tl.sum(g_prev * delta[:, None, :], axis=0)
        accumulate(db_rows[:, None] + n[None, :] * s_bn, tl.sum(g * du_delta[:, None, :], axis=2), valid[:, None],
                   False)
        du = gB * delta + dy * Dk[None, :]
        if SOFTPLUS:
            ddelta = ddelta / (1.0 + tl.exp(-delta_pre))
        ddelta = tl.where(mask_td, ddelta, 0.0)
        dD_sum += tl.sum(dy * u, axis=0)
        dbias_sum += tl.sum(ddelta, axis=0)
        _accumulate_du(du_ptr, du_low_ptr, U, b_o, pos_o, is_low, valid, d, d_mask, du, ORDER, DU_OWNED, False, WIDE)
        if LOWRANK:  # through delta_pre = dt_low @ dt_weight[k].T: the input's gradient and the weight's
            mask_tr = valid[:, None] & (r < R)[None, :]
            dxrow = x_rows(dx_ptr, dx_low_ptr, X, b_o, pos_o, is_low, k, ORDER)
            if DT_DOT:  # tl.dot in IEEE float32 (tile_io.dot_fp32): 16 steps and RP >= 16
                dx = dot_fp32(ddelta, w_t)
            else:
                dx = products_fp32(ddelta, w_t)
            accumulate(dxrow[:, None] + r[None, :] * X[5], dx, mask_tr, False)
            xrow = x_rows(X[0], X[1], X, b_o, pos_o, is_low, k, ORDER)
            cols = tl.load(xrow[:, None] + r[None, :] * X[5], mask=mask_tr, other=0.0).to(tl.float32)
            dW_sum += tl.sum(ddelta[:, :, None] * cols[:, None, :], axis=0)
        else:
            store_td(ddelta_ptr + b_o * DELTA[1], pos_o * DELTA[2], offset(d, WIDE) * DELTA[3], ddelta, valid,
                     d_mask, False)

    part = offset(pid_bk, WIDE) * Dm  # one row of sums per (batch, direction)
    tl.store(dA_part_ptr + part * N + state_rows, dA_sum, mask=state_mask)
    tl.store(dD_part_ptr + part + d, dD_sum, mask=d_mask)
    tl.store(dbias_part_ptr + part + d, dbias_sum, mask=d_mask)
    if SUM_DIRECTIONS and HAS_WEIGHT and not LN_UPSTREAM:
        tl.store(dweight_part_ptr + part + d, dweight_sum, mask=d_mask)
    if LOWRANK:
        tl.store(dW_part_ptr + (part + d[:, None]) * R + r[None, :], dW_sum, mask=mask_dr)
