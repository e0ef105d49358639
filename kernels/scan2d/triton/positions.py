"""Scan positions computed inside the kernels, the arithmetic twin of :mod:`scan2d.orders`.

Kernels walk a *padded* sequence: windows are laid out whole (``ceil(h / win_h) * ceil(w / win_w)`` windows of
``win_h * win_w`` steps) and a cross-scale group always has five slots.  A step that falls outside the map (a cut-short
window, a missing pixel of an odd-edge group, the tail of the last chunk) is *invalid*: the kernels give it
``delta = 0`` and ``u = 0``, which makes it the identity of the recurrence (decay 1, input 0) and writes nothing, so
the valid steps see exactly the sequence of :func:`scan2d.scan_order` / :func:`scan2d.cross_scale_order`.

Per-direction parameters live in an int32 table ``dirs`` of shape (K, 8):
    [column_first, reverse, win_h, win_w, padded_length, low_win_h, low_win_w, low_padded_length]
with window sides given in the scan frame (the transposed map for column-first scans) and clamped to the map.
"""

import triton
import triton.language as tl

ORDER_PLAIN = 0
ORDER_ALIGNED = 1
ORDER_SEQUENTIAL = 2


@triton.jit
def windowed_position(s, H, W, win_h, win_w, col_first):
    """Padded windowed scan of an H x W map: step ``s`` -> (row, col, inside the map)."""
    frame_h = tl.where(col_first != 0, W, H)
    frame_w = tl.where(col_first != 0, H, W)
    n_win_cols = tl.cdiv(frame_w, win_w)
    area = win_h * win_w
    window = s // area
    within = s - window * area
    r = (window // n_win_cols) * win_h + within // win_w
    c = (window % n_win_cols) * win_w + within % win_w
    inside = (r < frame_h) & (c < frame_w)
    row = tl.where(col_first != 0, c, r)
    col = tl.where(col_first != 0, r, c)
    return row, col, inside


@triton.jit
def step_positions(s, k, dirs_ptr, H, W, ORDER: tl.constexpr):
    """Steps ``s`` (int32 vector) of direction ``k`` -> (raster position, is a low-resolution token, valid).

    High-resolution positions index the H x W map; low-resolution ones the ceil(H/2) x ceil(W/2) map.
    """
    col_first = tl.load(dirs_ptr + k * 8 + 0)
    reverse = tl.load(dirs_ptr + k * 8 + 1)
    win_h = tl.load(dirs_ptr + k * 8 + 2)
    win_w = tl.load(dirs_ptr + k * 8 + 3)
    length = tl.load(dirs_ptr + k * 8 + 4)
    low_win_h = tl.load(dirs_ptr + k * 8 + 5)
    low_win_w = tl.load(dirs_ptr + k * 8 + 6)
    low_length = tl.load(dirs_ptr + k * 8 + 7)
    in_range = (s >= 0) & (s < length)
    if ORDER == 0:
        t = tl.where(reverse != 0, length - 1 - s, s)
        row, col, inside = windowed_position(t, H, W, win_h, win_w, col_first)
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
        lr, lc, low_inside = windowed_position(group, low_h, low_w, low_win_h, low_win_w, col_first)
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
        lr, lc, low_inside = windowed_position(t_low, low_h, low_w, low_win_h, low_win_w, col_first)
        hr, hc, high_inside = windowed_position(t_high, H, W, win_h, win_w, col_first)
        valid = in_range & tl.where(is_low, low_inside, high_inside)
        pos = tl.where(is_low, lr * low_w + lc, hr * W + hc)
    pos = tl.where(valid, pos, 0)
    return pos, is_low, valid
