"""The recurrence h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t on register tiles, and its adjoint.

``combine`` and ``adjoint_combine`` are the associative operators ``tl.associative_scan`` takes; ``tile_states``
scans a (steps, channels, states) tile, ``tile_adjoint`` runs the adjoint recurrence of one backwards (as a forward
scan of the steps reversed in registers, ``reverse_steps``).  The state loops (:mod:`.state_loop`) scan one state
at a time with the same ``combine``.
"""

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)  # exp(x) = 2^(x log2 e): the state loops call exp2


@triton.jit
def combine(a1, b1, a2, b2):
    # (a1, b1) then (a2, b2): h -> a2 * (a1 * h + b1) + b2
    return a1 * a2, a2 * b1 + b2


@triton.jit
def adjoint_combine(f1, m1, g1, f2, m2, g2):
    # Runs of steps scanned from the last step back: (f, m, g) = (decay of the run's earliest step, product of its
    # other decays, its adjoint at the earliest step with nothing arriving after it).  Run 2 lies before run 1, so
    # g = g2 + m2 * f1 * g1.  Each step's own decay is all it needs: no tile reloaded one step on.  In a thread's
    # registers the scan runs in step order with m2 = 1, so it costs one multiply-add per step and m folds away.
    bridge = m2 * f1
    return f2, bridge * m1, g2 + bridge * g1


@triton.jit
def _swap_halves_of_last(x):
    first, second = tl.split(x)
    return tl.join(second, first)


@triton.jit
def reverse_steps(x):
    """x (T, P, Q) with its steps in reverse order; T a power of two.

    Step t goes to T-1-t, which complements every bit of t: swap the halves along each bit's axis in turn (split and
    join of a size-2 axis moved last).  With the steps in each thread's registers, as the kernels lay them out,
    this only renames registers, whereas Triton 3.6-3.7 lower ``associative_scan(reverse=True)`` with butterfly
    shuffles that flip every scanned element across the warp's lanes (bench/README.md).
    """
    T: tl.constexpr = x.shape[0]
    P: tl.constexpr = x.shape[1]
    Q: tl.constexpr = x.shape[2]
    tl.static_assert(T <= 256, "reverse_steps handles up to 256 steps")
    for i in tl.static_range(8):  # the index's bits
        if (2 << i) <= T:
            y = tl.reshape(x, [1 << i, 2, T >> (i + 1), P, Q])
            y = _swap_halves_of_last(tl.permute(y, [0, 2, 3, 4, 1]))
            x = tl.reshape(tl.permute(y, [0, 4, 1, 2, 3]), [T, P, Q])
    return x


@triton.jit
def reverse_rows(x):
    """x (T, D) with its rows (steps) in reverse order (``reverse_steps``)."""
    return tl.reshape(reverse_steps(x[:, :, None]), [x.shape[0], x.shape[1]])


@triton.jit
def tile_row(x, t, index):
    """Row ``index`` of a (T, D, N) tile as (D, N)."""
    return tl.sum(tl.where((t == index)[:, None, None], x, 0.0), axis=0)


@triton.jit
def tile_states(h0, t, delta, u, Bm, A):
    """Decays, drives and states h_t (T, D, N) of a tile of steps entered with state h0 (D, N)."""
    decay = tl.exp(delta[:, :, None] * A[None, :, :])
    drive = (delta * u)[:, :, None] * Bm
    _, h = tl.associative_scan((decay, drive + tl.where((t == 0)[:, None, None], decay * h0[None, :, :], 0.0)), 0,
                               combine)
    return decay, drive, h


@triton.jit
def tile_adjoint(delta_next, A, dy, Cm, g_end, t, BY_REGISTERS: tl.constexpr):
    """Adjoint states (T, D, N) of a one-tile chunk: g_t = C_t dy_t + exp(delta_{t+1} A) g_{t+1}, with g_end (D, N)
    arriving after the last step.  delta_next (T, D) is each step's next delta, dy (T, D), Cm (T, 1, N).

    The recurrence runs backwards over the steps.  BY_REGISTERS: as a forward scan of the steps reversed
    (reverse_steps), the tile's last step first; otherwise with ``associative_scan(reverse=True)``, which costs
    five shuffles per scanned element and flip (bench/README.md) but no extra registers.
    """
    if BY_REGISTERS:
        last = (t == 0)[:, None, None]
        back_decay = tl.where(last, 0.0, tl.exp(reverse_steps(delta_next[:, :, None]) * A[None, :, :]))
        seed = reverse_steps(dy[:, :, None]) * reverse_steps(Cm) + tl.where(last, g_end[None], 0.0)
        _, g = tl.associative_scan((back_decay, seed), 0, combine)
        g = reverse_steps(g)
    else:
        last = (t == t.shape[0] - 1)[:, None, None]
        back_decay = tl.where(last, 0.0, tl.exp(delta_next[:, :, None] * A[None, :, :]))
        seed = dy[:, :, None] * Cm + tl.where(last, g_end[None], 0.0)
        _, g = tl.associative_scan((back_decay, seed), 0, combine, reverse=True)
    return g
