"""Scan positions computed inside the kernels, the arithmetic twin of :mod:`scan2d.orders`.

Kernels walk a *padded* sequence: windows are laid out whole (``ceil(h / win_h) * ceil(w / win_w)`` windows of
``win_h * win_w`` steps) and a cross-scale group always has five slots.  A step that falls outside the map (a cut-short
window, a missing pixel of an odd-edge group, the tail of the last chunk) is *invalid*: the kernels give it
``delta = 0`` and ``u = 0``, which makes it the identity of the recurrence (decay 1, input 0) and writes nothing, so
the valid steps see exactly the sequence of :func:`scan2d.scan_order` / :func:`scan2d.cross_scale_order`.

Per-direction parameters live in an int32 table ``dirs`` of shape (K, 20):
    [column_first, reverse, win_h, win_w, padded_length, low_win_h, low_win_w, low_padded_length,
     then (magic, shift) for the window area, the windows per row and the window width, high- then low-resolution]
with window sides given in the scan frame (the transposed map for column-first scans) and clamped to the map.  The
magic numbers (``launch.division_magic``) turn the divisions by window sizes into a wide multiply and a shift: a
32-bit division by a runtime divisor is a routine of about 20 instructions, and every thread computes its tile's
positions (compile_check: 15-20% of a forward kernel's instructions went to them).
"""

import triton
import triton.language as tl

DIRECTION_COLUMNS = tl.constexpr(20)  # entries per direction in the table (launch.direction_rows)
ORDER_PLAIN = 0
ORDER_ALIGNED = 1
ORDER_SEQUENTIAL = 2


@triton.jit
def _divide(n, magic_ptr):
    """n // d for int32 0 <= n < 2^31 (negative n, only on invalid steps, count as 0), with d's (magic, shift) at
    ``magic_ptr`` (``launch.division_magic``)."""
    magic = tl.load(magic_ptr).to(tl.uint32, bitcast=True)
    shift = (tl.load(magic_ptr + 1) - 31).to(tl.uint32)
    # (n * magic) >> (31 + l) in 32-bit halves: the high word of 2n * magic is (n * magic) >> 31.
    twice = (tl.maximum(n, 0) * 2).to(tl.uint32, bitcast=True)
    return (tl.umulhi(twice, magic) >> shift).to(tl.int32)


@triton.jit
def windowed_position(s, H, W, win_h, win_w, col_first, magic_ptr, MAGIC: tl.constexpr = True):
    """Padded windowed scan of an H x W map: step ``s`` -> (row, col, inside the map).  ``magic_ptr``: the three
    (magic, shift) pairs of its divisors (window area, windows per row, window width) in the direction table, used
    when MAGIC (else plain integer division)."""
    frame_h = tl.where(col_first != 0, W, H)
    frame_w = tl.where(col_first != 0, H, W)
    n_win_cols = tl.cdiv(frame_w, win_w)
    area = win_h * win_w
    if MAGIC:
        window = _divide(s, magic_ptr)
        within = s - window * area
        window_row = _divide(window, magic_ptr + 2)
        within_row = _divide(within, magic_ptr + 4)
    else:
        window = s // area
        within = s - window * area
        window_row = window // n_win_cols
        within_row = within // win_w
    r = window_row * win_h + within_row
    c = (window - window_row * n_win_cols) * win_w + (within - within_row * win_w)
    inside = (r < frame_h) & (c < frame_w)
    row = tl.where(col_first != 0, c, r)
    col = tl.where(col_first != 0, r, c)
    return row, col, inside


@triton.jit
def step_positions(s, k, dirs_ptr, H, W, ORDER: tl.constexpr):
    """Steps ``s`` (int32 vector) of direction ``k`` -> (raster position, is a low-resolution token, valid).

    High-resolution positions index the H x W map; low-resolution ones the ceil(H/2) x ceil(W/2) map.
    """
    table = dirs_ptr + k * DIRECTION_COLUMNS
    col_first = tl.load(table + 0)
    reverse = tl.load(table + 1)
    win_h = tl.load(table + 2)
    win_w = tl.load(table + 3)
    length = tl.load(table + 4)
    low_win_h = tl.load(table + 5)
    low_win_w = tl.load(table + 6)
    low_length = tl.load(table + 7)
    in_range = (s >= 0) & (s < length)
    if ORDER == 0:
        t = tl.where(reverse != 0, length - 1 - s, s)
        row, col, inside = windowed_position(t, H, W, win_h, win_w, col_first, table + 8)
        pos = row * W + col
        is_low = s < 0  # all False
        valid = inside & in_range
    elif ORDER == 1:
        low_h = (H + 1) // 2
        low_w = (W + 1) // 2
        group = s // 5
        slot = s - group * 5
        group = tl.where(reverse != 0, low_length - 1 - group, group)
        j = tl.where(reverse != 0, 4 - slot, slot - 1)  # index of the high-res pixel in its 2x2 block
        lr, lc, low_inside = windowed_position(group, low_h, low_w, low_win_h, low_win_w, col_first,
                                               table + 14)
        dr = tl.where(col_first != 0, j % 2, j // 2)
        dc = tl.where(col_first != 0, j // 2, j % 2)
        r = 2 * lr + dr
        c = 2 * lc + dc
        is_low = slot == 0
        valid = in_range & low_inside & (is_low | ((r < H) & (c < W)))
        pos = tl.where(is_low, lr * low_w + lc, r * W + c)
    else:
        low_h = (H + 1) // 2
        low_w = (W + 1) // 2
        is_low = s < low_length
        high_length = length - low_length
        t_low = tl.where(reverse != 0, low_length - 1 - s, s)
        t_high = tl.where(reverse != 0, high_length - 1 - (s - low_length), s - low_length)
        # Plain divisions here: with the multiply-shift ones Triton 3.6 and 3.7 fail to compile this order
        # ("arith.select op expected condition type to have the same shape", a layout bug); it is an ablation.
        lr, lc, low_inside = windowed_position(t_low, low_h, low_w, low_win_h, low_win_w, col_first, table + 14,
                                               MAGIC=False)
        hr, hc, high_inside = windowed_position(t_high, H, W, win_h, win_w, col_first, table + 8, MAGIC=False)
        valid = in_range & tl.where(is_low, low_inside, high_inside)
        pos = tl.where(is_low, lr * low_w + lc, hr * W + hc)
    pos = tl.where(valid, pos, 0)
    return pos, is_low, valid
