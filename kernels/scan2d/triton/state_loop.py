"""The state loop: a (steps, channels) tile solved one state at a time, each thread holding one channel's steps.

Used by every kernel of the 2D layer and the drop-in scan (``TileConfig.forward_state_loop`` /
``backward_state_loop``): no shuffles, barriers or shared memory in the loop, as in mamba-ssm's CUDA kernel.  The
entry and end states go through memory, or stay in registers across a multi-tile chunk (``IN_REGISTERS``).
"""

import triton
import triton.language as tl

from .recurrence import LOG2E, combine
from .tile_io import load_pair, state_column


@triton.jit
def _state_step(a, h0, delta, du, bn, cn, first, last, y, OUTPUT: tl.constexpr):
    """One state of a state-loop tile, with its B and C columns bn, cn ((T, 1) or (T, D), ``tile_io.state_column``):
    returns y (T, D) + C_n h_n (when OUTPUT) and the end state h_n (D,)."""
    decay = tl.exp2(delta * a[None, :])
    # Invalid steps read position 0 (always in bounds) and have du = 0, delta = 0: decay 1, drive 0.
    drive = du * bn + tl.where(first, decay * h0[None, :], 0.0)
    _, h = tl.associative_scan((decay, drive), 0, combine)
    if OUTPUT:
        y += cn * h
    # With the steps in each thread's registers the mask is known per register: the sum compiles to no instruction.
    return y, tl.sum(tl.where(last, h, 0.0), axis=0)


@triton.jit
def _state_columns(b_rows, c_rows, n, s_bn, s_cn, steps, d_mask, OUTPUT: tl.constexpr, VECTORS: tl.constexpr,
                   WIDE: tl.constexpr):
    """B's and C's columns of state n (``tile_io.state_column``; steps: its (pos_o, valid)), float32 (C's only when
    OUTPUT; B's again in its place otherwise)."""
    pos_o, valid = steps
    bn = state_column(b_rows, n, s_bn, pos_o, valid, d_mask, VECTORS, WIDE)
    cn = bn
    if OUTPUT:
        cn = state_column(c_rows, n, s_cn, pos_o, valid, d_mask, VECTORS, WIDE)
    return bn, cn


@triton.jit
def state_column_pairs(b_rows, c_rows, n, OUTPUT: tl.constexpr):
    """B's and C's columns of states n and n + 1 (T,), float32, one ``load_pair`` each (unit state stride)."""
    b0, b1 = load_pair(b_rows + n)
    c0, c1 = b0, b1
    if OUTPUT:
        c0, c1 = load_pair(c_rows + n)
    return b0, c0, b1, c1


@triton.jit
def _state_in_memory(n, bn, cn, h0_rows, h0_mask, end_rows, A_rows, d_mask, delta, du, first, last, y,
                     OUTPUT: tl.constexpr, STORE_END: tl.constexpr):
    """State n of ``state_loop_tile`` entered from h0_rows and, when STORE_END, left at end_rows: returns y."""
    a = tl.load(A_rows + n, mask=d_mask, other=0.0).to(tl.float32) * LOG2E
    h0 = tl.load(h0_rows + n, mask=h0_mask, other=0.0)
    y, h_end = _state_step(a, h0, delta, du, bn, cn, first, last, y, OUTPUT)
    if STORE_END:
        tl.store(end_rows + n, h_end, mask=d_mask)
    return y


@triton.jit
def _state_in_registers(n, bn, cn, rows, states, A_rows, d_mask, delta, du, first, last, y, OUTPUT: tl.constexpr):
    """State n (a constant) of ``state_loop_tile`` entered from and left in row n of states (N, D): returns y and
    states."""
    a = tl.load(A_rows + n, mask=d_mask, other=0.0).to(tl.float32) * LOG2E
    h0 = tl.sum(tl.where(rows == n, states, 0.0), axis=0)  # row n: no instruction (see _state_step)
    y, h_end = _state_step(a, h0, delta, du, bn, cn, first, last, y, OUTPUT)
    return y, tl.where(rows == n, h_end[None, :], states)


@triton.jit
def state_loop_tile(h0_rows, h0_mask, end_rows, A_rows, d_mask, t, delta, u, b_rows, c_rows, s_bn, s_cn, y, states,
                     steps, N: tl.constexpr, OUTPUT: tl.constexpr, STORE_END: tl.constexpr, UNROLL: tl.constexpr = 1,
                     IN_REGISTERS: tl.constexpr = False, PAIRED: tl.constexpr = False, STAGES: tl.constexpr = 1,
                     VECTORS: tl.constexpr = False, WIDE: tl.constexpr = False):
    """A tile of the recurrence solved one state at a time: returns y (T, D) + sum_n C_n h_n (y unchanged unless
    OUTPUT; passing the D skip in as y frees u's registers before the loop) and ``states``.

    h0_rows, end_rows, A_rows: (D,) pointers to state 0 of each channel's entry state (loaded where h0_mask, zero
    elsewhere), of where its end state goes (written when STORE_END; it may be h0_rows: state n is read before it is
    written) and of A[k, d]; states and A are contiguous over n.  delta, u (T, D); b_rows, c_rows (T,) as
    ``load_steps`` returns them, steps its (pos_o, valid); VECTORS: B and C read 4 steps per load
    (``tile_io.state_column``), at 64-bit state offsets with WIDE.  UNROLL states are unrolled per loop trip (a
    divisor of N), so that ptxas can overlap one state's loads and exponentials with another's scan.
    IN_REGISTERS (needs UNROLL == N, every state index a constant): the tile enters with ``states`` (N, D) and
    returns its end states there, instead of reading h0_rows and writing end_rows: a multi-tile chunk then carries
    its states between tiles in N registers per channel instead of through memory (the PTX has no instruction for
    picking or replacing row n, and no shuffle).
    PAIRED (``load_steps``'s; B and C then lie in x's rows, state stride 1): with an even UNROLL, the states' B and
    C columns are read two states at a time (``load_pair``).
    STAGES (``TileConfig.state_loop_stages``): the loop over trips is software-pipelined in that many stages, Triton
    copying the next trips' A, entry states, B and C into shared memory (cp.async) while one trip scans.

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
                b0, c0, b1, c1 = state_column_pairs(b_rows, c_rows, n, OUTPUT)
                y, states = _state_in_registers(n, b0[:, None], c0[:, None], rows, states, A_rows, d_mask, delta, du,
                                                first, last, y, OUTPUT)
                y, states = _state_in_registers(n + 1, b1[:, None], c1[:, None], rows, states, A_rows, d_mask, delta,
                                                du, first, last, y, OUTPUT)
        else:
            for n in tl.static_range(N):
                bn, cn = _state_columns(b_rows, c_rows, n, s_bn, s_cn, steps, d_mask, OUTPUT, VECTORS, WIDE)
                y, states = _state_in_registers(n, bn, cn, rows, states, A_rows, d_mask, delta, du, first, last, y,
                                                OUTPUT)
    else:
        for n0 in tl.range(0, N, UNROLL, num_stages=STAGES):
            if pairs:
                for i in tl.static_range(0, UNROLL, 2):
                    b0, c0, b1, c1 = state_column_pairs(b_rows, c_rows, n0 + i, OUTPUT)
                    y = _state_in_memory(n0 + i, b0[:, None], c0[:, None], h0_rows, h0_mask, end_rows, A_rows,
                                         d_mask, delta, du, first, last, y, OUTPUT, STORE_END)
                    y = _state_in_memory(n0 + i + 1, b1[:, None], c1[:, None], h0_rows, h0_mask, end_rows, A_rows,
                                         d_mask, delta, du, first, last, y, OUTPUT, STORE_END)
            else:
                for i in tl.static_range(UNROLL):
                    bn, cn = _state_columns(b_rows, c_rows, n0 + i, s_bn, s_cn, steps, d_mask, OUTPUT,
                                            VECTORS, WIDE)
                    y = _state_in_memory(n0 + i, bn, cn, h0_rows, h0_mask, end_rows, A_rows, d_mask, delta, du,
                                         first, last, y, OUTPUT, STORE_END)
    return y, states
