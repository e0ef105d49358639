"""The forward's scan passes: chunk end states, then the output (and the channel gate's reductions).

    chunk_end_state  ->  chunk_carry (:mod:`.chunk_carry`)  ->  forward_output

``forward_output_kernel`` adds every direction's output into one raster-order tensor (one launch per direction,
adding to the last).  With REDUCE it computes one of the channel gate's sums instead: its statistics and pooling in
the forward (``first_direction_pool_kernel`` pools direction 0 from the output buffer), two sums for its backward.
"""

import triton
import triton.language as tl

from .recurrence import tile_row, tile_states
from .state_loop import state_loop_tile
from .tile_io import (
    STEP_VECTORS, accumulate, as_stored, block_channels, channel_blocks, load_chunk, load_state, load_steps, load_td,
    offset, store_td,
)


@triton.jit(do_not_specialize=["chunk_first"])  # one compiled kernel for every launch's first chunk
def chunk_end_state_kernel(
    state_ptr, dsum_ptr,
    U, X, DELTA, BC, PROJ, A_ptr, dirs_ptr, K, H, W, Dm, n_chunks, chunk_first,
    ORDER: tl.constexpr, LOWRANK: tl.constexpr, HAS_BIAS: tl.constexpr,
    SOFTPLUS: tl.constexpr, R: tl.constexpr, N: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr, TILES: tl.constexpr, STATE_LOOP: tl.constexpr,
    STATE_UNROLL: tl.constexpr = 1, CARRY_IN_REGISTERS: tl.constexpr = False, ROWWISE: tl.constexpr = False,
    PAIRED: tl.constexpr = False, IN_WINDOW: tl.constexpr = False, WIDE: tl.constexpr = True,
    STAGES: tl.constexpr = 1, UNROLL_RANKS: tl.constexpr = False,
):
    """State at the end of each chunk when the chunk starts from zero, and the chunk's sum of delta.

    A chunk is TILES tiles of BLOCK_T steps, scanned one after another with the state carried in registers (with
    STATE_LOOP, one state at a time through the chunk's own slot of ``state``, or in registers with
    CARRY_IN_REGISTERS, see ``state_loop_tile``; STATE_UNROLL states per loop trip, STAGES its pipeline stages).
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
                SOFTPLUS, R, N, STEPS_IN_REGISTERS=True, ROWWISE=ROWWISE, PAIRED=PAIRED, IN_WINDOW=IN_WINDOW, WIDE=WIDE,
                UNROLL_RANKS=UNROLL_RANKS and (TILES == 1 or in_registers))  # states through memory: spills
            # The first tile starts from zero; later ones from the state the previous one left in the slot (or in
            # registers).  (y is unused.)
            _, states = state_loop_tile(rows, d_mask & ((d * 0 + j) > 0), rows, A_ptr + (k * Dm + d) * N, d_mask, t,
                                         delta, u, b_rows, c_rows, s_bn, s_cn, delta, states,
                                         (offset(pos, WIDE), valid), N, OUTPUT=False,
                                         STORE_END=not in_registers, UNROLL=unroll, IN_REGISTERS=in_registers,
                                         PAIRED=PAIRED, STAGES=STAGES, VECTORS=ROWWISE == STEP_VECTORS, WIDE=WIDE)
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
            _, _, hs = tile_states(h, t, delta, u, Bm, A)
            h = tile_row(hs, t, BLOCK_T - 1)
            dsum += tl.sum(delta, axis=0)
        tl.store(state_ptr + (base + d[:, None]) * N + n[None, :], h, mask=d_mask[:, None])
    tl.store(dsum_ptr + base + d, dsum, mask=d_mask)


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
    STAGES: tl.constexpr = 1, ROUND_FIRST: tl.constexpr = False,
):
    """y_t = C_t . h_t + D u_t (times silu(z_t)) from the chunk's entry state, written at each step's position.

    The launch covers directions k_first .. k_first + k_count - 1.  The chunk's TILES tiles of BLOCK_T steps run
    one after another, the state carried in registers, or with STATE_LOOP (``state_loop_tile``) one state at a time
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
                                                           (with ROUND_FIRST, as every pass of a 16-bit gated
                                                           layer that sees direction 0, its y rounded as stored:
                                                           ``tile_io.as_stored``)
    REDUCE = 2: part[bk, chunk, d] = sum_t y * rstd[bk, t]   (tok holds (mean, rstd) per token)
    REDUCE = 3: red[bk, pos] += sum_d vec[bk, d] * y         (for the gate's LayerNorm backward)
    REDUCE = 4: part[bk, chunk, d] = sum_t y * out[b, pos, d]  (out holds the output gradient: the direction
                                                                weights' gradient, for the gated backward)
    The sums over channels of REDUCE 1 and 3 use atomics across channel blocks, or with DETERMINISTIC one program
    per chunk visits every channel block (``channel_blocks``).  Low-resolution tokens of a cross-scale scan are
    never written.
    """
    pid_g, pid_c = tl.program_id(0), tl.program_id(2) + chunk_first
    b, k = pid_g // k_count, k_first + pid_g % k_count
    pid_bk = b * K + k  # index of (batch, direction) in the state buffers
    b_o = offset(b, WIDE)
    t = tl.arange(0, BLOCK_T)
    n = tl.arange(0, N)
    first_block, n_blocks = channel_blocks(Dm, BC[10], BLOCK_D, DETERMINISTIC)
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
            h0 = load_state(carry_ptr, pid_bk, pid_c, n_chunks, Dm, d, d_mask, n, WIDE)
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
                y, states = state_loop_tile(tl.where((d * 0 + j) == 0, entry_rows, scratch_rows), d_mask,
                                             scratch_rows, A_ptr + (k * Dm + d) * N, d_mask, t, delta, u, b_rows,
                                             c_rows, s_bn, s_cn, y, states, (offset(pos, WIDE), valid), N,
                                             OUTPUT=True, VECTORS=ROWWISE == STEP_VECTORS, WIDE=WIDE,
                                             STORE_END=TILES > 1 and not in_registers, UNROLL=unroll,
                                             IN_REGISTERS=in_registers, PAIRED=PAIRED, STAGES=STAGES)
            else:
                pos, is_low, valid, u, delta_pre, delta, Bm, Cm = load_chunk(
                    s0, t, b, k, pid_d, d, d_mask, U, X, DELTA, BC, PROJ, dirs_ptr, H, W, Dm, ORDER, LOWRANK,
                    HAS_BIAS, SOFTPLUS, R, N, IN_WINDOW, WIDE)
                _, _, h = tile_states(h0, t, delta, u, Bm, A)
                if TILES > 1:
                    h0 = tile_row(h, t, BLOCK_T - 1)
                y = tl.sum(h * Cm, axis=2)
                if HAS_D:
                    y += u * Dk[None, :]
            pos_o = offset(pos, WIDE)
            rowwise: tl.constexpr = STATE_LOOP and ROWWISE
            if HAS_Z:
                z = load_td(z_ptr + b_o * s_zb, pos_o * s_zl, offset(d, WIDE) * s_zd, valid, d_mask, rowwise)
                y = y * z / (1.0 + tl.exp(-z))
            y = as_stored(y, k, d, U[0], ROUND_FIRST)
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
                accumulate(red_ptr + token * 2, tl.sum(y, axis=1), high, DETERMINISTIC)
                accumulate(red_ptr + token * 2 + 1, tl.sum(y * y, axis=1), high, DETERMINISTIC)
            elif REDUCE == 2:
                rstd = tl.load(tok_ptr + token * 2 + 1, mask=high, other=0.0)
                part += tl.sum(tl.where(write, y * rstd[:, None], 0.0), axis=0)
            elif REDUCE == 4:
                part += tl.sum(y * tl.load(dest, mask=write, other=0.0).to(tl.float32), axis=0)
            else:
                accumulate(red_ptr + token, tl.sum(tl.where(write, y * g[None, :], 0.0), axis=1), high,
                            DETERMINISTIC)
        if REDUCE == 2 or REDUCE == 4:
            tl.store(part_ptr + (offset(pid_bk, WIDE) * n_chunks + pid_c) * Dm + d, part, mask=d_mask)
        if DETERMINISTIC:
            # The next block's read-add-writes must see this block's stores, whichever thread made them.
            tl.debug_barrier()
