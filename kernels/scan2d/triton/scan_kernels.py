"""Triton kernels of the chunked selective scan, shared by ``selective_scan`` and ``directional_scan``.

Work is split over (batch x direction, channel block, sequence chunk), so a batch-1 image with a long sequence still
launches thousands of programs (in deterministic mode the passes that sum over channels give each program all the
channel blocks of its chunk instead, see ``_channel_blocks``).  Each program handles BLOCK_D channels x BLOCK_T
steps x N states in registers and solves its part of the recurrence with ``tl.associative_scan``; with the state
loops (``launch.TileConfig.forward_state_loop`` / ``backward_state_loop``, the default) it scans a
(BLOCK_T, BLOCK_D) tile one state at a time instead (``_state_loop_tile``, ``_backward_state_loop``).  One pass
each way needs the state entering every chunk, so both directions of the computation have three launches:

    forward:  chunk_end_state  ->  chunk_carry (sequential over chunks, tiny)  ->  forward_output
    backward: chunk_adjoint    ->  chunk_carry (reversed)                      ->  backward_grads

The only tensors written besides inputs' gradients and the output are per-chunk states (batch, K, chunks, dim, N),
1/BLOCK_T of what storing every state would take; the backward recomputes the states of its chunk from them.

Loads go through ``load_steps`` (``load_chunk`` adds B and C as tiles), which computes every step's position
(:mod:`.positions`), gathers u and the projections at that position, and builds delta either from a given tensor
(the drop-in ``selective_scan``) or from the dt low-rank projection, bias and softplus (``directional_scan``): no
permuted copy of the feature map and no per-direction delta tensor ever exists in memory.
"""

import triton
import triton.language as tl

from .positions import step_positions, tile_positions

LOG2E = tl.constexpr(1.4426950408889634)  # exp(x) = 2^(x log2 e): the state loops call exp2


@triton.jit
def _combine(a1, b1, a2, b2):
    # (a1, b1) then (a2, b2): h -> a2 * (a1 * h + b1) + b2
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _swap_halves_of_last(x):
    first, second = tl.split(x)
    return tl.join(second, first)


@triton.jit
def _reverse_steps(x):
    """x (T, P, Q) with its steps in reverse order; T a power of two.

    Step t goes to T-1-t, which complements every bit of t: swap the halves along each bit's axis in turn (split and
    join of a size-2 axis moved last).  With the steps in each thread's registers, as the kernels lay them out,
    this only renames registers, whereas Triton 3.6-3.7 lower ``associative_scan(reverse=True)`` with butterfly
    shuffles that flip every scanned element across the warp's lanes (bench/README.md).
    """
    T: tl.constexpr = x.shape[0]
    P: tl.constexpr = x.shape[1]
    Q: tl.constexpr = x.shape[2]
    tl.static_assert(T <= 256, "_reverse_steps handles up to 256 steps")
    for i in tl.static_range(8):  # the index's bits
        if (2 << i) <= T:
            y = tl.reshape(x, [1 << i, 2, T >> (i + 1), P, Q])
            y = _swap_halves_of_last(tl.permute(y, [0, 2, 3, 4, 1]))
            x = tl.reshape(tl.permute(y, [0, 4, 1, 2, 3]), [T, P, Q])
    return x


@triton.jit
def _tile_adjoint(delta_next, A, dy, Cm, g_end, t, BY_REGISTERS: tl.constexpr):
    """Adjoint states (T, D, N) of a one-tile chunk: g_t = C_t dy_t + exp(delta_{t+1} A) g_{t+1}, with g_end (D, N)
    arriving after the last step.  delta_next (T, D) is each step's next delta, dy (T, D), Cm (T, 1, N).

    The recurrence runs backwards over the steps.  BY_REGISTERS: as a forward scan of the steps reversed
    (_reverse_steps), the tile's last step first; otherwise with ``associative_scan(reverse=True)``, which costs
    five shuffles per scanned element and flip (bench/README.md) but no extra registers.
    """
    if BY_REGISTERS:
        last = (t == 0)[:, None, None]
        back_decay = tl.where(last, 0.0, tl.exp(_reverse_steps(delta_next[:, :, None]) * A[None, :, :]))
        seed = _reverse_steps(dy[:, :, None]) * _reverse_steps(Cm) + tl.where(last, g_end[None], 0.0)
        _, g = tl.associative_scan((back_decay, seed), 0, _combine)
        g = _reverse_steps(g)
    else:
        last = (t == t.shape[0] - 1)[:, None, None]
        back_decay = tl.where(last, 0.0, tl.exp(delta_next[:, :, None] * A[None, :, :]))
        seed = dy[:, :, None] * Cm + tl.where(last, g_end[None], 0.0)
        _, g = tl.associative_scan((back_decay, seed), 0, _combine, reverse=True)
    return g


@triton.jit
def _reverse_rows(x):
    """x (T, D) with its rows (steps) in reverse order (``_reverse_steps``)."""
    return tl.reshape(_reverse_steps(x[:, :, None]), [x.shape[0], x.shape[1]])


@triton.jit
def _adjoint_combine(f1, m1, g1, f2, m2, g2):
    # Runs of steps scanned from the last step back: (f, m, g) = (decay of the run's earliest step, product of its
    # other decays, its adjoint at the earliest step with nothing arriving after it).  Run 2 lies before run 1, so
    # g = g2 + m2 * f1 * g1.  Each step's own decay is all it needs: no tile reloaded one step on.  In a thread's
    # registers the scan runs in step order with m2 = 1, so it costs one multiply-add per step and m folds away.
    bridge = m2 * f1
    return f2, bridge * m1, g2 + bridge * g1


@triton.jit
def _softplus(x):
    """log(1 + exp(x)) as max(x, 0) + log1p(exp(-|x|)), with log1p(y) = 2 atanh(s), s = y / (2 + y) <= 1/3, summed
    to s^15 (the rest is below 2e-9 relative).  ``tl.log`` compiles to libdevice's logf, about 30 instructions per
    (step, channel) in every kernel that builds delta; this is an exponential, a division and 7 FMAs (bench/README.md:
    3-5% of the forward kernels' instructions).  It also keeps float32's relative accuracy for negative x, where
    log(1 + exp(x)) rounds 1 + exp(x) first (1e-3 relative error at x = -10, 0 below -16.6)."""
    y = tl.exp(-tl.abs(x))
    s = y / (2.0 + y)
    z = s * s
    p = z * (1.0 / 15.0) + 1.0 / 13.0
    p = p * z + 1.0 / 11.0
    p = p * z + 1.0 / 9.0
    p = p * z + 1.0 / 7.0
    p = p * z + 1.0 / 5.0
    p = p * z + 1.0 / 3.0
    p = p * z + 1.0
    return tl.maximum(x, 0.0) + 2.0 * s * p


@triton.jit
def load_pair(ptr):
    """ptr[0] and ptr[1] as float32, read as one word: 64-bit for float32, 32-bit for 16-bit types.  Triton loads
    the adjacent columns of an x_proj row (dt ranks, states of B and C) one 32-bit word at a time, since it cannot
    prove their alignment (``tl.join`` of the pointers does not vectorize); through a wider pointer one LDG
    replaces two.  ptr must be aligned to the word (``ScanOperands.paired_x``)."""
    if ptr.dtype.element_ty == tl.float32:
        word = tl.load(ptr.to(tl.pointer_type(tl.uint64)))
        lo = (word & 0xFFFFFFFF).to(tl.uint32).to(tl.float32, bitcast=True)
        hi = (word >> 32).to(tl.uint32).to(tl.float32, bitcast=True)
    else:
        word = tl.load(ptr.to(tl.pointer_type(tl.uint32)))
        lo = (word & 0xFFFF).to(tl.uint16).to(ptr.dtype.element_ty, bitcast=True).to(tl.float32)
        hi = (word >> 16).to(tl.uint16).to(ptr.dtype.element_ty, bitcast=True).to(tl.float32)
    return lo, hi


@triton.jit
def offset(x, WIDE: tl.constexpr):
    """Integer x (a scalar or a vector of indices) as it enters pointer offsets: int64 with WIDE, else x itself
    (int32).  The host sets WIDE where some tensor of the launch can reach 2^31 elements
    (``launch.ScanOperands.launch_meta``).  Below that every offset fits int32, and 32-bit offsets save a register
    per row pointer and the 64-bit multiplies: compile_check, sm_90, the model's layer, 5-9% fewer static
    instructions in the forward kernels, 7% in the backward (bench/README.md).  (Names ending in ``_o`` hold such
    offsets.)"""
    if WIDE:
        return x.to(tl.int64)
    else:
        return x


@triton.jit
def x_rows(x_ptr, x_low_ptr, X, b_o, pos_o, is_low, k, ORDER: tl.constexpr):
    """Pointers (BLOCK_T,) to direction k's x_proj row [dt_low | B | C] at each step's position (low-resolution
    tokens in the low-resolution tensor), with the strides of X (see load_chunk).  Gradient buffers laid out like
    x use it too."""
    _, _, s_xb, s_xl, s_xk, _, s_xb_low = X
    high = x_ptr + b_o * s_xb + pos_o * s_xl + k * s_xk
    if ORDER == 0:
        return high
    else:
        return tl.where(is_low, x_low_ptr + b_o * s_xb_low + pos_o * s_xl + k * s_xk, high)


@triton.jit
def block_channels(d_block, per_group, Dm, BLOCK_D: tl.constexpr, ONE_GROUP: tl.constexpr):
    """Channels d (BLOCK_D,) of channel block ``d_block`` and their mask.  The blocks tile each group of
    ``per_group`` channels that share B and C: cdiv(per_group, BLOCK_D) blocks per group, the last one masked.  So
    no block straddles two groups, B and C are one row per step for all the block's channels, and the block keeps
    its size whatever the group size (halving it to divide the group left 8 channels per program for MambaIR's
    360).  ONE_GROUP (the 2D layer, whose B and C are per direction): blocks of the Dm channels, without the
    divisions (compile_check: about 50 SASS instructions per kernel)."""
    if ONE_GROUP:
        d = d_block * BLOCK_D + tl.arange(0, BLOCK_D)
        return d, d < Dm
    per_block = tl.cdiv(per_group, BLOCK_D)
    in_group = (d_block % per_block) * BLOCK_D + tl.arange(0, BLOCK_D)
    return (d_block // per_block) * per_group + in_group, in_group < per_group


@triton.jit
def block_group(d_block, per_group, BLOCK_D: tl.constexpr, WIDE: tl.constexpr):
    """The group of B/C that channel block ``d_block`` reads (see ``block_channels``), as an ``offset``."""
    return offset(d_block // tl.cdiv(per_group, BLOCK_D), WIDE)


@triton.jit
def _channel_sum_rows(sums_a, sums_b, X, BC, b_o, pos_o, is_low, k, d_block, ORDER: tl.constexpr,
                      LOWRANK: tl.constexpr, R: tl.constexpr, N: tl.constexpr, BLOCK_D: tl.constexpr,
                      WIDE: tl.constexpr):
    """Pointers (T,) to state 0 of dB's and dC's rows at the steps at positions ``pos_o``, where the backward adds
    its sums over channels; state n lies as far on as in B and C (``load_steps``'s s_bn, s_cn).  The 2D layer's
    dB and dC are columns of the x-projection gradient (sums_a = dx, sums_b = dx_low, laid out like x); the drop-in
    scan's are laid out like B and C (sums_a = dB, sums_b = dC) and read channel block ``d_block``'s group."""
    if LOWRANK:
        dxrow = x_rows(sums_a, sums_b, X, b_o, pos_o, is_low, k, ORDER)
        return dxrow + R * X[5], dxrow + (R + N) * X[5]
    else:
        grp = block_group(d_block, BC[10], BLOCK_D, WIDE)
        return (sums_a + b_o * BC[2] + grp * BC[3] + pos_o * BC[5],
                sums_b + b_o * BC[6] + grp * BC[7] + pos_o * BC[9])


@triton.jit
def _accumulate(ptr, value, mask, OWNED: tl.constexpr, FIRST_WRITE: tl.constexpr = False):
    """ptr += value.  OWNED: no other program of the launch writes these elements, so a plain read-add-write does it
    in a fixed order (deterministic); with FIRST_WRITE too, the elements are still zero and written once (a channel
    block's own copy of dx, ``_backward_state_loop``'s DX_COPIES), so a store does.  Otherwise fp32 atomics.

    The store holds fewer values than the read-add-write: with that, the deterministic state-loop backward spilled
    460-908 bytes instead of 72-176 (compile_check, sm_90).  The atomics are relaxed: the sums are read only after the
    kernel ends.  Triton's default, acq_rel, fences every atomic (a membar.gpu around each in the SASS); on an H200
    that made backward_grads 18 ms of a 20.5 ms layer backward, against 9.7 ms for the same kernel with no atomics at
    all (bench/results/profile-*.jsonl)."""
    if OWNED and FIRST_WRITE:
        tl.store(ptr, value, mask=mask)
    elif OWNED:
        tl.store(ptr, tl.load(ptr, mask=mask, other=0.0) + value, mask=mask)
    else:
        tl.atomic_add(ptr, value, mask=mask, sem="relaxed")


@triton.jit
def load_td(ptr, rows, cols, row_mask, col_mask, ROWWISE: tl.constexpr):
    """The (T, D) tile of ``ptr`` at offsets ``rows[:, None] + cols[None, :]`` (``offset``s, (T,) and (D,)), as float32,
    zero outside ``row_mask[:, None] & col_mask[None, :]``.

    ROWWISE: one (D,) load per row, for the state loops on channels-first tensors (the drop-in scan's, whose steps
    are contiguous in memory; ``TileConfig.rowwise_tiles``, on by default under Triton < 3.7).  A (T, D) load there
    has no axis Triton can prove contiguous (the steps' positions are computed), and Triton 3.6 breaks that tie
    toward the steps: it lays the steps across lanes, so every scan over them crosses lanes (960 shuffles in the
    drop-in's ``chunk_end_state``, compile_check sm_90) and stores convert through shared memory.  Triton >= 3.7
    breaks it toward the channels.  Row accesses have one axis, so every version keeps the channels across threads
    and the steps in each thread's registers, where picking row i compiles to nothing.  Rows are read whatever
    row_mask says (a masked step's offset must still be in bounds, as position 0 of the kernels' invalid steps is)
    and zeroed after.
    """
    mask = row_mask[:, None] & col_mask[None, :]
    if ROWWISE:
        t = tl.arange(0, rows.shape[0])[:, None]
        # Picked from a (T, D) tile, which has the tiles' layout: a (T, 1) one would lay the steps across lanes.
        row_tile = tl.broadcast_to(rows[:, None], mask.shape)
        x = tl.zeros(mask.shape, dtype=tl.float32)
        for i in tl.static_range(rows.shape[0]):
            row = tl.load(ptr + _pick_row(row_tile, t, i) + cols, mask=col_mask, other=0.0)
            x = tl.where(t == i, row.to(tl.float32)[None, :], x)
        return tl.where(mask, x, 0.0)
    else:
        return tl.load(ptr + rows[:, None] + cols[None, :], mask=mask, other=0.0).to(tl.float32)


@triton.jit
def store_td(ptr, rows, cols, value, row_mask, col_mask, ROWWISE: tl.constexpr):
    """Stores the (T, D) tile ``value`` into ``ptr`` at offsets ``rows[:, None] + cols[None, :]`` where
    ``row_mask[:, None] & col_mask[None, :]``, in ptr's dtype; ROWWISE one (D,) store per row, as in ``load_td``."""
    if ROWWISE:
        t = tl.arange(0, rows.shape[0])[:, None]
        row_tile = tl.broadcast_to(rows[:, None], value.shape)
        live = tl.broadcast_to(row_mask[:, None].to(tl.int32), value.shape)
        for i in tl.static_range(rows.shape[0]):
            tl.store(ptr + _pick_row(row_tile, t, i) + cols, _pick_row(value, t, i).to(ptr.dtype.element_ty),
                     mask=col_mask & (_pick_row(live, t, i) != 0))
    else:
        tl.store(ptr + rows[:, None] + cols[None, :], value.to(ptr.dtype.element_ty),
                 mask=row_mask[:, None] & col_mask[None, :])


@triton.jit
def _pick_row(x, t, i):
    """Row i of a (T, D) tile, as (D,); t is arange(T)[:, None].  With the steps in each thread's registers, the
    mask is known per register and this compiles to no instruction."""
    return tl.sum(tl.where(t == i, x, tl.zeros_like(x)), axis=0)


@triton.jit
def _halve_and_exchange(x, lane, ROWS: tl.constexpr, LANES: tl.constexpr, BIT: tl.constexpr):
    """One round of ``_lane_sums``: x (ROWS, LANES) -> (ROWS / 2, LANES).  A lane whose BIT is set keeps the upper
    half of its rows and sends the lower half to the lane BIT away, which does the opposite; each adds what it
    receives to what it keeps.  The gather along the lanes axis is a warp shuffle (one per value) on the GPU."""
    lo, hi = tl.split(tl.permute(tl.reshape(x, (2, ROWS // 2, LANES)), (1, 2, 0)))
    upper = ((lane & BIT) != 0)[None, :]
    send = tl.where(upper, lo, hi)
    partner = tl.broadcast_to((lane ^ BIT)[None, :], (ROWS // 2, LANES))
    return tl.where(upper, hi, lo) + tl.gather(send, partner, axis=1)


@triton.jit
def _lane_sums(x, lane, T: tl.constexpr, LANES: tl.constexpr):
    """Sums of x (T, LANES) over its lanes axis, one per step, spread over the lanes: returns v (LANES,) with
    v[l] = sum_j x[l // (LANES // T), j].  T and LANES are powers of two, 2 <= T <= LANES = 32 (one warp).

    ``tl.sum(x, axis=1)`` reduces every step's values over the whole warp: log2(LANES) shuffles and adds per step, 80
    of each for (16, 32), and every lane ends up holding every sum.  Here each round halves the rows a lane holds and
    exchanges the other half with a partner (a reduce-scatter): 8 + 4 + 2 + 1 shuffles, then one more round to add
    up the two lanes that share a step; 16 shuffles, 16 adds and 30 selects in all (sm_90), and no shared memory.
    """
    tl.static_assert(LANES == 32 and 2 <= T and T <= LANES, "one warp of lanes, at most one step per lane")
    x = _halve_and_exchange(x, lane, T, LANES, 16)
    if T >= 4:
        x = _halve_and_exchange(x, lane, T // 2, LANES, 8)
    if T >= 8:
        x = _halve_and_exchange(x, lane, T // 4, LANES, 4)
    if T >= 16:
        x = _halve_and_exchange(x, lane, T // 8, LANES, 2)
    if T >= 32:
        x = _halve_and_exchange(x, lane, T // 16, LANES, 1)
    v = tl.reshape(x, (LANES,))
    # The lanes left sharing a step (LANES // T of them, adjacent) add up their partial sums.
    if T <= 16:
        v += tl.gather(v, lane ^ 1, axis=0)
    if T <= 8:
        v += tl.gather(v, lane ^ 2, axis=0)
    if T <= 4:
        v += tl.gather(v, lane ^ 4, axis=0)
    if T <= 2:
        v += tl.gather(v, lane ^ 8, axis=0)
    return v


@triton.jit
def load_steps(
    s0, t, b, k, d_block, d, d_mask, U, X, DELTA, BC, PROJ, dirs_ptr, H, W, Dm,
    ORDER: tl.constexpr, LOWRANK: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, R: tl.constexpr, N: tl.constexpr, STEPS_IN_REGISTERS: tl.constexpr = False,
    ROWWISE: tl.constexpr = False, PAIRED: tl.constexpr = False, IN_WINDOW: tl.constexpr = False,
    WIDE: tl.constexpr = True,
):
    """Inputs of steps ``s0 + t`` (t: (BLOCK_T,) 0 .. BLOCK_T - 1) for channels ``d`` (BLOCK_D,), channel block
    ``d_block``, with B and C as row pointers (the state-loop kernels read one state's column at a time;
    ``load_chunk`` loads whole tiles).
    STEPS_IN_REGISTERS: the caller's tiles hold all their steps in each thread (the state-loop kernels), where the
    dt projection's loads are cheapest unrolled and unmasked (below); with ROWWISE too, u and delta are read a row
    at a time (``load_td``), as the state-loop kernels then read and write all their (T, D) tiles of the drop-in's
    tensors.  PAIRED (with STEPS_IN_REGISTERS): x's rows are contiguous and word-aligned for ``load_pair``
    (``ScanOperands.paired_x``), and the dt ranks are read two at a time.  IN_WINDOW: the tile lies in one window
    (``positions.tile_positions``).  WIDE: 64-bit offsets (``offset``).

    The inputs' pointers and strides come as tuples (``launch.ScanOperands.common_args``):
    U = (u, u_low, batch, position, channel strides, u_low's batch stride); X = (x_proj outputs, their low-res
    twin, batch, position, direction, column strides, low-res batch stride); DELTA = (delta, batch, position,
    channel strides); BC = (B, C, B's batch, group, state, position strides, C's, channels per group);
    PROJ = (dt projection weight (K, D, R), dt bias (K, D)).
    Returns pos, is_low, valid (BLOCK_T,); u, delta_pre (bias added, before softplus), delta (T, D), zero on
    invalid steps; b_rows, c_rows (BLOCK_T,) pointers to state 0 of B and C at each step, whose state n lies n * s_bn
    (s_cn) further.  Invalid steps point at position 0, which is always in bounds.
    """
    u_ptr, u_low_ptr, s_ub, s_ul, s_ud, s_ub_low = U
    delta_ptr, s_db, s_dl, s_dd = DELTA
    B_ptr, C_ptr, s_bb, s_bg, s_bn, s_bl, s_cb, s_cg, s_cn, s_cl, per_group = BC
    dtw_ptr, dtb_ptr = PROJ
    s_xc = X[5]  # the column stride; x_rows reads the others
    pos, is_low, valid = tile_positions(s0, t, k, dirs_ptr, H, W, ORDER, IN_WINDOW)
    pos_o = offset(pos, WIDE)
    b_o = offset(b, WIDE)
    mask_td = valid[:, None] & d_mask[None, :]
    by_rows: tl.constexpr = STEPS_IN_REGISTERS and ROWWISE
    if ORDER == 0:
        u = load_td(u_ptr + b_o * s_ub, pos_o * s_ul, offset(d, WIDE) * s_ud, valid, d_mask, by_rows)
    else:
        high_u = u_ptr + b_o * s_ub + pos_o[:, None] * s_ul + offset(d, WIDE)[None, :] * s_ud
        low_u = u_low_ptr + b_o * s_ub_low + pos_o[:, None] * s_ul + offset(d, WIDE)[None, :] * s_ud
        u = tl.load(tl.where(is_low[:, None], low_u, high_u), mask=mask_td, other=0.0).to(tl.float32)
    if LOWRANK:
        # x_proj outputs [dt_low | B | C] of direction k at each step's position.
        xrow = x_rows(X[0], X[1], X, b_o, pos_o, is_low, k, ORDER)
        # delta_pre = dt_low @ dt_weight[k].T, one rank at a time: a (T, D, R) product tile would take a third
        # of the registers of the kernels that use it (compile_check) and pad R to a power of two.
        delta_pre = tl.zeros([t.shape[0], d.shape[0]], dtype=tl.float32)
        if STEPS_IN_REGISTERS:
            # Every thread loads all the tile's steps: unrolled and unmasked (invalid steps read position 0, whose
            # delta is zeroed below), the loads take constant offsets and no predicates: about 41 SASS instructions
            # per rank instead of 111.  Unrolled whole (or by 8), ptxas hoists the ranks' loads and spills in the
            # multi-tile kernels, so blocks of 4 ranks; the last block ends at rank R-1, overlapping the one before,
            # whose ranks it masks out.  The tile kernels, whose steps are spread over threads, keep the rolled
            # loop: unrolled it compiles to more loads and exponentials there.
            if R >= 4 and PAIRED:
                for i0 in range(0, R, 4):
                    start = tl.minimum(i0, R - 4)  # even: R is
                    for i1 in tl.static_range(0, 4, 2):
                        lo, hi = load_pair(xrow + start + i1)
                        w_rows = dtw_ptr + (k * Dm + d) * R + start + i1
                        w_lo = tl.load(w_rows, mask=d_mask & ((d * 0 + start + i1) >= i0), other=0.0)
                        w_hi = tl.load(w_rows + 1, mask=d_mask & ((d * 0 + start + i1 + 1) >= i0), other=0.0)
                        delta_pre += lo[:, None] * w_lo.to(tl.float32)[None, :]
                        delta_pre += hi[:, None] * w_hi.to(tl.float32)[None, :]
            elif R >= 4:
                for i0 in range(0, R, 4):
                    start = tl.minimum(i0, R - 4)
                    for i1 in tl.static_range(4):
                        col = tl.load(xrow + (start + i1) * s_xc).to(tl.float32)
                        wi = tl.load(dtw_ptr + (k * Dm + d) * R + start + i1,
                                     mask=d_mask & ((d * 0 + start + i1) >= i0), other=0.0).to(tl.float32)
                        delta_pre += col[:, None] * wi[None, :]
            else:
                for i in tl.static_range(R):
                    col = tl.load(xrow + i * s_xc).to(tl.float32)
                    wi = tl.load(dtw_ptr + (k * Dm + d) * R + i, mask=d_mask, other=0.0).to(tl.float32)
                    delta_pre += col[:, None] * wi[None, :]
        else:
            for i in range(R):
                col = tl.load(xrow + i * s_xc, mask=valid, other=0.0).to(tl.float32)
                wi = tl.load(dtw_ptr + (k * Dm + d) * R + i, mask=d_mask, other=0.0).to(tl.float32)
                delta_pre += col[:, None] * wi[None, :]
        b_rows = xrow + R * s_xc
        c_rows = xrow + (R + N) * s_xc
        s_bn = s_xc
        s_cn = s_xc
    else:
        delta_pre = load_td(delta_ptr + b_o * s_db, pos_o * s_dl, offset(d, WIDE) * s_dd, valid, d_mask, by_rows)
        grp = block_group(d_block, per_group, d.shape[0], WIDE)
        b_rows = B_ptr + b_o * s_bb + grp * s_bg + pos_o * s_bl
        c_rows = C_ptr + b_o * s_cb + grp * s_cg + pos_o * s_cl
    if HAS_BIAS:
        delta_pre += tl.load(dtb_ptr + k * Dm + d, mask=d_mask, other=0.0).to(tl.float32)[None, :]
    if SOFTPLUS:
        delta = _softplus(delta_pre)
    else:
        delta = delta_pre
    delta = tl.where(mask_td, delta, 0.0)
    return pos, is_low, valid, u, delta_pre, delta, b_rows, c_rows, s_bn, s_cn


@triton.jit
def load_chunk(
    s0, t, b, k, d_block, d, d_mask, U, X, DELTA, BC, PROJ, dirs_ptr, H, W, Dm,
    ORDER: tl.constexpr, LOWRANK: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, R: tl.constexpr, N: tl.constexpr, IN_WINDOW: tl.constexpr = False,
    WIDE: tl.constexpr = True,
):
    """``load_steps`` with B and C loaded as (T, 1, N) tiles (Bm, Cm), broadcastable to (T, D, N), zero on invalid
    steps.  Returns pos, is_low, valid, u, delta_pre, delta, Bm, Cm."""
    pos, is_low, valid, u, delta_pre, delta, b_rows, c_rows, s_bn, s_cn = load_steps(
        s0, t, b, k, d_block, d, d_mask, U, X, DELTA, BC, PROJ, dirs_ptr, H, W, Dm, ORDER, LOWRANK, HAS_BIAS,
        SOFTPLUS, R, N, IN_WINDOW=IN_WINDOW, WIDE=WIDE)
    n = tl.arange(0, N)
    Bm = tl.load(b_rows[:, None] + n[None, :] * s_bn, mask=valid[:, None], other=0.0).to(tl.float32)[:, None, :]
    Cm = tl.load(c_rows[:, None] + n[None, :] * s_cn, mask=valid[:, None], other=0.0).to(tl.float32)[:, None, :]
    return pos, is_low, valid, u, delta_pre, delta, Bm, Cm


@triton.jit
def _row(x, t, index):
    """Row ``index`` of a (T, D, N) tile as (D, N)."""
    return tl.sum(tl.where((t == index)[:, None, None], x, 0.0), axis=0)


@triton.jit
def _load_state(ptr, pid_bk, chunk, n_chunks, Dm, d, d_mask, n, WIDE: tl.constexpr):
    """A stored chunk state (D, N) of a (batch*K, chunks, dim, N) fp32 buffer."""
    return tl.load(ptr + ((offset(pid_bk, WIDE) * n_chunks + chunk) * Dm + d[:, None]) * n.shape[0] + n[None, :],
                   mask=d_mask[:, None], other=0.0)


@triton.jit
def _tile_states(h0, t, delta, u, Bm, A):
    """Decays, drives and states h_t (T, D, N) of a tile of steps entered with state h0 (D, N)."""
    decay = tl.exp(delta[:, :, None] * A[None, :, :])
    drive = (delta * u)[:, :, None] * Bm
    _, h = tl.associative_scan((decay, drive + tl.where((t == 0)[:, None, None], decay * h0[None, :, :], 0.0)), 0,
                               _combine)
    return decay, drive, h


@triton.jit
def _state_step(a, h0, delta, du, bn, cn, first, last, y, OUTPUT: tl.constexpr):
    """One state of a state-loop tile, with its B and C columns bn, cn (T,): returns y (T, D) + C_n h_n (when
    OUTPUT) and the end state h_n (D,)."""
    decay = tl.exp2(delta * a[None, :])
    # Invalid steps read position 0 (always in bounds) and have du = 0, delta = 0: decay 1, drive 0.
    drive = du * bn[:, None] + tl.where(first, decay * h0[None, :], 0.0)
    _, h = tl.associative_scan((decay, drive), 0, _combine)
    if OUTPUT:
        y += cn[:, None] * h
    # With the steps in each thread's registers the mask is known per register: the sum compiles to no instruction.
    return y, tl.sum(tl.where(last, h, 0.0), axis=0)


@triton.jit
def _state_columns(b_rows, c_rows, n, s_bn, s_cn, OUTPUT: tl.constexpr):
    """B's and C's columns of state n (T,), float32 (C's only when OUTPUT; B's again in its place otherwise)."""
    bn = tl.load(b_rows + n * s_bn).to(tl.float32)
    cn = bn
    if OUTPUT:
        cn = tl.load(c_rows + n * s_cn).to(tl.float32)
    return bn, cn


@triton.jit
def _state_column_pairs(b_rows, c_rows, n, OUTPUT: tl.constexpr):
    """B's and C's columns of states n and n + 1 (T,), float32, one ``load_pair`` each (unit state stride)."""
    b0, b1 = load_pair(b_rows + n)
    c0, c1 = b0, b1
    if OUTPUT:
        c0, c1 = load_pair(c_rows + n)
    return b0, c0, b1, c1


@triton.jit
def _state_in_memory(n, bn, cn, h0_rows, h0_mask, end_rows, A_rows, d_mask, delta, du, first, last, y,
                     OUTPUT: tl.constexpr, STORE_END: tl.constexpr):
    """State n of ``_state_loop_tile`` entered from h0_rows and, when STORE_END, left at end_rows: returns y."""
    a = tl.load(A_rows + n, mask=d_mask, other=0.0).to(tl.float32) * LOG2E
    h0 = tl.load(h0_rows + n, mask=h0_mask, other=0.0)
    y, h_end = _state_step(a, h0, delta, du, bn, cn, first, last, y, OUTPUT)
    if STORE_END:
        tl.store(end_rows + n, h_end, mask=d_mask)
    return y


@triton.jit
def _state_in_registers(n, bn, cn, rows, states, A_rows, d_mask, delta, du, first, last, y, OUTPUT: tl.constexpr):
    """State n (a constant) of ``_state_loop_tile`` entered from and left in row n of states (N, D): returns y and
    states."""
    a = tl.load(A_rows + n, mask=d_mask, other=0.0).to(tl.float32) * LOG2E
    h0 = tl.sum(tl.where(rows == n, states, 0.0), axis=0)  # row n: no instruction (see _state_step)
    y, h_end = _state_step(a, h0, delta, du, bn, cn, first, last, y, OUTPUT)
    return y, tl.where(rows == n, h_end[None, :], states)


@triton.jit
def _state_loop_tile(h0_rows, h0_mask, end_rows, A_rows, d_mask, t, delta, u, b_rows, c_rows, s_bn, s_cn, y, states,
                     N: tl.constexpr, OUTPUT: tl.constexpr, STORE_END: tl.constexpr, UNROLL: tl.constexpr = 1,
                     IN_REGISTERS: tl.constexpr = False, PAIRED: tl.constexpr = False):
    """A tile of the recurrence solved one state at a time: returns y (T, D) + sum_n C_n h_n (y unchanged unless
    OUTPUT; passing the D skip in as y frees u's registers before the loop) and ``states``.

    h0_rows, end_rows, A_rows: (D,) pointers to state 0 of each channel's entry state (loaded where h0_mask, zero
    elsewhere), of where its end state goes (written when STORE_END; it may be h0_rows: state n is read before it is
    written) and of A[k, d]; states and A are contiguous over n.  delta, u (T, D); b_rows, c_rows (T,) as
    ``load_steps`` returns them.  UNROLL states are unrolled per loop trip (a divisor of N), so that ptxas can
    overlap one state's loads and exponentials with another's scan.
    IN_REGISTERS (needs UNROLL == N, every state index a constant): the tile enters with ``states`` (N, D) and
    returns its end states there, instead of reading h0_rows and writing end_rows: a multi-tile chunk then carries
    its states between tiles in N registers per channel instead of through memory (the PTX has no instruction for
    picking or replacing row n, and no shuffle).
    PAIRED (``load_steps``'s; B and C then lie in x's rows, state stride 1): with an even UNROLL, the states' B and
    C columns are read two states at a time (``load_pair``).

    Why one state at a time: a (T, D, N) tile lays the N states across a warp's lanes, so each output is a sum over
    lanes (4 shuffle rounds per element) and the kernels hold three such tiles.  Here a (T, D) tile with the steps
    in registers and the channels across threads scans without any cross-thread traffic and accumulates y in
    registers (compile_check: no shuffles, barriers or shared memory in the loop), as mamba-ssm's CUDA kernel does.
    """
    du = delta * u
    first = (t == 0)[:, None]
    last = (t == t.shape[0] - 1)[:, None]
    pairs: tl.constexpr = PAIRED and UNROLL % 2 == 0
    if IN_REGISTERS:
        tl.static_assert(UNROLL == N, "states carried in registers need every state index to be a constant")
        rows = tl.arange(0, N)[:, None]
        if pairs:
            for n in tl.static_range(0, N, 2):
                b0, c0, b1, c1 = _state_column_pairs(b_rows, c_rows, n, OUTPUT)
                y, states = _state_in_registers(n, b0, c0, rows, states, A_rows, d_mask, delta, du, first, last, y,
                                                OUTPUT)
                y, states = _state_in_registers(n + 1, b1, c1, rows, states, A_rows, d_mask, delta, du, first, last,
                                                y, OUTPUT)
        else:
            for n in tl.static_range(N):
                bn, cn = _state_columns(b_rows, c_rows, n, s_bn, s_cn, OUTPUT)
                y, states = _state_in_registers(n, bn, cn, rows, states, A_rows, d_mask, delta, du, first, last, y,
                                                OUTPUT)
    else:
        for n0 in range(0, N, UNROLL):
            if pairs:
                for i in tl.static_range(0, UNROLL, 2):
                    b0, c0, b1, c1 = _state_column_pairs(b_rows, c_rows, n0 + i, OUTPUT)
                    y = _state_in_memory(n0 + i, b0, c0, h0_rows, h0_mask, end_rows, A_rows, d_mask, delta, du,
                                         first, last, y, OUTPUT, STORE_END)
                    y = _state_in_memory(n0 + i + 1, b1, c1, h0_rows, h0_mask, end_rows, A_rows, d_mask, delta, du,
                                         first, last, y, OUTPUT, STORE_END)
            else:
                for i in tl.static_range(UNROLL):
                    bn, cn = _state_columns(b_rows, c_rows, n0 + i, s_bn, s_cn, OUTPUT)
                    y = _state_in_memory(n0 + i, bn, cn, h0_rows, h0_mask, end_rows, A_rows, d_mask, delta, du,
                                         first, last, y, OUTPUT, STORE_END)
    return y, states


@triton.jit
def _states_from_entry(entry_ptr, pid_bk, pid_c, n_chunks, Dm, d, d_mask, n, t, delta, u, Bm, A, WIDE: tl.constexpr):
    """Decays, drives and states h_t (T, D, N) of a one-tile chunk started from its stored entry state."""
    return _tile_states(_load_state(entry_ptr, pid_bk, pid_c, n_chunks, Dm, d, d_mask, n, WIDE), t, delta, u, Bm, A)


@triton.jit(do_not_specialize=["chunk_first"])  # one compiled kernel for every launch's first chunk
def chunk_end_state_kernel(
    state_ptr, dsum_ptr,
    U, X, DELTA, BC, PROJ, A_ptr, dirs_ptr, K, H, W, Dm, n_chunks, chunk_first,
    ORDER: tl.constexpr, LOWRANK: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, R: tl.constexpr, N: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, TILES: tl.constexpr, STATE_LOOP: tl.constexpr,
    STATE_UNROLL: tl.constexpr = 1, CARRY_IN_REGISTERS: tl.constexpr = False, ROWWISE: tl.constexpr = False,
    PAIRED: tl.constexpr = False, IN_WINDOW: tl.constexpr = False, WIDE: tl.constexpr = True,
):
    """State at the end of each chunk when the chunk starts from zero, and the chunk's sum of delta.

    A chunk is TILES tiles of BLOCK_T steps, scanned one after another with the state carried in registers (with
    STATE_LOOP, one state at a time through the chunk's own slot of ``state``, or in registers with
    CARRY_IN_REGISTERS, see ``_state_loop_tile``; STATE_UNROLL states per loop trip).
    state: (batch*K, chunks, dim, N) fp32; dsum: (batch*K, chunks, dim) fp32.  This launch's chunks start at
    ``chunk_first`` (``launch.chunk_launches``), as in every kernel with a grid over chunks.
    """
    pid_bk, pid_d, pid_c = tl.program_id(0), tl.program_id(1), tl.program_id(2) + chunk_first
    b, k = pid_bk // K, pid_bk % K
    d, d_mask = block_channels(pid_d, BC[10], Dm, BLOCK_D, LOWRANK)
    t = tl.arange(0, BLOCK_T)
    n = tl.arange(0, N)
    base = (offset(pid_bk, WIDE) * n_chunks + pid_c) * Dm
    dsum = tl.zeros([BLOCK_D], dtype=tl.float32)
    if STATE_LOOP:
        rows = state_ptr + (base + d) * N
        in_registers: tl.constexpr = CARRY_IN_REGISTERS and TILES > 1
        unroll: tl.constexpr = N if in_registers else STATE_UNROLL
        states = tl.zeros([N, BLOCK_D], dtype=tl.float32)
        for j in range(TILES):
            s0 = (pid_c * TILES + j) * BLOCK_T
            pos, is_low, valid, u, delta_pre, delta, b_rows, c_rows, s_bn, s_cn = load_steps(
                s0, t, b, k, pid_d, d, d_mask, U, X, DELTA, BC, PROJ, dirs_ptr, H, W, Dm, ORDER, LOWRANK, HAS_BIAS,
                SOFTPLUS, R, N, STEPS_IN_REGISTERS=True, ROWWISE=ROWWISE, PAIRED=PAIRED, IN_WINDOW=IN_WINDOW, WIDE=WIDE)
            # The first tile starts from zero; later ones from the state the previous one left in the slot (or in
            # registers).  (y is unused.)
            _, states = _state_loop_tile(rows, d_mask & ((d * 0 + j) > 0), rows, A_ptr + (k * Dm + d) * N, d_mask, t,
                                         delta, u, b_rows, c_rows, s_bn, s_cn, delta, states, N, OUTPUT=False,
                                         STORE_END=not in_registers, UNROLL=unroll, IN_REGISTERS=in_registers,
                                         PAIRED=PAIRED)
            dsum += tl.sum(delta, axis=0)
        if in_registers:
            tl.store(rows[None, :] + tl.arange(0, N)[:, None], states, mask=d_mask[None, :])
    else:
        A = tl.load(A_ptr + k * Dm * N + d[:, None] * N + n[None, :], mask=d_mask[:, None],
                    other=0.0).to(tl.float32)
        h = tl.zeros([BLOCK_D, N], dtype=tl.float32)
        for j in range(TILES):
            s0 = (pid_c * TILES + j) * BLOCK_T
            pos, is_low, valid, u, delta_pre, delta, Bm, Cm = load_chunk(
                s0, t, b, k, pid_d, d, d_mask, U, X, DELTA, BC, PROJ, dirs_ptr, H, W, Dm, ORDER, LOWRANK, HAS_BIAS,
                SOFTPLUS, R, N, IN_WINDOW, WIDE)
            _, _, hs = _tile_states(h, t, delta, u, Bm, A)
            h = _row(hs, t, BLOCK_T - 1)
            dsum += tl.sum(delta, axis=0)
        tl.store(state_ptr + (base + d[:, None]) * N + n[None, :], h, mask=d_mask[:, None])
    tl.store(dsum_ptr + base + d, dsum, mask=d_mask)


@triton.jit
def chunk_carry_kernel(
    carry_ptr, final_ptr, local_ptr, dsum_ptr, A_ptr, K, Dm, n_chunks,
    REVERSE: tl.constexpr, N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_C: tl.constexpr,
):
    """Pass a state across chunks: carry_c = state before chunk c; state <- exp(A * dsum_c) * state + local_c.

    Forward: chunks in order, local = chunk end states, carry = state entering each chunk, final = last state.
    Backward (REVERSE): chunks from the end, local = each chunk's adjoint at its start, carry = the adjoint arriving
    at each chunk's end (the last state's gradient is zero: like mamba-ssm's, the last state is not differentiable).
    BLOCK_C chunks are loaded at once and scanned in registers: one chunk per iteration made the loop a chain of
    dependent global loads, 4.3 ms for the 4,096 training chunks of a 256x256 image on an H200 (profile-*.jsonl).
    """
    pid_bk, pid_d = tl.program_id(0), tl.program_id(1)
    k = pid_bk % K
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = d < Dm
    n = tl.arange(0, N)
    A = tl.load(A_ptr + k * Dm * N + d[:, None] * N + n[None, :], mask=d_mask[:, None], other=0.0).to(tl.float32)
    dn = d[:, None] * N + n[None, :]
    state = tl.zeros([BLOCK_D, N], dtype=tl.float32)
    p = tl.arange(0, BLOCK_C)
    row = pid_bk.to(tl.int64) * n_chunks
    for i in range(0, tl.cdiv(n_chunks, BLOCK_C)):
        j = i * BLOCK_C + p  # visiting order
        in_range = j < n_chunks
        base = (row + (n_chunks - 1 - j if REVERSE else j)) * Dm  # (C,)
        nxt = (row + (n_chunks - 2 - j if REVERSE else j + 1)) * Dm  # the chunk visited after each
        mask_cd = in_range[:, None] & d_mask[None, :]
        dsum = tl.load(dsum_ptr + base[:, None] + d[None, :], mask=mask_cd, other=0.0)
        local = tl.load(local_ptr + (base[:, None, None] + d[None, :, None]) * N + n[None, None, :],
                        mask=mask_cd[:, :, None], other=0.0)
        # Chunks past the end decay by exp(0) = 1 and add 0: the state leaves the block unchanged by them.
        decay = tl.exp(A[None, :, :] * dsum[:, :, None])
        _, after = tl.associative_scan(
            (decay, local + tl.where((p == 0)[:, None, None], decay * state[None, :, :], 0.0)), 0, _combine)
        # carry may be local itself (the host passes one buffer to halve the state memory): every thread's loads of
        # this block complete before any thread overwrites them, also where the layout replicates elements.
        tl.debug_barrier()
        first = (row + (n_chunks - 1 - i * BLOCK_C if REVERSE else i * BLOCK_C)) * Dm
        tl.store(carry_ptr + first * N + dn, state, mask=d_mask[:, None])
        # The state after each chunk is the carry of the next one; the block's last is stored as the next block's
        # first carry, after that block's loads.
        keep = in_range & (p < BLOCK_C - 1) & (j + 1 < n_chunks)
        tl.store(carry_ptr + (nxt[:, None, None] + d[None, :, None]) * N + n[None, None, :], after,
                 mask=(keep[:, None] & d_mask[None, :])[:, :, None])
        state = _row(after, p, BLOCK_C - 1)
    if not REVERSE:
        tl.store(final_ptr + pid_bk.to(tl.int64) * Dm * N + dn, state, mask=d_mask[:, None])


@triton.jit(do_not_specialize=["chunk_first"])
def first_direction_pool_kernel(y_ptr, s_yb, s_yl, s_yd, tok_ptr, part_ptr, K, L, Dm, n_chunks, chunk_first,
                                BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, TILES: tl.constexpr):
    """The gate's pooling sum (``forward_output_kernel``'s REDUCE = 2) for direction 0, from its output y, which the
    statistics pass wrote (STORE_FIRST), instead of from a recomputed scan.

    y: (batch, L, dim) through its strides; tok: (batch*K, L, 2) fp32 (mean, rstd) per token; part: (batch, chunks,
    dim) fp32, part[b, c, d] = sum over chunk c's TILES x BLOCK_T tokens of y[b, t, d] * rstd[b*K, t].  The host sums
    the chunks (fixed order: no atomics).
    """
    b, pid_d, c = tl.program_id(0), tl.program_id(1), tl.program_id(2) + chunk_first
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = d < Dm
    b64 = b.to(tl.int64)
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for j in range(TILES):
        t = (c * TILES + j) * BLOCK_T + tl.arange(0, BLOCK_T)
        t_mask = t < L
        y = tl.load(y_ptr + b64 * s_yb + t[:, None].to(tl.int64) * s_yl + d.to(tl.int64)[None, :] * s_yd,
                    mask=t_mask[:, None] & d_mask[None, :], other=0.0).to(tl.float32)
        rstd = tl.load(tok_ptr + (b64 * K * L + t) * 2 + 1, mask=t_mask, other=0.0)
        acc += tl.sum(y * rstd[:, None], axis=0)
    tl.store(part_ptr + (b64 * n_chunks + c) * Dm + d, acc, mask=d_mask)


@triton.jit
def _channel_blocks(Dm, per_group, BLOCK_D: tl.constexpr, DETERMINISTIC: tl.constexpr):
    """(first channel block, how many) of this program: its own one (grid axis 1), or with DETERMINISTIC every
    block in turn (the host launches one program per chunk), so sums over channels never cross programs."""
    if DETERMINISTIC:
        return 0, (Dm // per_group) * tl.cdiv(per_group, BLOCK_D)
    else:
        return tl.program_id(1), 1


@triton.jit(do_not_specialize=["k_first", "chunk_first"])  # one compiled kernel for every direction and chunk
def forward_output_kernel(
    out_ptr, s_ob, s_ok, s_ol, s_od, weight_ptr, red_ptr, tok_ptr, vec_ptr, part_ptr, L_high,
    carry_ptr, scratch_ptr, Dskip_ptr, z_ptr, s_zb, s_zl, s_zd,
    U, X, DELTA, BC, PROJ, A_ptr, dirs_ptr, K, H, W, Dm, n_chunks, k_first, k_count, chunk_first,
    ORDER: tl.constexpr, LOWRANK: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, SUM_DIRECTIONS: tl.constexpr,
    ACCUMULATE: tl.constexpr, HAS_WEIGHT: tl.constexpr, REDUCE: tl.constexpr, DETERMINISTIC: tl.constexpr,
    R: tl.constexpr, N: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, TILES: tl.constexpr,
    STATE_LOOP: tl.constexpr, STATE_UNROLL: tl.constexpr = 1, CARRY_IN_REGISTERS: tl.constexpr = False,
    STORE_FIRST: tl.constexpr = False, SCALE_FIRST: tl.constexpr = False, ROWWISE: tl.constexpr = False,
    PAIRED: tl.constexpr = False, IN_WINDOW: tl.constexpr = False, WIDE: tl.constexpr = True,
):
    """y_t = C_t . h_t + D u_t (times silu(z_t)) from the chunk's entry state, written at each step's position.

    The launch covers directions k_first .. k_first + k_count - 1.  The chunk's TILES tiles of BLOCK_T steps run
    one after another, the state carried in registers, or with STATE_LOOP (``_state_loop_tile``) one state at a time
    through ``scratch`` (laid out like the entry states ``carry``; it may be ``carry`` itself when the caller no
    longer needs the entry states), or in registers with CARRY_IN_REGISTERS (all N states unrolled).
    REDUCE = 0: SUM_DIRECTIONS: out is (batch, L, dim) and this launch's one direction is written (times
    weight[b, k, d] when HAS_WEIGHT), added to what out holds when ACCUMULATE; otherwise out[b, k, pos, d] through
    the strides (K = 1 for the drop-in scan).  SCALE_FIRST (with ACCUMULATE and HAS_WEIGHT): out holds direction 0's
    unweighted output (left by a STORE_FIRST pass), which is multiplied by weight[b, 0, d] before the add.
    Instead of writing y, the channel gate's passes reduce it (over high-resolution tokens only):
    REDUCE = 1: red[bk, pos] += (sum_d y, sum_d y^2)       per-token LayerNorm statistics; with STORE_FIRST the
                                                           programs of direction 0 also write its y into out
                                                           (batch, L, dim), so that no later pass recomputes it
    REDUCE = 2: part[bk, chunk, d] = sum_t y * rstd[bk, t]   (tok holds (mean, rstd) per token)
    REDUCE = 3: red[bk, pos] += sum_d vec[bk, d] * y         (for the gate's LayerNorm backward)
    REDUCE = 4: part[bk, chunk, d] = sum_t y * out[b, pos, d]  (out holds the output gradient: the direction
                                                                weights' gradient, for the gated backward)
    The sums over channels of REDUCE 1 and 3 use atomics across channel blocks, or with DETERMINISTIC one program
    per chunk visits every channel block (``_channel_blocks``).  Low-resolution tokens of a cross-scale scan are
    never written.
    """
    pid_g, pid_c = tl.program_id(0), tl.program_id(2) + chunk_first
    b, k = pid_g // k_count, k_first + pid_g % k_count
    pid_bk = b * K + k  # index of (batch, direction) in the state buffers
    b_o = offset(b, WIDE)
    t = tl.arange(0, BLOCK_T)
    n = tl.arange(0, N)
    first_block, n_blocks = _channel_blocks(Dm, BC[10], BLOCK_D, DETERMINISTIC)
    for i in range(n_blocks):
        pid_d = first_block + i
        d, d_mask = block_channels(pid_d, BC[10], Dm, BLOCK_D, LOWRANK)
        if STATE_LOOP:
            rows = ((offset(pid_bk, WIDE) * n_chunks + pid_c) * Dm + d) * N  # this chunk's states
            entry_rows = carry_ptr + rows
            scratch_rows = scratch_ptr + rows
            in_registers: tl.constexpr = CARRY_IN_REGISTERS and TILES > 1
            unroll: tl.constexpr = N if in_registers else STATE_UNROLL
            if in_registers:
                states = tl.load(entry_rows[None, :] + n[:, None], mask=d_mask[None, :], other=0.0)
            else:
                states = tl.zeros([N, BLOCK_D], dtype=tl.float32)  # unused
        else:
            A = tl.load(A_ptr + k * Dm * N + d[:, None] * N + n[None, :], mask=d_mask[:, None],
                        other=0.0).to(tl.float32)
            h0 = _load_state(carry_ptr, pid_bk, pid_c, n_chunks, Dm, d, d_mask, n, WIDE)
        if HAS_D:
            Dk = tl.load(Dskip_ptr + k * Dm + d, mask=d_mask, other=0.0).to(tl.float32)
        if HAS_WEIGHT:
            wk = tl.load(weight_ptr + (b_o * K + k) * Dm + d, mask=d_mask, other=0.0).to(tl.float32)
        if REDUCE == 3:
            g = tl.load(vec_ptr + offset(pid_bk, WIDE) * Dm + d, mask=d_mask, other=0.0)
        part = tl.zeros([BLOCK_D], dtype=tl.float32)
        for j in range(TILES):
            s0 = (pid_c * TILES + j) * BLOCK_T
            if STATE_LOOP:
                pos, is_low, valid, u, delta_pre, delta, b_rows, c_rows, s_bn, s_cn = load_steps(
                    s0, t, b, k, pid_d, d, d_mask, U, X, DELTA, BC, PROJ, dirs_ptr, H, W, Dm, ORDER, LOWRANK,
                    HAS_BIAS, SOFTPLUS, R, N, STEPS_IN_REGISTERS=True, ROWWISE=ROWWISE, PAIRED=PAIRED,
                    IN_WINDOW=IN_WINDOW, WIDE=WIDE)
                y = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)
                if HAS_D:
                    y = u * Dk[None, :]
                # The chunk's first tile starts from its entry state, later ones from what the tile before left.
                y, states = _state_loop_tile(tl.where((d * 0 + j) == 0, entry_rows, scratch_rows), d_mask,
                                             scratch_rows, A_ptr + (k * Dm + d) * N, d_mask, t, delta, u, b_rows,
                                             c_rows, s_bn, s_cn, y, states, N, OUTPUT=True,
                                             STORE_END=TILES > 1 and not in_registers, UNROLL=unroll,
                                             IN_REGISTERS=in_registers, PAIRED=PAIRED)
            else:
                pos, is_low, valid, u, delta_pre, delta, Bm, Cm = load_chunk(
                    s0, t, b, k, pid_d, d, d_mask, U, X, DELTA, BC, PROJ, dirs_ptr, H, W, Dm, ORDER, LOWRANK,
                    HAS_BIAS, SOFTPLUS, R, N, IN_WINDOW, WIDE)
                _, _, h = _tile_states(h0, t, delta, u, Bm, A)
                if TILES > 1:
                    h0 = _row(h, t, BLOCK_T - 1)
                y = tl.sum(h * Cm, axis=2)
                if HAS_D:
                    y += u * Dk[None, :]
            pos_o = offset(pos, WIDE)
            rowwise: tl.constexpr = STATE_LOOP and ROWWISE
            if HAS_Z:
                z = load_td(z_ptr + b_o * s_zb, pos_o * s_zl, offset(d, WIDE) * s_zd, valid, d_mask, rowwise)
                y = y * z / (1.0 + tl.exp(-z))
            high = valid & (is_low == 0)
            write = high[:, None] & d_mask[None, :]
            token = offset(pid_bk, WIDE) * L_high + pos_o
            # This direction's (step, channel) elements of out (REDUCE 1 and 4 pass a summed out: s_ok = 0).
            out_k = out_ptr + b_o * s_ob + offset(k, WIDE) * s_ok
            out_rows = pos_o * s_ol
            out_cols = offset(d, WIDE) * s_od
            dest = out_k + out_rows[:, None] + out_cols[None, :]
            if REDUCE == 0:
                if HAS_WEIGHT:
                    y = y * wk[None, :]
                if ACCUMULATE:
                    before = load_td(out_k, out_rows, out_cols, high, d_mask, rowwise)
                    if SCALE_FIRST:
                        before *= tl.load(weight_ptr + b_o * K * Dm + d, mask=d_mask, other=0.0).to(tl.float32)[None, :]
                    y += before
                store_td(out_k, out_rows, out_cols, y, high, d_mask, rowwise)
            elif REDUCE == 1:
                if STORE_FIRST:
                    tl.store(dest, y.to(out_ptr.dtype.element_ty), mask=write & ((d * 0 + k) == 0)[None, :])
                y = tl.where(write, y, 0.0)
                _accumulate(red_ptr + token * 2, tl.sum(y, axis=1), high, DETERMINISTIC)
                _accumulate(red_ptr + token * 2 + 1, tl.sum(y * y, axis=1), high, DETERMINISTIC)
            elif REDUCE == 2:
                rstd = tl.load(tok_ptr + token * 2 + 1, mask=high, other=0.0)
                part += tl.sum(tl.where(write, y * rstd[:, None], 0.0), axis=0)
            elif REDUCE == 4:
                part += tl.sum(y * tl.load(dest, mask=write, other=0.0).to(tl.float32), axis=0)
            else:
                _accumulate(red_ptr + token, tl.sum(tl.where(write, y * g[None, :], 0.0), axis=1), high,
                            DETERMINISTIC)
        if REDUCE == 2 or REDUCE == 4:
            tl.store(part_ptr + (offset(pid_bk, WIDE) * n_chunks + pid_c) * Dm + d, part, mask=d_mask)
        if DETERMINISTIC:
            # The next block's read-add-writes must see this block's stores, whichever thread made them.
            tl.debug_barrier()


@triton.jit
def _upstream_grad(
    pos_o, b_o, k, d, d_mask, valid, is_low, dout_ptr, s_gb, s_gk, s_gl, s_gd, weight_ptr, K, Dm,
    y, tok_ptr, vec_ptr, gbar_ptr, L_high,
    SUM_DIRECTIONS: tl.constexpr, HAS_WEIGHT: tl.constexpr, LN_UPSTREAM: tl.constexpr, ROWWISE: tl.constexpr,
    WIDE: tl.constexpr,
):
    """Gradient reaching this direction's output at each step, (T, D); zero for low-resolution tokens.

    LN_UPSTREAM: the gradient of the gate's pooled statistic mean_t LayerNorm(y_t) instead of an output gradient:
    rstd_t (g - mean(g) - xhat_t m_t) with g = vec[bk] and (mean, rstd, m) per token in tok.  With SUM_DIRECTIONS
    too, both: the output gradient (times the direction weight) plus the pooled statistic's, so that the gated
    layer's two upstreams take one backward pass (``directional.triton_op``).
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
        xhat = (y - mu[:, None]) * rstd[:, None]
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


@triton.jit(do_not_specialize=["chunk_first"])
def chunk_adjoint_kernel(
    local_ptr, dout_ptr, s_gb, s_gk, s_gl, s_gd, weight_ptr, z_ptr, s_zb, s_zl, s_zd,
    entry_ptr, Dskip_ptr, tok_ptr, vec_ptr, gbar_ptr, L_high,
    U, X, DELTA, BC, PROJ, A_ptr, dirs_ptr, K, H, W, Dm, n_chunks, chunk_first,
    ORDER: tl.constexpr, LOWRANK: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, HAS_Z: tl.constexpr, SUM_DIRECTIONS: tl.constexpr, HAS_WEIGHT: tl.constexpr,
    LN_UPSTREAM: tl.constexpr, HAS_D: tl.constexpr,
    R: tl.constexpr, N: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, STATE_LOOP: tl.constexpr = False,
    STATE_UNROLL: tl.constexpr = 1, ROWWISE: tl.constexpr = False, PAIRED: tl.constexpr = False,
    IN_WINDOW: tl.constexpr = False, WIDE: tl.constexpr = True,
):
    """Adjoint of each chunk with nothing arriving from later chunks, taken back through its first decay:
    local = exp(delta_t0 A) * g_t0, the gradient the chunk sends to the state entering it.

    Only the adjoint at the chunk's first step is needed, so a sum over steps replaces the adjoint scan:
    exp(delta_0 A) g_0 = sum_t exp(A sum_{r<=t} delta_r) C_t dy_t.  One exp per element either way, and no reverse
    scan, which Triton 3.6-3.7 lowers with lane flips of every scanned tensor (bench/README.md).  STATE_LOOP: one
    state at a time on a (steps, channels) tile with the steps in registers (``_state_loop_tile``), where the sum
    over steps stays in each thread.
    """
    pid_bk, pid_c = tl.program_id(0), tl.program_id(2) + chunk_first
    b, k = pid_bk // K, pid_bk % K
    b_o = offset(b, WIDE)
    base = (offset(pid_bk, WIDE) * n_chunks + pid_c) * Dm
    if STATE_LOOP:
        d, d_mask = block_channels(tl.program_id(1), BC[10], Dm, BLOCK_D, LOWRANK)
        t = tl.arange(0, BLOCK_T)
        pos, is_low, valid, u, delta_pre, delta, b_rows, c_rows, s_bn, s_cn = load_steps(
            pid_c * BLOCK_T, t, b, k, tl.program_id(1), d, d_mask, U, X, DELTA, BC, PROJ, dirs_ptr, H, W, Dm, ORDER,
            LOWRANK, HAS_BIAS, SOFTPLUS, R, N, STEPS_IN_REGISTERS=True, ROWWISE=ROWWISE, PAIRED=PAIRED,
            IN_WINDOW=IN_WINDOW, WIDE=WIDE)
        A_rows = A_ptr + (k * Dm + d) * N
        y = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)
        if LN_UPSTREAM:  # the LayerNorm gradient depends on y: recompute the chunk's outputs
            if HAS_D:
                y = u * tl.load(Dskip_ptr + k * Dm + d, mask=d_mask, other=0.0).to(tl.float32)[None, :]
            entry_rows = entry_ptr + (base + d) * N
            y, _ = _state_loop_tile(entry_rows, d_mask, entry_rows, A_rows, d_mask, t, delta, u, b_rows, c_rows,
                                    s_bn, s_cn, y, u, N, OUTPUT=True, STORE_END=False, UNROLL=STATE_UNROLL,
                                    PAIRED=PAIRED)
    else:
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
    rowwise: tl.constexpr = STATE_LOOP and ROWWISE
    dy = _upstream_grad(pos_o, b_o, k, d, d_mask, valid, is_low, dout_ptr, s_gb, s_gk, s_gl, s_gd, weight_ptr, K,
                        Dm, y, tok_ptr, vec_ptr, gbar_ptr, L_high, SUM_DIRECTIONS, HAS_WEIGHT, LN_UPSTREAM, rowwise,
                        WIDE)
    if HAS_Z:
        z = load_td(z_ptr + b_o * s_zb, pos_o * s_zl, offset(d, WIDE) * s_zd, valid, d_mask, rowwise)
        dy = dy * z / (1.0 + tl.exp(-z))
    reach = tl.cumsum(delta, axis=0)
    if STATE_LOOP:
        reach = reach * LOG2E
        local_rows = local_ptr + (base + d) * N
        for n0 in range(0, N, STATE_UNROLL):
            for i in tl.static_range(STATE_UNROLL):
                n = n0 + i
                a = tl.load(A_rows + n, mask=d_mask, other=0.0).to(tl.float32)
                cn = tl.load(c_rows + n * s_cn).to(tl.float32)
                tl.store(local_rows + n, tl.sum(tl.exp2(reach * a[None, :]) * (dy * cn[:, None]), axis=0),
                         mask=d_mask)
    else:
        first = tl.sum(tl.exp(reach[:, :, None] * A[None, :, :]) * (dy[:, :, None] * Cm), axis=0)
        tl.store(local_ptr + (base + d[:, None]) * N + n[None, :], first, mask=d_mask[:, None])


@triton.jit
def _output_grads(
    y, pos_o, b_o, k, d, d_mask, valid, is_low, chunk_base, dout_ptr, s_gb, s_gk, s_gl, s_gd, weight_ptr,
    dweight_part_ptr, z_ptr, dz_ptr, s_zb, s_zl, s_zd, tok_ptr, vec_ptr, gbar_ptr, L_high, K, Dm,
    SUM_DIRECTIONS: tl.constexpr, HAS_WEIGHT: tl.constexpr, LN_UPSTREAM: tl.constexpr, HAS_Z: tl.constexpr,
    ROWWISE: tl.constexpr, WIDE: tl.constexpr,
):
    """Gradient dy (T, D) reaching this direction's y = C.h + D u (the z gate's factor applied), given y; stores the
    chunk's direction-weight gradient and dz on the way."""
    dout = _upstream_grad(pos_o, b_o, k, d, d_mask, valid, is_low, dout_ptr, s_gb, s_gk, s_gl, s_gd, weight_ptr, K,
                          Dm, y, tok_ptr, vec_ptr, gbar_ptr, L_high, SUM_DIRECTIONS, HAS_WEIGHT, LN_UPSTREAM, ROWWISE,
                          WIDE)
    if SUM_DIRECTIONS and not LN_UPSTREAM:  # with LN_UPSTREAM a REDUCE = 4 pass has computed it already
        if HAS_WEIGHT:
            # d weight[b, k, d] = sum over high-resolution steps of dout * y (dout read without the weight).
            raw = tl.load(dout_ptr + b_o * s_gb + pos_o[:, None] * s_gl + offset(d, WIDE)[None, :] * s_gd,
                          mask=(valid & (is_low == 0))[:, None] & d_mask[None, :], other=0.0).to(tl.float32)
            tl.store(dweight_part_ptr + chunk_base + d, tl.sum(raw * y, axis=0), mask=d_mask)
    dy = dout
    if HAS_Z:
        # z and dz: the same (step, channel) offsets.
        rows, cols = pos_o * s_zl, offset(d, WIDE) * s_zd
        z = load_td(z_ptr + b_o * s_zb, rows, cols, valid, d_mask, ROWWISE)
        sig = 1.0 / (1.0 + tl.exp(-z))
        store_td(dz_ptr + b_o * s_zb, rows, cols, dout * y * sig * (1.0 + z * (1.0 - sig)), valid, d_mask, ROWWISE)
        dy = dout * z * sig
    return dy


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
            _accumulate(du_high, du, mask_td, OWNED)
        else:
            du_low = du_low_ptr + b_o * s_ub_low + pos_o[:, None] * s_ul + offset(d, WIDE)[None, :] * s_ud
            _accumulate(tl.where(is_low[:, None], du_low, du_high), du, mask_td, OWNED)


@triton.jit
def _backward_state_loop(
    du_ptr, du_low_ptr, ddelta_ptr, dx_ptr, dx_low_ptr, dB_ptr, dC_ptr, dz_ptr,
    dA_part_ptr, dD_part_ptr, dbias_part_ptr, dW_part_ptr, dweight_part_ptr,
    dout_ptr, s_gb, s_gk, s_gl, s_gd, weight_ptr, entry_ptr, arrive_ptr, Dskip_ptr,
    z_ptr, s_zb, s_zl, s_zd, tok_ptr, vec_ptr, gbar_ptr, L_high,
    U, X, DELTA, BC, PROJ, A_ptr, dirs_ptr, K, H, W, Dm, n_chunks, b, k, pid_bk, pid_c, s_dx_part, s_dxl_part,
    ORDER: tl.constexpr, LOWRANK: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, SUM_DIRECTIONS: tl.constexpr,
    HAS_WEIGHT: tl.constexpr, LN_UPSTREAM: tl.constexpr, DX_COPIES: tl.constexpr, DU_OWNED: tl.constexpr,
    LANE_SUMS: tl.constexpr, ROWWISE: tl.constexpr, R: tl.constexpr,
    N: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, RP: tl.constexpr, PAIRED: tl.constexpr,
    IN_WINDOW: tl.constexpr, WIDE: tl.constexpr,
):
    """``backward_grads_kernel`` one state at a time (its STATE_LOOP): the 2D layer (LOWRANK) and the drop-in scan.

    The tile is (BLOCK_T steps, BLOCK_D channels) with each thread holding one channel's steps in registers, as in
    ``_state_loop_tile``: per state n the states and the adjoint are scanned in registers (the adjoint over the steps
    reversed, with ``_adjoint_combine``), du's and ddelta's sums over n accumulate in registers and dA's sum over steps
    stays in the thread.  Only dB and dC (sums over channels) cross threads: a sum over the warp's lanes and one add
    per step and state, which is why the host launches one warp per 32 channels (no barriers).  The dt low-rank
    gradients are two small products on the tile (tl.dot: (T, D) x (D, R) and (D, T) x (T, R)); the drop-in scan,
    given delta, stores ddelta instead.

    What other programs also write: dB, dC and the dt low-rank input's gradient (in dx and dx_low; the drop-in's dB
    and dC are laid out like B and C), summed over the channel blocks, are added with atomics, or with DX_COPIES
    stored into the block's own zeroed copy of dx and dx_low (dB and dC), ``s_dx_part`` and ``s_dxl_part`` elements
    apart, which the host then sums.  du, summed over directions, is added
    with atomics, or with DU_OWNED (the host launches one direction at a time) by a plain read-add-write; the (T, D)
    tile's atomics hold the most registers (compile_check, sm_90: 92-196 bytes of spills without them, 232-464
    with).  Deterministic mode sets both.  (Looping over the channel blocks in one program instead, as the tile
    kernels do, kept what does not depend on the block, positions and row pointers, live across the loop: 1,032-1,268
    bytes of spills.)

    LANE_SUMS (BLOCK_D = 32, one warp): dB's and dC's sums over the channels are reduce-scattered over the lanes
    (``_lane_sums``), each lane then adding the sum of one step, instead of every lane reducing every step.
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
    entry_rows = entry_ptr + (chunk_base + d) * N
    arrive_rows = arrive_ptr + (chunk_base + d) * N
    A_rows = A_ptr + (k * Dm + d) * N
    if HAS_D:
        Dk = tl.load(Dskip_ptr + k * Dm + d, mask=d_mask, other=0.0).to(tl.float32)
    else:
        Dk = tl.zeros([BLOCK_D], dtype=tl.float32)
    y = u * Dk[None, :]
    if LN_UPSTREAM or HAS_Z or (SUM_DIRECTIONS and HAS_WEIGHT):  # these need the outputs: recompute them
        y, _ = _state_loop_tile(entry_rows, d_mask, entry_rows, A_rows, d_mask, t, delta, u, b_rows, c_rows, s_bn,
                                s_cn, y, u, N, OUTPUT=True, STORE_END=False)
    dy = _output_grads(y, pos_o, b_o, k, d, d_mask, valid, is_low, chunk_base, dout_ptr, s_gb, s_gk, s_gl, s_gd,
                       weight_ptr, dweight_part_ptr, z_ptr, dz_ptr, s_zb, s_zl, s_zd, tok_ptr, vec_ptr,
                       gbar_ptr, L_high, K, Dm, SUM_DIRECTIONS, HAS_WEIGHT, LN_UPSTREAM, HAS_Z, ROWWISE, WIDE)
    # dx and dx_low (dB and dC), or this channel block's copies of them (DX_COPIES).
    sums_a = (dx_ptr if LOWRANK else dB_ptr) + offset(pid_d, WIDE) * s_dx_part
    sums_b = (dx_low_ptr if LOWRANK else dC_ptr) + offset(pid_d, WIDE) * s_dxl_part
    db_rows, dc_rows = _channel_sum_rows(sums_a, sums_b, X, BC, b_o, pos_o, is_low, k, pid_d, ORDER, LOWRANK, R, N,
                                         BLOCK_D, WIDE)
    if LANE_SUMS:
        # Where each lane adds its step's sum: the step's rows, recomputed for the lane's step (once per tile).
        per_step: tl.constexpr = BLOCK_D // BLOCK_T
        lane = tl.arange(0, BLOCK_D)
        pos_l, is_low_l, valid_l = step_positions(pid_c * BLOCK_T + lane // per_step, k, dirs_ptr, H, W, ORDER)
        db_lane, dc_lane = _channel_sum_rows(sums_a, sums_b, X, BC, b_o, offset(pos_l, WIDE), is_low_l, k, pid_d,
                                             ORDER, LOWRANK, R, N, BLOCK_D, WIDE)
        lane_mask = valid_l & (lane % per_step == 0)
    du_delta = delta * u
    first = (t == 0)[:, None]
    ones = tl.full([BLOCK_T, BLOCK_D], 1.0, tl.float32)
    gB = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)  # sum_n g B
    gA = tl.zeros([BLOCK_T, BLOCK_D], dtype=tl.float32)  # sum_n A g exp(delta A) h_prev
    for n in range(N):
        a = tl.load(A_rows + n, mask=d_mask, other=0.0).to(tl.float32)
        h0 = tl.load(entry_rows + n, mask=d_mask, other=0.0)
        g_end = tl.load(arrive_rows + n, mask=d_mask, other=0.0)
        bn = tl.load(b_rows + n * s_bn).to(tl.float32)
        cn = tl.load(c_rows + n * s_cn).to(tl.float32)
        decay = tl.exp2(delta * (a * LOG2E)[None, :])
        drive = du_delta * bn[:, None]
        _, h = tl.associative_scan((decay, drive + tl.where(first, decay * h0[None, :], 0.0)), 0, _combine)
        if LANE_SUMS:  # dC
            _accumulate(dc_lane + n * s_cn, _lane_sums(dy * h, lane, BLOCK_T, BLOCK_D), lane_mask, DX_COPIES,
                        FIRST_WRITE=True)
        else:
            _accumulate(dc_rows + n * s_cn, tl.sum(dy * h, axis=1), valid, DX_COPIES, FIRST_WRITE=True)
        # The adjoint over the reversed steps: the tile's last step first, seeded with what arrives from later chunks.
        seed = _reverse_rows(dy * cn[:, None]) + tl.where(first, g_end[None, :], 0.0)
        _, _, g = tl.associative_scan((_reverse_rows(decay), ones, seed), 0, _adjoint_combine)
        g = _reverse_rows(g)
        gB += g * bn[:, None]
        g_prev = g * (h - drive)  # g exp(delta A) h_prev
        gA += g_prev * a[None, :]
        tl.store(dA_part_ptr + (chunk_base + d) * N + n, tl.sum(g_prev * delta, axis=0), mask=d_mask)
        if LANE_SUMS:  # dB
            _accumulate(db_lane + n * s_bn, _lane_sums(g * du_delta, lane, BLOCK_T, BLOCK_D), lane_mask,
                        DX_COPIES, FIRST_WRITE=True)
        else:
            _accumulate(db_rows + n * s_bn, tl.sum(g * du_delta, axis=1), valid, DX_COPIES, FIRST_WRITE=True)

    du = gB * delta + dy * Dk[None, :]
    ddelta = gB * u + gA
    if SOFTPLUS:
        ddelta = ddelta / (1.0 + tl.exp(-delta_pre))
    ddelta = tl.where(mask_td, ddelta, 0.0)
    tl.store(dD_part_ptr + chunk_base + d, tl.sum(dy * u, axis=0), mask=d_mask)
    tl.store(dbias_part_ptr + chunk_base + d, tl.sum(ddelta, axis=0), mask=d_mask)
    _accumulate_du(du_ptr, du_low_ptr, U, b_o, pos_o, is_low, valid, d, d_mask, du, ORDER, DU_OWNED, ROWWISE, WIDE)
    if LOWRANK:
        # Through delta_pre = dt_low @ dt_weight[k].T: the input's gradient sums over channels and the weight's over
        # steps, both small products on the tile (RP >= 16, the smallest tl.dot; the host pads it).
        r = tl.arange(0, RP)
        mask_tr = valid[:, None] & (r < R)[None, :]
        mask_dr = d_mask[:, None] & (r < R)[None, :]
        w = tl.load(dtw_ptr + (k * Dm + d[:, None]) * R + r[None, :], mask=mask_dr, other=0.0).to(tl.float32)
        dxrow = x_rows(sums_a, sums_b, X, b_o, pos_o, is_low, k, ORDER)
        _accumulate(dxrow[:, None] + r[None, :] * s_xc, tl.dot(ddelta, w, input_precision="ieee"), mask_tr,
                    DX_COPIES, FIRST_WRITE=True)
        xrow = x_rows(X[0], X[1], X, b_o, pos_o, is_low, k, ORDER)
        cols = tl.load(xrow[:, None] + r[None, :] * s_xc, mask=mask_tr, other=0.0).to(tl.float32)
        tl.store(dW_part_ptr + (chunk_base + d[:, None]) * R + r[None, :],
                 tl.dot(tl.trans(ddelta), cols, input_precision="ieee"), mask=mask_dr)
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
    tok_ptr, vec_ptr, gbar_ptr, L_high,
    U, X, DELTA, BC, PROJ, A_ptr, dirs_ptr, K, H, W, Dm, n_chunks, k_first, k_count, chunk_first, s_dx_part,
    s_dxl_part,
    ORDER: tl.constexpr, LOWRANK: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, HAS_D: tl.constexpr, HAS_Z: tl.constexpr, SUM_DIRECTIONS: tl.constexpr,
    HAS_WEIGHT: tl.constexpr, LN_UPSTREAM: tl.constexpr, DETERMINISTIC: tl.constexpr, R: tl.constexpr,
    N: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, RP: tl.constexpr,
    STATE_LOOP: tl.constexpr = False, DX_COPIES: tl.constexpr = False, DU_OWNED: tl.constexpr = False,
    LANE_SUMS: tl.constexpr = False, ROWWISE: tl.constexpr = False, PAIRED: tl.constexpr = False,
    IN_WINDOW: tl.constexpr = False, WIDE: tl.constexpr = True,
):
    """All gradients of one chunk: recompute h from the chunk's entry state, run the adjoint recurrence
    g_t = C_t dy_t + exp(delta_{t+1} A) g_{t+1} from the adjoint arriving at the chunk's end, then

        du     = delta * sum_n g B + D dy             ddelta = sum_n g (B u + A exp(delta A) h_prev)
        dB     = sum_d g delta u                      dC     = sum_d dy h
        dA     = sum_t g delta exp(delta A) h_prev    with exp(delta_t A) h_{t-1} = h_t - delta_t B_t u_t.

    The launch covers directions k_first .. k_first + k_count - 1.  Per-program sums over steps (dA, dD, dbias, dW,
    the direction weights) go to per-chunk buffers that the host adds up.  Gradients summed over channel blocks
    (dB, dC, the dt low-rank input) or over directions (du) use fp32 atomics, or with DETERMINISTIC a plain
    read-add-write: one program per chunk visits every channel block (``_channel_blocks``) and the host launches
    one direction at a time, so no two programs of a launch write the same element.  STATE_LOOP: the same one state
    at a time (``_backward_state_loop``), which keeps a program per channel block and, in deterministic mode, sets
    DX_COPIES (each block stores its sums over channels into its own copy of dx and dx_low, ``s_dx_part`` and
    ``s_dxl_part`` elements apart) and DU_OWNED (du added without atomics, one direction per launch).
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
            z_ptr, s_zb, s_zl, s_zd, tok_ptr, vec_ptr, gbar_ptr, L_high,
            U, X, DELTA, BC, PROJ, A_ptr, dirs_ptr, K, H, W, Dm, n_chunks, b, k, pid_bk, pid_c, s_dx_part,
            s_dxl_part, ORDER, LOWRANK, HAS_BIAS, SOFTPLUS, HAS_D, HAS_Z, SUM_DIRECTIONS, HAS_WEIGHT, LN_UPSTREAM,
            DX_COPIES, DU_OWNED, LANE_SUMS, ROWWISE, R, N, BLOCK_T, BLOCK_D, RP, PAIRED, IN_WINDOW, WIDE)
        return
    first_block, n_blocks = _channel_blocks(Dm, BC[10], BLOCK_D, DETERMINISTIC)
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
                           gbar_ptr, L_high, K, Dm, SUM_DIRECTIONS, HAS_WEIGHT, LN_UPSTREAM, HAS_Z, False, WIDE)

        # dC is the last use of h: write it before the adjoint scan so that h and g are never live together (the
        # kernel's register peak, see compile_check).
        decayed_prev = h - drive  # exp(delta_t A) h_{t-1}
        dyh = h * dy[:, :, None]
        # dB's and dC's rows (columns of dx in the layer); state n lies as far on as in B and C.
        db_rows, dc_rows = _channel_sum_rows(dx_ptr if LOWRANK else dB_ptr, dx_low_ptr if LOWRANK else dC_ptr, X, BC,
                                             b_o, pos_o, is_low, k, pid_d, ORDER, LOWRANK, R, N, BLOCK_D, WIDE)
        _accumulate(dc_rows[:, None] + n[None, :] * (s_xc if LOWRANK else s_cn), tl.sum(dyh, axis=1),
                    valid[:, None], DETERMINISTIC)

        # Adjoint recurrence over the chunk, seeded with what arrives from later chunks.  The deterministic kernel
        # keeps Triton's reverse scan: it loops over channel blocks and already holds about 40 more registers, and
        # the reversal's extra ones spill there under Triton 3.6.
        g = _tile_adjoint(delta_next, A, dy, Cm, g_end, t, BY_REGISTERS=not DETERMINISTIC)

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
        _accumulate(db_rows[:, None] + n[None, :] * (s_xc if LOWRANK else s_bn), tl.sum(gdu, axis=1),
                    valid[:, None], DETERMINISTIC)
        if LOWRANK:
            xrow = x_rows(X[0], X[1], X, b_o, pos_o, is_low, k, ORDER)
            dxrow = x_rows(dx_ptr, dx_low_ptr, X, b_o, pos_o, is_low, k, ORDER)
            # Through delta_pre = dt_low @ dt_weight[k].T.  Each product is one (T, D, RP) tile and one reduction:
            # a rank at a time took R reductions over channels, each with four barriers (the PTX).
            r = tl.arange(0, RP)
            mask_tr = valid[:, None] & (r < R)[None, :]
            mask_dr = d_mask[:, None] & (r < R)[None, :]
            w = tl.load(dtw_ptr + (k * Dm + d[:, None]) * R + r[None, :], mask=mask_dr, other=0.0).to(tl.float32)
            _accumulate(dxrow[:, None] + r[None, :] * s_xc, tl.sum(ddelta[:, :, None] * w[None, :, :], axis=1),
                        mask_tr, DETERMINISTIC)
            cols = tl.load(xrow[:, None] + r[None, :] * s_xc, mask=mask_tr, other=0.0).to(tl.float32)
            tl.store(dW_part_ptr + (chunk_base + d[:, None]) * R + r[None, :],
                     tl.sum(ddelta[:, :, None] * cols[:, None, :], axis=0), mask=mask_dr)
        else:
            tl.store(ddelta_ptr + b_o * s_db + pos_o[:, None] * s_dl + offset(d, WIDE)[None, :] * s_dd, ddelta,
                     mask=mask_td)

        if DETERMINISTIC:
            # The next block's read-add-writes must see this block's stores, whichever thread made them.
            tl.debug_barrier()
