"""Sums over a warp's lanes, reduce-scattered: the backward's dB and dC per step without every lane holding every
sum (``TileConfig.backward_lane_sums``).
"""

import triton
import triton.language as tl


@triton.jit
def _halve_and_exchange(x, lane, ROWS: tl.constexpr, LANES: tl.constexpr, BIT: tl.constexpr):
    """One round of ``lane_sums``: x (ROWS, LANES) -> (ROWS / 2, LANES).  A lane whose BIT is set keeps the upper
    half of its rows and sends the lower half to the lane BIT away, which does the opposite; each adds what it
    receives to what it keeps.  The gather along the lanes axis is a warp shuffle (one per value) on the GPU."""
    lo, hi = tl.split(tl.permute(tl.reshape(x, (2, ROWS // 2, LANES)), (1, 2, 0)))
    upper = ((lane & BIT) != 0)[None, :]
    send = tl.where(upper, lo, hi)
    partner = tl.broadcast_to((lane ^ BIT)[None, :], (ROWS // 2, LANES))
    return tl.where(upper, hi, lo) + tl.gather(send, partner, axis=1)


@triton.jit
def lane_sums(x, lane, T: tl.constexpr, LANES: tl.constexpr):
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
