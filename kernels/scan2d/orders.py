"""Scan orders: which pixel a 2D selective scan visits at each step.

Every function here is pure and returns an int64 tensor ``order`` of length ``T`` where ``order[t]`` is the raster
index (``row * width + col``) of the token visited at step ``t``.  For cross-scale orders, entries
``>= height * width`` address the half-resolution map: entry ``height * width + k`` is low-resolution token ``k``
(raster index on the ``ceil(height / 2) x ceil(width / 2)`` map).

These functions are the single definition of the paper's scan orders.  The PyTorch path gathers with them; the
Triton kernels recompute the same positions arithmetically and are tested against them.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from ._validate import check_positive_int, check_window

__all__ = [
    "scan_order",
    "cross_scale_order",
    "sequential_cross_scale_order",
    "inverse_order",
]


def _window_sort_key(rows: torch.Tensor, cols: torch.Tensor, win_h: int, win_w: int, n_win_cols: int) -> torch.Tensor:
    """Lexicographic key (window row, window col, row in window, col in window) as one int64."""
    window_index = (rows // win_h) * n_win_cols + cols // win_w
    return window_index * (win_h * win_w) + (rows % win_h) * win_w + cols % win_w


def scan_order(
    height: int,
    width: int,
    window: Optional[int],
    column_first: bool = False,
    reverse: bool = False,
) -> torch.Tensor:
    """Visit order of a windowed scan over a ``height x width`` map.

    Row-first: windows of ``window x window`` pixels in raster order, pixels inside each window in raster order.
    Column-first: the exact transpose (windows column by column, pixels column-major inside a window).
    ``window=None`` is one global scan (raster or column-major).  Windows at the right and bottom edges are cut
    short, so the order is always a permutation of ``range(height * width)`` with no padding positions.
    ``reverse`` reverses the whole sequence.

    Returns:
        int64 tensor of shape ``(height * width,)``.
    """
    check_positive_int("height", height)
    check_positive_int("width", width)
    check_window("window", window)
    win = max(height, width) if window is None else window
    rows = torch.arange(height, dtype=torch.int64).repeat_interleave(width)
    cols = torch.arange(width, dtype=torch.int64).repeat(height)
    if column_first:
        # Transpose: the roles of rows and columns swap, windows are enumerated column by column.
        key = _window_sort_key(cols, rows, win, win, math.ceil(height / win))
    else:
        key = _window_sort_key(rows, cols, win, win, math.ceil(width / win))
    order = torch.argsort(key)
    return order.flip(0) if reverse else order


def _low_res_shape(height: int, width: int) -> tuple[int, int]:
    return (height + 1) // 2, (width + 1) // 2


def _half_window(window: Optional[int]) -> Optional[int]:
    if window is None:
        return None
    if window < 2:
        raise ValueError(
            f"window={window}: a cross-scale scan needs a window of at least 2 high-resolution pixels, because the "
            "low-resolution map is scanned with window // 2. Use an even window such as 16, or None for a global scan."
        )
    return window // 2


def cross_scale_order(
    height: int,
    width: int,
    window: Optional[int],
    column_first: bool = False,
    reverse: bool = False,
) -> torch.Tensor:
    """Position-aligned cross-scale order over a high-resolution map and its half-resolution map.

    The sequence is made of groups of (up to) five tokens: low-resolution token ``k`` (entry
    ``height * width + k``), then the high-resolution pixels of its 2x2 block (row-first: TL, TR, BL, BR;
    column-first: TL, BL, TR, BR).  Groups follow the low-resolution map's :func:`scan_order` with window
    ``window // 2``, so windows of both scales move together.  ``reverse`` visits the groups in reverse order; each
    group is still led by its low-resolution token and its high-resolution pixels are reversed.  Groups at an odd
    edge have fewer high-resolution pixels.

    Returns:
        int64 tensor of shape ``(height * width + ceil(height / 2) * ceil(width / 2),)``.
    """
    check_positive_int("height", height)
    check_positive_int("width", width)
    check_window("window", window)
    low_h, low_w = _low_res_shape(height, width)
    groups = scan_order(low_h, low_w, _half_window(window), column_first=column_first)
    low_rows, low_cols = groups // low_w, groups % low_w
    if column_first:
        offsets = ((0, 0), (1, 0), (0, 1), (1, 1))
    else:
        offsets = ((0, 0), (0, 1), (1, 0), (1, 1))
    high = []
    for dr, dc in offsets:
        r, c = 2 * low_rows + dr, 2 * low_cols + dc
        inside = (r < height) & (c < width)
        high.append(torch.where(inside, r * width + c, torch.full_like(r, -1)))
    high = torch.stack(high, dim=1)  # (groups, 4); -1 marks a pixel outside an odd edge
    low = (height * width + groups).unsqueeze(1)
    if reverse:
        high = high.flip(1)
        low = low.flip(0)
        high = high.flip(0)
    table = torch.cat([low, high], dim=1).reshape(-1)
    return table[table >= 0]


def sequential_cross_scale_order(
    height: int,
    width: int,
    window: Optional[int],
    column_first: bool = False,
    reverse: bool = False,
) -> torch.Tensor:
    """Plain sequential cross-scale order (the paper's Table 3 ablation).

    All low-resolution tokens first (their own :func:`scan_order` with window ``window // 2``), then all
    high-resolution pixels (:func:`scan_order` with ``window``).  ``reverse`` reverses each part but keeps the
    low-resolution part first, as the position-aligned order keeps each group led by its low-resolution token.

    Returns:
        int64 tensor of shape ``(height * width + ceil(height / 2) * ceil(width / 2),)``.
    """
    check_positive_int("height", height)
    check_positive_int("width", width)
    check_window("window", window)
    low_h, low_w = _low_res_shape(height, width)
    low = scan_order(low_h, low_w, _half_window(window), column_first, reverse) + height * width
    high = scan_order(height, width, window, column_first, reverse)
    return torch.cat([low, high])


def inverse_order(order: torch.Tensor, num_outputs: int) -> torch.Tensor:
    """Step at which each of the first ``num_outputs`` positions is visited.

    ``inverse_order(order, n)[p] = t`` such that ``order[t] == p``, for ``p < n``.  Gathering a scanned sequence
    with it puts the outputs back in raster order and drops the low-resolution tokens of a cross-scale scan.

    Args:
        order: int64 ``(T,)`` visit order, containing every position ``< num_outputs`` exactly once.
    Returns:
        int64 tensor of shape ``(num_outputs,)``.
    """
    steps = torch.arange(order.numel(), dtype=torch.int64, device=order.device)
    keep = order < num_outputs
    inverse = torch.empty(num_outputs, dtype=torch.int64, device=order.device)
    inverse[order[keep]] = steps[keep]
    return inverse
