"""The forward in one pass over the recurrence (``TileConfig.one_pass_forward``; off by default: on the H200 the
layer's ran 1.5-5.4x slower than its two passes, the drop-in's as fast as mamba-ssm at best; bench/README.md).

The chunked forward (:mod:`.forward_kernels`) makes two passes, chunk end states then outputs, and so computes every
exponential twice; in case (a) those exponentials alone take about 180 us of an H200's time.  Here one program walks
a whole scan for its (batch, direction, few channels), as mamba-ssm's kernel does, and writes the outputs, the
final state and, for a training forward, what the backward reads: the state entering every chunk and each chunk's
delta sum, laid out as ``launch.forward_states`` leaves them, so the backward runs unchanged.

Layout (bench/JOURNAL.md, "A one-pass forward with the segments across the threads" for the prototype, "The
one-pass forward in the op" for this kernel: 17.8 executed SASS instructions per (step, channel, state) in the
layer's float32 training forward, one channel per program, at 254 registers, sm_90):
- each tile of SEGMENTS x STEPS consecutive steps is cut into SEGMENTS segments across the threads, a segment's
  STEPS steps and the program's BLOCK_D channels in its thread's registers;
- the N states go one after another.  For each, every segment's steps are scanned from zero (the decays' running
  products and the states), the segments' (decay, end state) pairs are scanned across the threads once per tile,
  the state entering a segment comes from the one before it (``tl.gather``), and each step's state is its state
  from zero plus its running product times the entering state;
- the state crosses tiles through two alternating scratch slots per program (``carry``), with a barrier between
  tiles: a tile's stores never overwrite what a slower thread of the tile before has still to read.
Every step's position comes from ``positions.tile_positions`` (any order, window and reversal); the inputs are
gathered there, as in the chunked kernels (``tile_io.load_steps``).  With a training forward's STORE_STATES the
segments are the backward's chunks (STEPS = TileConfig.block_t).
"""

import triton
import triton.language as tl

from .positions import tile_positions
from .recurrence import LOG2E, combine
from .state_loop import state_column_pairs
from .tile_io import block_channels, offset, one_pass_params, one_pass_step_inputs, one_pass_store


@triton.jit(do_not_specialize=["k_first"])  # one compiled kernel for every direction
def one_pass_forward_kernel(
    out_ptr, s_ob, s_ok, s_ol, s_od, weight_ptr, entry_ptr, dsum_ptr, final_ptr, carry_ptr,
    Dskip_ptr, z_ptr, s_zb, s_zl, s_zd,
    U, X, DELTA, BC, PROJ, A_ptr, dirs_ptr, K, H, W, Dm, n_chunks, k_first, k_count, length,
    ORDER: tl.constexpr, LOWRANK: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_WEIGHT: tl.constexpr, ACCUMULATE: tl.constexpr,
    STORE_STATES: tl.constexpr, R: tl.constexpr, N: tl.constexpr, STEPS: tl.constexpr, SEGMENTS: tl.constexpr,
    BLOCK_D: tl.constexpr, SEGMENTS_FIRST: tl.constexpr, IN_WINDOW: tl.constexpr, WIDE: tl.constexpr,
    UNROLL: tl.constexpr = 1, PAIRED: tl.constexpr = False, UNROLL_RANKS: tl.constexpr = False,
):
    """y_t = C_t . h_t + D u_t (times silu(z_t), times weight[b, k]) of directions k_first .. k_first + k_count - 1,
    written at each step's position, all ``length`` steps of a scan in one program.

    Grid: (batch x k_count, channel blocks of BLOCK_D).  Inputs as ``tile_io.load_steps`` reads them (U, X, DELTA,
    BC, PROJ tuples, ``operands.ScanOperands.common_args``).  out: element (b, k, pos, d) at
    b * s_ob + k * s_ok + pos * s_ol + d * s_od (s_ok = 0: the directions' sum, this launch's added to what out
    holds with ACCUMULATE); weight: (batch, K, dim) fp32; z: (batch, L, dim) through its strides.
    final: (batch*K, dim, N) fp32, the state after the last step.  carry: (programs, 2, N, BLOCK_D) fp32 scratch.
    STORE_STATES (STEPS = the backward's chunk length): entry (batch*K, n_chunks, dim, N) fp32, the state entering
    each chunk, and dsum (batch*K, n_chunks, dim) fp32, its delta sum.
    Tiles are (SEGMENTS, BLOCK_D, STEPS) tensors with SEGMENTS_FIRST, else (STEPS, BLOCK_D, SEGMENTS): Triton puts
    the threads along the axes that are neither contiguous in memory nor known to be in order, 3.7 taking the last
    such axis and 3.6 the first (``tiles.rowwise_by_default`` answers the same tie), and the segments must be the
    threads' axis.  Steps past a direction's end (and the padding of cut-short windows) are invalid: delta 0, the
    identity of the recurrence, so the last segment carries the state unchanged and nothing is written.
    IN_WINDOW: every segment lies inside one window (``operands.ScanOperands.in_windows`` of STEPS), whose corner is
    then worked out once per segment (``positions.tile_positions``).  UNROLL: states per trip of the state loop
    (``TileConfig.one_pass_unroll``, a divisor of N).
    """
    STEP_AXIS: tl.constexpr = 2 if SEGMENTS_FIRST else 0
    SEG_AXIS: tl.constexpr = 0 if SEGMENTS_FIRST else 1  # in the (segments, channels) tensors of one step
    TILE: tl.constexpr = STEPS * SEGMENTS
    pid_g, pid_d = tl.program_id(0), tl.program_id(1)
    b, k = pid_g // k_count, k_first + pid_g % k_count
    pid_bk = b * K + k
    d1, d1_mask = block_channels(pid_d, BC[10], Dm, BLOCK_D, LOWRANK)
    lanes = tl.arange(0, BLOCK_D)
    if SEGMENTS_FIRST:
        seg = tl.arange(0, SEGMENTS)[:, None]
        d, d_mask, lane = d1[None, :], d1_mask[None, :], lanes[None, :]
        p = tl.arange(0, STEPS)[None, None, :]
    else:
        seg = tl.arange(0, SEGMENTS)[None, :]
        d, d_mask, lane = d1[:, None], d1_mask[:, None], lanes[:, None]
        p = tl.arange(0, STEPS)[:, None, None]
    d3 = tl.expand_dims(d, STEP_AXIS)
    d3_mask = tl.expand_dims(d_mask, STEP_AXIS)
    d3_o = offset(d3, WIDE)
    seg3 = tl.expand_dims(seg, STEP_AXIS)
    b_o = offset(b, WIDE)
    bk_o = offset(pid_bk, WIDE)

    params = k * Dm + d3  # this direction's row of the (K, dim) parameters
    Dk, bias, wk = one_pass_params(Dskip_ptr, PROJ[1], weight_ptr, params, b_o, K, Dm, d3_mask, HAS_D, HAS_BIAS,
                                   HAS_WEIGHT)
    carry = carry_ptr + (offset(pid_g, WIDE) * tl.num_programs(1) + pid_d) * (2 * N * BLOCK_D) + lane
    previous = tl.maximum(seg - 1, 0) + 0 * lane  # the segment before each (the first: itself, overridden)
    last_segment = (seg == SEGMENTS - 1) & d_mask
    n_tiles = tl.cdiv(length, TILE)
    for tile in range(0, n_tiles):
        pos, is_low, valid = tile_positions(tile * TILE + seg3 * STEPS, p, k, dirs_ptr, H, W, ORDER, IN_WINDOW,
                                            BLOCK=STEPS)
        pos_o = offset(pos, WIDE)
        mask = valid & d3_mask
        u, delta, b_rows, c_rows, s_bn, s_cn = one_pass_step_inputs(
            U, X, DELTA, BC, PROJ, b_o, pos_o, is_low, valid, mask, k, d3, d3_o, d3_mask, params, pid_d, bias, ORDER,
            LOWRANK, HAS_BIAS, SOFTPLUS, R, N, BLOCK_D, WIDE, PAIRED, UNROLL_RANKS)
        du = delta * u
        if HAS_D:
            y = u * Dk
        else:
            y = tl.zeros(mask.shape, dtype=tl.float32)
        tl.debug_barrier()  # the last tile's carry stores, visible to every thread
        carry_in = carry + (tile % 2) * (N * BLOCK_D)
        carry_out = carry + ((tile + 1) % 2) * (N * BLOCK_D)
        entering = d_mask & ((lane * 0 + tile) > 0)  # the first tile enters from a zero state
        last_tile = d_mask & ((lane * 0 + tile) == n_tiles - 1)
        chunk = tile * SEGMENTS + seg  # this segment's chunk (STORE_STATES)
        chunk_rows = (bk_o * n_chunks + chunk) * Dm + d
        chunk_valid = (chunk < n_chunks) & d_mask
        seg_delta = tl.sum(delta, axis=STEP_AXIS)  # each segment's delta sum: its decay is exp2(a * seg_delta)
        if STORE_STATES:
            tl.store(dsum_ptr + chunk_rows, seg_delta, mask=chunk_valid)
        last_step = p == STEPS - 1
        # UNROLL states per trip: their B and C lie at constant offsets from one address per step (the steps'
        # positions are gathered, so each step has its own), which a rolled loop would recompute per state.
        # Unmasked, as in the chunked state loops: an invalid step reads position 0 (always in bounds), and its
        # delta 0 (so du 0) makes it the identity whatever it reads; its output is never written.
        for n0 in range(0, N, UNROLL):
            for j in tl.static_range(UNROLL):
                n = n0 + j
                a = tl.load(A_ptr + (k * Dm + d) * N + n, mask=d_mask, other=0.0) * LOG2E
                if PAIRED and UNROLL % 2 == 0:  # states n and n + 1 in one load (tile_io.load_pair)
                    if j % 2 == 0:
                        Bn, Cn, B_next, C_next = state_column_pairs(b_rows, c_rows, n, True)
                    else:
                        Bn, Cn = B_next, C_next
                else:
                    Bn = tl.load(b_rows + n * s_bn).to(tl.float32)
                    Cn = tl.load(c_rows + n * s_cn).to(tl.float32)
                decay = tl.exp2(delta * tl.expand_dims(a, STEP_AXIS))
                # Each segment is scanned once, from zero: the decays' running products and the states, its end
                # state its last step's.  Not tl.reduce: on a GPU it may combine out of order, being written for
                # commutative operators (triton-lang/triton#4962), and where Triton spread a segment's steps over
                # lanes the recurrence came out wrong (the H200's tests, 2026-12-04; the interpreter reduces in
                # order).  A segment's decay is one exponential of its delta sum.
                running, steps_from_zero = tl.associative_scan((decay, du * Bn), STEP_AXIS, combine)
                seg_state = tl.sum(tl.where(last_step, steps_from_zero, 0.0), axis=STEP_AXIS)
                reach, from_zero = tl.associative_scan((tl.exp2(seg_delta * a), seg_state), SEG_AXIS,
                                                       combine)  # across the threads
                h0 = tl.load(carry_in + n * BLOCK_D + 0 * seg, mask=entering, other=0.0)
                leaving = from_zero + reach * h0  # the state at each segment's last step
                entered = tl.where(seg == 0, h0, tl.gather(leaving, previous, SEG_AXIS))
                if STORE_STATES:
                    tl.store(entry_ptr + chunk_rows * N + n, entered, mask=chunk_valid)
                y += (steps_from_zero + running * tl.expand_dims(entered, STEP_AXIS)) * Cn
                tl.store(carry_out + n * BLOCK_D + 0 * seg, leaving, mask=last_segment)
                tl.store(final_ptr + (bk_o * Dm + d) * N + n + 0 * seg, leaving, mask=last_segment & last_tile)
        one_pass_store(y, out_ptr, s_ob, s_ok, s_ol, s_od, z_ptr, s_zb, s_zl, s_zd, wk, b_o, k, pos_o, d3_o, mask,
                       is_low, HAS_Z, HAS_WEIGHT, ACCUMULATE, WIDE)
