"""The authors' test-time protocol, for evaluating as the paper's tables were made.

What the released test code does (``MambaCSRModel.test`` with the released test options, ``padding_size: 64``),
written here from that description: the LR image is cut into ``h // 192 + 1`` by ``w // 192 + 1`` partitions
(reflect-padding it at the bottom and right to a multiple of those counts first); each partition is widened by a
quarter of its size into its neighbours, mirrored at its bottom and right (the rows or columns repeated in reverse,
edge included) to the next multiple of 64 above its size (a side of 128 becomes 192), and restored; the outputs are
cut back and put together without blending, each partition's own region from its restoration.  Our default protocol
(``tiling.restore_tiled``) blends overlapping tiles instead.  On partitions that are not square, the released
cross-scale block also puts the outputs of its column-first directions back with its window grid read the wrong way
round; :func:`network_as_released` has the network do the same (``models/released_layout.py``).
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from .tiling import restore_tiled

PARTITION = 192  # LR pixels per partition, about
PADDING = 64     # each partition is mirrored up to a multiple of this
RELEASED_LAYOUT = "model.cross_scale.released_layout"
PROTOCOLS = ("tiles", "released")


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol={protocol}: pass protocol=tiles (ours, the default) or protocol=released (the "
                         "authors' test partitions).")
    return protocol


def restore_by_protocol(model: Callable, lr: torch.Tensor, scale: int, protocol: str, tile: Optional[int],
                        overlap: int) -> torch.Tensor:
    """lr: (batch, channels, h, w) -> (batch, channels, scale*h, scale*w) on the CPU: our blended tiles of ``tile``
    LR pixels (``tiles``), or the authors' partitions (``released``, which takes no tile size)."""
    if check_protocol(protocol) == "released":
        return restore_as_released(model, lr, scale)
    return restore_tiled(model, lr, scale, tile, overlap)


def network_as_released(cfg: DictConfig, overrides: Sequence[str]) -> None:
    """Have ``cfg``'s network place its cross-scale outputs as the released code does, unless ``overrides`` (the
    command line's) set ``model.cross_scale.released_layout`` themselves.  Networks without a cross-scale block
    (MambaIR) are left as they are."""
    if "cross_scale" in cfg.model and not any(o.lstrip("+~").startswith(RELEASED_LAYOUT + "=") for o in overrides):
        cfg.model.cross_scale.released_layout = True


def _mirror_up(chop: torch.Tensor, padding: int) -> torch.Tensor:
    """``chop`` mirrored at its bottom and right to the next multiple of ``padding`` strictly above each side (no more
    than the side itself: a side under half the multiple stays short, as in the released code)."""
    for dim in (-2, -1):
        size = chop.shape[dim]
        target = (size // padding + 1) * padding
        chop = torch.cat([chop, chop.flip(dim)], dim).narrow(dim, 0, min(target, 2 * size))
    return chop


def _spans(total: int, parts: int) -> List[tuple]:
    """Per partition along one side: (start, stop) of the widened input, and the offset of its own region in it."""
    size = total // parts
    shave = size // 4
    spans = []
    for i in range(parts):
        start = i * size - (shave if i > 0 else 0)
        stop = (i + 1) * size + (shave if i < parts - 1 else 0)
        spans.append((start, stop, i * size - start))
    return spans


@torch.no_grad()
def restore_as_released(model: Callable, lr: torch.Tensor, scale: int, partition: int = PARTITION,
                        padding: int = PADDING) -> torch.Tensor:
    """lr: (batch, channels, h, w) -> (batch, channels, scale*h, scale*w) on the CPU, by the released protocol."""
    _, _, h, w = lr.shape
    rows, cols = h // partition + 1, w // partition + 1
    pad_h, pad_w = (-h) % rows, (-w) % cols
    img = F.pad(lr, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else lr
    H, W = img.shape[-2:]
    size_h, size_w = H // rows, W // cols
    out = torch.zeros(lr.shape[0], lr.shape[1], H * scale, W * scale, dtype=torch.float32)
    for i, (top, bottom, own_top) in enumerate(_spans(H, rows)):
        for j, (left, right, own_left) in enumerate(_spans(W, cols)):
            chop = img[..., top:bottom, left:right]
            piece = model(_mirror_up(chop, padding))[..., :chop.shape[-2] * scale, :chop.shape[-1] * scale]
            own = piece[..., own_top * scale:(own_top + size_h) * scale, own_left * scale:(own_left + size_w) * scale]
            out[..., i * size_h * scale:(i + 1) * size_h * scale, j * size_w * scale:(j + 1) * size_w * scale] = \
                own.float().cpu()
    return out[..., :h * scale, :w * scale].to(lr.dtype)
