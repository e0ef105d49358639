"""Restoring large images in overlapping tiles, blended without seams, with memory bounded by the tile size."""

from __future__ import annotations

from typing import Callable, List, Optional

import torch
import torch.nn.functional as F


def tile_starts(size: int, tile: int, overlap: int) -> List[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``size`` with at least ``overlap`` pixels shared."""
    if tile >= size:
        return [0]
    if overlap >= tile:
        raise ValueError(f"tile overlap ({overlap}) must be smaller than the tile ({tile}).")
    starts = list(range(0, size - tile, tile - overlap))
    return starts + [size - tile]


def _ramp(length: int, fade: int, at_start: bool, at_end: bool, device) -> torch.Tensor:
    """1 inside, rising linearly over ``fade`` pixels at the tile's inner edges (never 0, so weights divide)."""
    w = torch.ones(length, device=device)
    if fade > 0:
        ramp = (torch.arange(fade, device=device, dtype=torch.float32) + 0.5) / fade
        if not at_start:
            w[:fade] = torch.minimum(w[:fade], ramp)
        if not at_end:
            w[-fade:] = torch.minimum(w[-fade:], ramp.flip(0))
    return w


def _run_tile(model: Callable, tile: torch.Tensor, pad_multiple: Optional[int]) -> torch.Tensor:
    if not pad_multiple:
        return model(tile)
    h, w = tile.shape[-2:]
    ph, pw = (-h) % pad_multiple, (-w) % pad_multiple
    mode = "reflect" if ph < h and pw < w else "replicate"
    out = model(F.pad(tile, (0, pw, 0, ph), mode=mode))
    scale = out.shape[-1] // (w + pw)
    return out[..., : h * scale, : w * scale]


@torch.no_grad()
def restore_tiled(model: Callable, lr: torch.Tensor, scale: int, tile: Optional[int] = 128, overlap: int = 16,
                  pad_multiple: Optional[int] = None) -> torch.Tensor:
    """Run ``model`` (B, C, h, w) -> (B, C, scale*h, scale*w) over ``lr`` in tiles of ``tile`` LR pixels.

    Tiles overlap by ``overlap`` LR pixels and are blended with linear ramps over the overlap.  ``tile=None`` runs
    the whole image at once.  ``pad_multiple`` mirror-pads each tile to a multiple (the paper's test protocol pads
    to 64) and crops the output back.  Returns the output on the CPU, in ``lr``'s dtype: the tiles are blended
    there, so that the device holds one tile's work at a time.
    """
    if lr.dim() != 4:
        raise ValueError(f"lr must be (batch, channels, height, width), got {tuple(lr.shape)}.")
    height, width = lr.shape[-2:]
    if tile is None or (height <= tile and width <= tile):
        return _run_tile(model, lr, pad_multiple).cpu()
    rows, cols = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    out = weight = None
    fade = overlap * scale
    for top in rows:
        for left in cols:
            th, tw = min(tile, height), min(tile, width)
            # Out of memory propagates as torch.OutOfMemoryError: each tool says what to lower (out_of_memory_advice).
            piece = _run_tile(model, lr[..., top:top + th, left:left + tw], pad_multiple)
            if out is None:
                # The whole output in float32, with its weights, grows with the image (2 GB for a 4K photo's x4):
                # on a GPU it would outgrow any tile size, so it is kept in the CPU's memory.
                out = torch.zeros(lr.shape[0], piece.shape[1], height * scale, width * scale, dtype=torch.float32)
                weight = torch.zeros(1, 1, height * scale, width * scale, dtype=torch.float32)
            wy = _ramp(th * scale, fade, top == 0, top + th == height, "cpu")
            wx = _ramp(tw * scale, fade, left == 0, left + tw == width, "cpu")
            w = wy[:, None] * wx[None, :]
            ys, xs = slice(top * scale, (top + th) * scale), slice(left * scale, (left + tw) * scale)
            out[..., ys, xs] += piece.float().cpu() * w
            weight[..., ys, xs] += w
    return out.div_(weight).to(lr.dtype)


def out_of_memory_advice(tile: Optional[int]) -> str:
    """What to do when restoring in tiles of ``tile`` LR pixels (None: whole images) ran out of memory: memory is
    bounded by the tile, so a smaller one fits."""
    smaller = 128 if tile is None else max(16, tile // 2)
    now = "whole images (tile=null)" if tile is None else f"tile={tile}"
    return f"out of memory restoring {now}: pass a smaller tile, e.g. tile={smaller}"
