"""The direction table: each scan direction's geometry as the kernels read it (:mod:`.positions`).

Window sides in the scan frame, scan lengths of the padded windows, and the magic numbers that turn the kernels'
divisions by window sizes into a multiply and a shift; cached per geometry (and per device for the GPU copy).
"""

import functools
import math
from typing import Sequence

import torch

from ..directions import ScanDirection
from .positions import DIRECTION_COLUMNS, ORDER_ALIGNED, ORDER_PLAIN, ORDER_SEQUENTIAL


ORDER_OF = {None: ORDER_PLAIN, "aligned": ORDER_ALIGNED, "sequential": ORDER_SEQUENTIAL}


def _padded(extent: int, window: int) -> int:
    return math.ceil(extent / window) * window


def division_magic(divisor: int) -> tuple:
    """(magic, shift) with n // divisor == (n * magic) >> shift for every 0 <= n < 2^31, magic < 2^32 (as int32
    bits): shift = 31 + ceil(log2 divisor), magic = ceil(2^shift / divisor), so 2^shift <= magic * divisor <=
    2^shift + 2^(shift - 31) (Granlund and Montgomery 1994, theorem 4.2).  The kernels divide scan steps by window
    sizes this way: one wide multiply and a shift instead of a division routine (``positions._divide``)."""
    if divisor < 1:
        raise ValueError(f"division_magic needs a positive divisor, got {divisor}")
    shift = 31 + (divisor - 1).bit_length()
    magic = -(-(1 << shift) // divisor)
    return (magic - (1 << 32) if magic >= 1 << 31 else magic), shift


def _frame_divisions(frame_w: int, win_h: int, win_w: int) -> list:
    """Magic numbers of a windowed scan's divisors: window area, windows per row, window width."""
    out = []
    for divisor in (win_h * win_w, math.ceil(frame_w / win_w), win_w):
        out += division_magic(divisor)
    return out


def direction_rows(directions: Sequence[ScanDirection], height: int, width: int) -> tuple:
    """Per-direction parameters of :func:`positions.step_positions`: [column_first, reverse, window h, window w,
    scan length, low-res window h, low-res window w, low-res length] for each direction, then the (magic, shift)
    pairs of :func:`division_magic` for the high-resolution window area, windows per row and window width, and the
    same three for the low-resolution frame.  Cached per geometry: every layer call needs its scan length, and
    working the rows out took a quarter of a gated forward's host time (bench/host_overhead.py)."""
    return _direction_rows(tuple(directions), height, width)


def scan_length(directions: Sequence[ScanDirection], height: int, width: int) -> int:
    """Steps of the longest of these directions' scans (padded windows included)."""
    return max(row[4] for row in direction_rows(directions, height, width))


@functools.lru_cache(maxsize=512)
def _direction_rows(directions: tuple, height: int, width: int) -> tuple:
    rows = []
    low_h, low_w = (height + 1) // 2, (width + 1) // 2
    for d in directions:
        frame = (width, height) if d.column_first else (height, width)
        wh, ww = frame if d.window is None else (min(d.window, frame[0]), min(d.window, frame[1]))
        high_len = _padded(frame[0], wh) * _padded(frame[1], ww)
        lwh = lww = 1
        low_len = 0
        if d.cross_scale is not None:
            lframe = (low_w, low_h) if d.column_first else (low_h, low_w)
            lwin = None if d.window is None else d.window // 2
            lwh, lww = lframe if lwin is None else (min(lwin, lframe[0]), min(lwin, lframe[1]))
            low_len = _padded(lframe[0], lwh) * _padded(lframe[1], lww)
        else:
            lframe = (1, 1)
        length = {None: high_len, "aligned": 5 * low_len, "sequential": low_len + high_len}[d.cross_scale]
        if length >= 2 ** 31:
            raise ValueError(f"a {height}x{width} map scans {length} steps, more than the Triton kernels' int32 step "
                             "index holds (2^31 - 1); use backend='torch' or tile the image (mambacsr's tiled "
                             "inference).")
        rows.append((int(d.column_first), int(d.reverse), wh, ww, length, lwh, lww, low_len,
                     *_frame_divisions(frame[1], wh, ww), *_frame_divisions(lframe[1], lwh, lww)))
        assert len(rows[-1]) == DIRECTION_COLUMNS
    return tuple(rows)


def direction_table(directions: Sequence[ScanDirection], height: int, width: int, device) -> torch.Tensor:
    """int32 (K, positions.DIRECTION_COLUMNS) :func:`direction_rows` on ``device``, as the kernels read it.

    Cached per geometry and device, and read-only: copying a host list to a GPU (``torch.tensor(..., device=)``)
    waits for everything queued on the stream, so building the table per call stalled the host at every layer of
    the model and left the GPU idle while Python launched the next kernels."""
    return _direction_table(tuple(directions), height, width, torch.device(device))


@functools.lru_cache(maxsize=512)
def _direction_table(directions: tuple, height: int, width: int, device: torch.device) -> torch.Tensor:
    return torch.tensor(direction_rows(directions, height, width), dtype=torch.int32, device=device)
