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
magic numbers (``direction_table.division_magic``) turn the divisions by window sizes into a wide multiply and a
shift: a 32-bit division by a runtime divisor is a routine of about 20 instructions, and every thread computes its
tile's positions (compile_check: 15-20% of a forward kernel's instructions went to them).
"""

import triton
import triton.language as tl

DIRECTION_COLUMNS = tl.constexpr(20)  # entries per direction in the table (direction_table.direction_rows)
ORDER_PLAIN = 0
ORDER_ALIGNED = 1
ORDER_SEQUENTIAL = 2
# tile_positions' IN_WINDOW beyond True / False: every direction visits the map in raster order, so step s lies at
# position s (``operands.ScanOperands.in_windows``: the drop-in scan; row-first, unreversed, full-width windows).
RASTER = tl.constexpr(2)


@triton.jit
def _divide(n, magic_ptr, NONNEGATIVE: tl.constexpr = False):
    """n // d for int32 0 <= n < 2^31 (negative n, only on invalid steps, count as 0; NONNEGATIVE: the caller
    knows there are none), with d's (magic, shift) at ``magic_ptr`` (``direction_table.division_magic``)."""
    return _divide_by(n, _divisor(magic_ptr), NONNEGATIVE)


@triton.jit
def _divisor(magic_ptr):
    """The (magic, shift) pair at ``magic_ptr`` as ``_divide_by`` takes it."""
    return tl.load(magic_ptr).to(tl.uint32, bitcast=True), (tl.load(magic_ptr + 1) - 31).to(tl.uint32)


@triton.jit
def _divide_by(n, divisor, NONNEGATIVE: tl.constexpr = False):
    """``_divide`` with the divisor's (magic, shift) already loaded (``_divisor``)."""
    magic, shift = divisor
    # (n * magic) >> (31 + l) in 32-bit halves: the high word of 2n * magic is (n * magic) >> 31.
    if not NONNEGATIVE:
        n = tl.maximum(n, 0)
    twice = (n * 2).to(tl.uint32, bitcast=True)
    return (tl.umulhi(twice, magic) >> shift).to(tl.int32)


@triton.jit
def _scan_frame(col_first, H, W):
    """An H x W map in a direction's scan frame (the map transposed for column-first scans): the frame's sides, and
    the raster strides of a step along a frame row's and a frame column's index."""
    transposed = col_first != 0
    return (tl.where(transposed, W, H), tl.where(transposed, H, W), tl.where(transposed, 1, W),
            tl.where(transposed, W, 1))


@triton.jit
def windowed_position(s, H, W, win_h, win_w, col_first, magic_ptr, MAGIC: tl.constexpr = True):
    """Padded windowed scan of an H x W map: step ``s`` -> (row, col, inside the map).  ``magic_ptr``: the three
    (magic, shift) pairs of its divisors (window area, windows per row, window width) in the direction table, used
    when MAGIC (else plain integer division)."""
    frame_h, frame_w, _, _ = _scan_frame(col_first, H, W)
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
def _scan_entries(table):
    """A direction's first table entries: column_first, reverse, window height and width, padded length."""
    return tl.load(table + 0), tl.load(table + 1), tl.load(table + 2), tl.load(table + 3), tl.load(table + 4)


@triton.jit
def step_positions(s, k, dirs_ptr, H, W, ORDER: tl.constexpr):
    """Steps ``s`` (int32 vector) of direction ``k`` -> (raster position, is a low-resolution token, valid).

    High-resolution positions index the H x W map; low-resolution ones the ceil(H/2) x ceil(W/2) map.
    """
    table = dirs_ptr + k * DIRECTION_COLUMNS
    col_first, reverse, win_h, win_w, length = _scan_entries(table)
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


@triton.jit
def tile_positions(s0, t, k, dirs_ptr, H, W, ORDER: tl.constexpr, IN_WINDOW: tl.constexpr = False,
                   BLOCK: tl.constexpr = 0):
    """``step_positions`` of the tile of steps ``s0 + t`` (t: ``tl.arange(0, BLOCK_T)``).

    Several tiles at once: s0 a tensor of tile starts and t of steps within a tile, shaped to broadcast against each
    other (the one-pass forward's segments, ``one_pass``), with BLOCK the steps per tile (0: t.shape[0]).

    IN_WINDOW == RASTER: every direction is a row-first, unreversed scan whose windows span the map's width, so its
    order is the raster order and a step's position is the step itself (any s0).

    IN_WINDOW (``operands.ScanOperands.tiles_in_windows``): s0 is a multiple of BLOCK_T and so is every direction's
    window area (plain orders) or five times its low-resolution window area (the aligned cross-scale order), so the
    tile lies inside one window (or wholly past the scan's end).  The window and its corner are then worked out once
    per tile, and each step only divides its place in the window by the window width: about 10 instructions per
    step instead of 30 in the plain order (compile_check: bench/JOURNAL.md), which every thread of a state-loop
    program spends on all of its tile's steps, in every kernel.  The sequential cross-scale order keeps the per-step
    code.
    """
    if ORDER == 0 and IN_WINDOW == RASTER:
        # No window arithmetic at all: 11-13% fewer instructions executed in the drop-in's forward kernels and
        # chunk_adjoint (compile_check, sm_90; bench/JOURNAL.md, "Raster scans take their positions from the step").
        s = s0 + t
        valid = s < H * W  # past the map: the padding of a cut-short last row band, or past the scan's end
        pos, is_low = tl.where(valid, s, 0), t < 0
    elif ORDER == 0 and IN_WINDOW:
        STEPS: tl.constexpr = t.shape[0] if BLOCK == 0 else BLOCK
        pos, is_low, valid = _plain_tile_in_window(s0, t, dirs_ptr + k * DIRECTION_COLUMNS, H, W, STEPS)
    elif ORDER == 1 and IN_WINDOW:
        pos, is_low, valid = _aligned_tile_in_window(s0, t, dirs_ptr + k * DIRECTION_COLUMNS, H, W)
    else:
        pos, is_low, valid = step_positions(s0 + t, k, dirs_ptr, H, W, ORDER)
    return pos, is_low, valid


@triton.jit
def _plain_tile_in_window(s0, t, table, H, W, BLOCK: tl.constexpr):
    """``tile_positions`` of a plain windowed scan whose tile of BLOCK steps lies inside one window (IN_WINDOW)."""
    return plain_window_tile(plain_window_geometry(table, H, W), s0, t, BLOCK)


@triton.jit
def plain_window_geometry(table, H, W):
    """What ``plain_window_tile`` needs of a plain windowed direction (its row ``table`` of the direction table) on
    an H x W map, read and derived once: a kernel whose positions come from one direction for all its tiles (the
    one-pass forwards) keeps it out of its tile loop (the loads, and a division for the windows per frame row)."""
    col_first, reverse, win_h, win_w, length = _scan_entries(table)
    frame_h, frame_w, step_r, step_c = _scan_frame(col_first, H, W)
    return (reverse == 0, win_h, win_w, length, frame_h, frame_w, step_r, step_c, tl.cdiv(frame_w, win_w),
            _divisor(table + 8), _divisor(table + 10), _divisor(table + 12))


@triton.jit
def plain_window_tile(geometry, s0, t, BLOCK: tl.constexpr):
    """``_plain_tile_in_window`` from its direction's ``plain_window_geometry``."""
    forward, win_h, win_w, length, frame_h, frame_w, step_r, step_c, window_cols, by_area, by_cols, by_w = geometry
    # In the unreversed scan the tile is steps first .. first + BLOCK - 1, all in one window.  (A reversed tile past
    # the scan's end, all of whose steps are invalid, would start below 0.)
    first = tl.maximum(tl.where(forward, s0, length - BLOCK - s0), 0)
    window = _divide_by(first, by_area, NONNEGATIVE=True)
    window_row = _divide_by(window, by_cols, NONNEGATIVE=True)
    r0 = window_row * win_h  # the window's corner in the scan frame
    c0 = (window - window_row * window_cols) * win_w
    # Each step's place in the window, row-major: the tile's first place plus t, or reversed, plus BLOCK - 1 - t.
    within = (first - window * (win_h * win_w) + tl.where(forward, 0, BLOCK - 1)) + t * tl.where(forward, 1, -1)
    r_in = _divide_by(within, by_w, NONNEGATIVE=True)
    c_in = within - r_in * win_w
    valid = (r_in < frame_h - r0) & (c_in < frame_w - c0) & ((t * 0 + s0) < length)
    # Raster position of frame pixel (r0 + r_in, c0 + c_in).
    pos = (r0 * step_r + c0 * step_c) + r_in * step_r + c_in * step_c
    return tl.where(valid, pos, 0), t < 0, valid


@triton.jit
def _aligned_tile_in_window(s0, t, table, H, W):
    """``tile_positions`` of a position-aligned cross-scale scan whose tile's groups of five lie inside one
    low-resolution window (IN_WINDOW: five times every direction's low window area is a multiple of the tile).

    The window, its corner and the reversal are worked out once per tile, in the scan frame (the map transposed
    for column-first scans); each step divides its group's place in the window by the window width, and its
    raster position is a multiply-add of frame coordinates with strides chosen once, instead of
    ``windowed_position``'s three divisions and the per-step swaps of rows and columns."""
    col_first, reverse, _, _, length = _scan_entries(table)
    low_win_h = tl.load(table + 5)
    low_win_w = tl.load(table + 6)
    low_length = tl.load(table + 7)
    forward = reverse == 0
    low_h = (H + 1) // 2
    low_w = (W + 1) // 2
    frame_h, frame_w, step_r, step_c = _scan_frame(col_first, H, W)
    low_frame_h, low_frame_w, low_step_r, low_step_c = _scan_frame(col_first, low_h, low_w)
    area = low_win_h * low_win_w
    # The unreversed scan visits group s // 5 at step s, the reversed one group low_length - 1 - s // 5.  All of a
    # tile's groups lie in one window (or, reversed past the scan's end, are invalid), so its first one names it.
    s = s0 + t
    group = s // 5
    slot = s - group * 5
    group = tl.where(forward, group, low_length - 1 - group)
    window = _divide(tl.maximum(tl.where(forward, s0 // 5, low_length - 1 - s0 // 5), 0), table + 14,
                     NONNEGATIVE=True)
    within = group - window * area
    window_row = _divide(window, table + 16, NONNEGATIVE=True)
    r0 = window_row * low_win_h  # the window's corner in the low-resolution frame
    c0 = (window - window_row * tl.cdiv(low_frame_w, low_win_w)) * low_win_w
    r_in = _divide(within, table + 18, NONNEGATIVE=True)
    fr = r0 + r_in
    fc = c0 + (within - r_in * low_win_w)
    low_inside = (fr < low_frame_h) & (fc < low_frame_w)
    # Slots 1-4 are the 2x2 block's pixels in frame order (reversed scans visit them backwards); slot 0 the
    # low-resolution token.
    j = tl.where(forward, slot - 1, 4 - slot)
    hr = 2 * fr + j // 2
    hc = 2 * fc + j % 2
    is_low = slot == 0
    valid = (s < length) & low_inside & (is_low | ((hr < frame_h) & (hc < frame_w)))
    pos = tl.where(is_low, fr * low_step_r + fc * low_step_c, hr * step_r + hc * step_c)
    return tl.where(valid, pos, 0), is_low, valid
