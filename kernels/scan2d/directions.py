"""Scan directions: the small value type that names one scan of a 2D map, and its visit order."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Optional

import torch

from ._validate import check_window
from .orders import cross_scale_order, inverse_order, scan_order, sequential_cross_scale_order

__all__ = ["ScanDirection", "CROSS_SCALE_MODES"]

CROSS_SCALE_MODES = ("aligned", "sequential")
_NAME = re.compile(r"^(?P<col>c_)?(?:w(?P<window>\d+)|(?P<glob>global))(?P<flip>_flip)?$")


@dataclass(frozen=True)
class ScanDirection:
    """One scan of a ``height x width`` map.

    Attributes:
        window: side of the square scan window in pixels, or None for one global scan.
        column_first: visit windows and the pixels inside them column by column.
        reverse: reverse the whole sequence.
        cross_scale: None for a plain scan; "aligned" interleaves the half-resolution tokens position by
            position (:func:`cross_scale_order`); "sequential" scans all half-resolution tokens first
            (:func:`sequential_cross_scale_order`).
    """

    window: Optional[int]
    column_first: bool = False
    reverse: bool = False
    cross_scale: Optional[str] = None

    def __post_init__(self):
        check_window("window", self.window)
        if self.cross_scale not in (None,) + CROSS_SCALE_MODES:
            raise ValueError(
                f"cross_scale must be None, 'aligned' or 'sequential', got {self.cross_scale!r}."
            )

    @classmethod
    def parse(cls, name: str, cross_scale: Optional[str] = None) -> "ScanDirection":
        """Parse the released code's names: ``w8`` (row-first window 8), ``c_w8`` (column-first), a ``_flip``
        suffix for the reversed scan, and ``global`` / ``c_global`` for one scan over the whole map."""
        match = _NAME.match(name) if isinstance(name, str) else None
        if match is None:
            raise ValueError(
                f"scan direction {name!r} is not understood; use w<N>, c_w<N>, global or c_global, optionally with "
                "a _flip suffix (for example 'c_w8_flip')."
            )
        window = None if match["glob"] else int(match["window"])
        return cls(window, bool(match["col"]), bool(match["flip"]), cross_scale)

    @property
    def name(self) -> str:
        base = "global" if self.window is None else f"w{self.window}"
        return ("c_" if self.column_first else "") + base + ("_flip" if self.reverse else "")

    def order(self, height: int, width: int) -> torch.Tensor:
        """int64 visit order (see :mod:`scan2d.orders`); cached, on the CPU."""
        return _order(self, height, width)

    def inverse(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """int64 ``(height * width,)``: the step at which each high-resolution pixel is visited."""
        return _inverse(self, height, width, torch.device(device))

    def sequence_length(self, height: int, width: int) -> int:
        if self.cross_scale is None:
            return height * width
        return height * width + ((height + 1) // 2) * ((width + 1) // 2)


def _cached(fn):
    """``fn`` behind an LRU cache, but called directly while torch.compile traces it: Dynamo ignores the cache (with
    a warning) and traces ``fn`` anyway."""
    cached = functools.lru_cache(maxsize=512)(fn)

    @functools.wraps(fn)
    def call(*args):
        return fn(*args) if torch.compiler.is_compiling() else cached(*args)

    return call


@_cached
def _order(direction: ScanDirection, height: int, width: int) -> torch.Tensor:
    fn = {
        None: scan_order,
        "aligned": cross_scale_order,
        "sequential": sequential_cross_scale_order,
    }[direction.cross_scale]
    return fn(height, width, direction.window, direction.column_first, direction.reverse)


@_cached
def _gather_index(direction: ScanDirection, height: int, width: int, device: torch.device) -> torch.Tensor:
    return _order(direction, height, width).to(device)


@_cached
def _inverse(direction: ScanDirection, height: int, width: int, device: torch.device) -> torch.Tensor:
    return inverse_order(_order(direction, height, width), height * width).to(device)


def gather_index(direction: ScanDirection, height: int, width: int, device) -> torch.Tensor:
    """The visit order on ``device`` (cached per device, so a training step does not copy it every call)."""
    return _gather_index(direction, height, width, torch.device(device))
