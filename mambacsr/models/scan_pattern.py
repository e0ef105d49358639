"""Which directions each block scans: the dual-interleaved scanning (DIS) pattern and its ablations."""

from __future__ import annotations

from typing import List, Optional

from scan2d import ScanDirection


def _pair(window: Optional[int], column_first: bool) -> List[ScanDirection]:
    """A scan and its whole-sequence reversal (each scan is paired with its flip for two-way context)."""
    return [ScanDirection(window, column_first, False), ScanDirection(window, column_first, True)]


def block_directions(index: int, local_window: Optional[int] = 8, global_window: Optional[int] = 64,
                     hierarchical: bool = True, horizontal_to_vertical: bool = True) -> List[ScanDirection]:
    """Directions of block ``index`` (counted from 0 inside its group).

    - hierarchical interleave: alternate local windows and long (``global_window``) scans every two blocks;
      off: every block uses ``local_window``.
    - horizontal-to-vertical interleave: each block scans one orientation (row-first or column-first) with its
      flip, alternating block by block; off: every block scans both orientations (four directions).

    With both on (the paper's DIS) blocks cycle through row/local, column/local, row/global, column/global.
    The released code's "sequential" scan is a 64x64 window (``global_window=64``), not a global scan; use
    ``global_window=None`` for a true global scan.
    """
    if horizontal_to_vertical:
        column_first = index % 2 == 1
        long_range = hierarchical and (index // 2) % 2 == 1
        return _pair(global_window if long_range else local_window, column_first)
    long_range = hierarchical and index % 2 == 1
    window = global_window if long_range else local_window
    return _pair(window, False) + _pair(window, True)


def parse_directions(names, cross_scale: Optional[str] = None) -> List[ScanDirection]:
    """Directions from released-code names such as ``["w16", "w16_flip", "c_w16", "c_w16_flip"]``."""
    return [ScanDirection.parse(name, cross_scale) for name in names]
