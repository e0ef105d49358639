"""The one-pass forward with all N states across the lanes (``TileConfig.one_pass_lanes``; off by default, untimed).

The layout of the reference's 40-line prototype (``../shared/design/mambacsr-reference.md``: tiles of 32 steps, 8
channels a program, 0.61 ms at case (a)'s shape on an H200 against mamba-ssm's 0.79).  Like ``one_pass``, one
program walks a whole scan for its (batch, direction, channel block) and computes every exponential once; unlike it,
the N states are not a loop but an axis of each (steps, states, channels) tile, which Triton spreads over the lanes
and warps with each thread's steps in its registers.  So:
- a tile's recurrence is one ``tl.associative_scan`` over its steps, inside each thread, with no exchange between
  threads; the state crosses tiles in registers (no scratch slots, no barriers);
- the per-(step, channel) work (dt projection, softplus, u) is done on (steps, channels) tensors, once per pair,
  and moved to the states' layout by Triton (through shared memory);
- y's sum over the states is the only exchange between threads, once per tile.
bench/JOURNAL.md, "The states across the lanes, a few channels per program": the prototype, 18-31 executed SASS
instructions per element at 72-168 registers in 720-2,880 warps at case (a); "The states across the lanes in the op"
for this kernel.  With 8-16 channels per program it cannot fill a GPU at batch 1 with long scans: the chunked
forward stays for those.  ``one_pass_gluon`` is this kernel with its layouts written out (TileConfig.one_pass_gluon).
"""

import triton
import triton.language as tl

from .positions import tile_positions
from .recurrence import LOG2E, combine
from .tile_io import block_channels, offset, one_pass_params, one_pass_step_inputs, one_pass_store


@triton.jit(do_not_specialize=["k_first"])  # one compiled kernel for every direction
def one_pass_lanes_kernel(
    out_ptr, s_ob, s_ok, s_ol, s_od, weight_ptr, entry_ptr, dsum_ptr, final_ptr,
    Dskip_ptr, z_ptr, s_zb, s_zl, s_zd,
    U, X, DELTA, BC, PROJ, A_ptr, dirs_ptr, K, H, W, Dm, n_chunks, k_first, k_count, length,
    ORDER: tl.constexpr, LOWRANK: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_WEIGHT: tl.constexpr, ACCUMULATE: tl.constexpr,
    STORE_STATES: tl.constexpr, R: tl.constexpr, N: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
    IN_WINDOW: tl.constexpr, WIDE: tl.constexpr, PAIRED: tl.constexpr = False, ATOMIC: tl.constexpr = False,
):
    """y_t = C_t . h_t + D u_t (times silu(z_t), times weight[b, k]) of directions k_first .. k_first + k_count - 1,
    written at each step's position, all ``length`` steps of a scan in one program, BLOCK_T steps per tile.

    Grid: (batch x k_count, channel blocks of BLOCK_D).  Arguments as ``one_pass.one_pass_forward_kernel``'s, without
    its carry scratch: out element (b, k, pos, d) at b * s_ob + k * s_ok + pos * s_ol + d * s_od (s_ok = 0: the
    directions' sum, added to what out holds with ACCUMULATE); weight (batch, K, dim) fp32; z (batch, L, dim) through
    its strides; final (batch*K, dim, N) fp32, the state after the last step.  ATOMIC: the launch's directions add
    into a zeroed float32 out with atomics (``tile_io.one_pass_store``).  STORE_STATES (BLOCK_T = the backward's
    chunk length): entry (batch*K, n_chunks, dim, N) fp32, the state entering each tile, and dsum (batch*K, n_chunks,
    dim) fp32, its delta sum.  Steps past a direction's end (and the padding of cut-short windows) are invalid:
    delta 0, the identity of the recurrence, and nothing is written.  IN_WINDOW: every tile lies inside one window
    (``operands.ScanOperands.in_windows`` of BLOCK_T).
    """
    pid_g, pid_d = tl.program_id(0), tl.program_id(1)
    b, k = pid_g // k_count, k_first + pid_g % k_count
    pid_bk = b * K + k
    d1, d1_mask = block_channels(pid_d, BC[10], Dm, BLOCK_D, LOWRANK)
    d, d_mask = d1[None, :], d1_mask[None, :]  # (1, BLOCK_D): the channels of (steps, channels) tensors
    t = tl.arange(0, BLOCK_T)[:, None]
    n = tl.arange(0, N)
    d_o = offset(d, WIDE)
    b_o = offset(b, WIDE)
    bk_o = offset(pid_bk, WIDE)

    params = k * Dm + d  # this direction's row of the (K, dim) parameters
    Dk, bias, wk = one_pass_params(Dskip_ptr, PROJ[1], weight_ptr, params, b_o, K, Dm, d_mask, HAS_D, HAS_BIAS,
                                   HAS_WEIGHT)
    # (N, BLOCK_D): this direction's A for the block, loaded once for the whole scan.
    a = tl.load(A_ptr + (k * Dm + d) * N + n[:, None], mask=d_mask, other=0.0).to(tl.float32) * LOG2E
    state_rows = d * N + n[:, None]  # (N, BLOCK_D) offsets of the (dim, N) states
    state_mask = tl.broadcast_to(d_mask, [N, BLOCK_D])
    h = tl.zeros([N, BLOCK_D], dtype=tl.float32)
    first_step = (t == 0)[:, :, None]  # (BLOCK_T, 1, 1)
    last_step = (t == BLOCK_T - 1)[:, :, None]
    for tile in range(0, tl.cdiv(length, BLOCK_T)):
        pos, is_low, valid = tile_positions(tile * BLOCK_T, t, k, dirs_ptr, H, W, ORDER, IN_WINDOW, BLOCK=BLOCK_T)
        pos_o = offset(pos, WIDE)
        mask = valid & d_mask
        # The rank blocks stay a loop (not TileConfig.unroll_rank_blocks): unrolled, Triton computes delta in the
        # (steps, states, channels) layout, each (step, channel) once per state (compile_check, sm_90, the layer's
        # training forward: 95 instead of about 33 executed instructions per element).
        u, delta, b_rows, c_rows, s_bn, s_cn = one_pass_step_inputs(
            U, X, DELTA, BC, PROJ, b_o, pos_o, is_low, valid, mask, k, d, d_o, d_mask, params, pid_d, bias, ORDER,
            LOWRANK, HAS_BIAS, SOFTPLUS, R, N, BLOCK_D, WIDE, PAIRED, False)
        du = delta * u
        if STORE_STATES:  # the state entering this tile, the backward's chunk, and the chunk's delta sum
            chunk_o = bk_o * n_chunks + tile
            tl.store(entry_ptr + chunk_o * Dm * N + state_rows, h, mask=state_mask)
            tl.store(dsum_ptr + chunk_o * Dm + d, tl.sum(delta, axis=0)[None, :], mask=d_mask)
        # (BLOCK_T, N) rows of B and C.  Unmasked, as in the chunked state loops: an invalid step reads position 0
        # (always in bounds), and its delta 0 (so du 0) makes it the identity whatever it reads.
        Bm = tl.load(b_rows + n[None, :] * s_bn).to(tl.float32)
        Cm = tl.load(c_rows + n[None, :] * s_cn).to(tl.float32)
        decay = tl.exp2(delta[:, None, :] * a[None, :, :])  # (BLOCK_T, N, BLOCK_D)
        drive = du[:, None, :] * Bm[:, :, None] + tl.where(first_step, decay * h[None, :, :], 0.0)
        _, states = tl.associative_scan((decay, drive), 0, combine)  # in each thread's registers
        h = tl.sum(tl.where(last_step, states, 0.0), axis=0)  # an invalid last step carries the state unchanged
        y = tl.sum(states * Cm[:, :, None], axis=1)
        if HAS_D:
            y += u * Dk
        one_pass_store(y, out_ptr, s_ob, s_ok, s_ol, s_od, z_ptr, s_zb, s_zl, s_zd, wk, b_o, k, pos_o, d_o, mask,
                       is_low, HAS_Z, HAS_WEIGHT, ACCUMULATE, WIDE, ATOMIC)
    tl.store(final_ptr + bk_o * Dm * N + state_rows, h, mask=state_mask)
