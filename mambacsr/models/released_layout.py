"""The released cross-scale block's output placement, reproduced so that the authors' weights run as they ran.

The released code scans a column-first cross-scale direction with its windows taken column by column (window
``k = window_col * Hg + window_row``), but puts the outputs back reading ``k`` as ``window_row * Wg + window_col``
and the map as ``W`` rows of ``H``.  On a square map the two readings agree; on a non-square one (most of the
authors' test partitions, 256x192 say) every column-first output lands at another pixel, a fixed permutation of the
map.  Its channel gate pools over all pixels, so it is unchanged by the permutation, and a layer's output is

    sum over row-first directions  +  (sum over column-first directions) moved by that permutation.

:func:`directional_scan_as_released` computes exactly that with two calls of :func:`scan2d.directional_scan`, so
the fused kernels still run.  The released code cannot scan a map whose sides are not multiples of the window (its
views fail); there the outputs are placed correctly.  Training is unaffected either way: patches are square.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

import scan2d

__all__ = ["released_positions", "moved_directions", "directional_scan_as_released"]


def released_positions(height: int, width: int, window: int) -> torch.Tensor:
    """int64 ``(height * width,)``: entry ``p`` is the raster index at which the released code puts the output of
    pixel ``p`` (raster index) of a column-first cross-scale direction with ``window``; ``height`` and ``width``
    must be multiples of ``window``.  The identity when ``height == width``."""
    if height % window or width % window:
        raise ValueError(f"a {height}x{width} map is not a whole number of {window}x{window} windows; the released "
                         "placement is only defined on such maps.")
    rows = torch.arange(height).repeat_interleave(width)
    cols = torch.arange(width).repeat(height)
    grid_rows, grid_cols = height // window, width // window
    scanned = (cols // window) * grid_rows + rows // window  # the window's index in the column-first scan
    read_row, read_col = scanned // grid_cols, scanned % grid_cols  # ... read back as row-major
    return (read_col * window + rows % window) * height + read_row * window + cols % window


def moved_directions(directions: Sequence[scan2d.ScanDirection], height: int, width: int) -> list:
    """Indices of the directions whose outputs the released code misplaces on a ``height x width`` map: the
    column-first position-aligned cross-scale scans with a window, on a non-square map of whole windows."""
    if height == width:
        return []
    return [k for k, d in enumerate(directions)
            if d.cross_scale == "aligned" and d.column_first and d.window is not None
            and height % d.window == 0 and width % d.window == 0]


def directional_scan_as_released(u: torch.Tensor, xdbl: torch.Tensor, dt_weight: torch.Tensor, dt_bias: torch.Tensor,
                                 A: torch.Tensor, D: torch.Tensor, directions: Sequence[scan2d.ScanDirection],
                                 height: int, width: int, *, u_low: Optional[torch.Tensor] = None,
                                 xdbl_low: Optional[torch.Tensor] = None, gate: Optional[scan2d.ChannelGate] = None,
                                 backend: str = "auto") -> torch.Tensor:
    """:func:`scan2d.directional_scan` (same arguments, shapes and result) with the outputs of the directions that
    :func:`moved_directions` names put where the released code puts them."""
    moved = moved_directions(directions, height, width)
    windows = {directions[k].window for k in moved}
    if len(windows) > 1:
        raise ValueError(f"column-first cross-scale directions with windows {sorted(windows)}: the released code has "
                         "one window per cross-scale block.")

    def scan(index):
        pick = torch.tensor(index, device=u.device)
        return scan2d.directional_scan(
            u, xdbl.index_select(2, pick), dt_weight[pick], dt_bias[pick], A[pick], D[pick],
            [directions[k] for k in index], height, width, u_low=u_low,
            xdbl_low=None if xdbl_low is None else xdbl_low.index_select(2, pick), gate=gate, backend=backend)

    if not moved:
        return scan2d.directional_scan(u, xdbl, dt_weight, dt_bias, A, D, directions, height, width, u_low=u_low,
                                       xdbl_low=xdbl_low, gate=gate, backend=backend)
    # Output position q takes the pixel the released code moves there: the inverse of released_positions.
    placed = scan2d.inverse_order(released_positions(height, width, windows.pop()), height * width)
    out = scan(moved).index_select(1, placed.to(u.device))
    kept = [k for k in range(len(directions)) if k not in moved]
    return out + scan(kept) if kept else out
