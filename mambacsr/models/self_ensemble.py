"""Self-ensemble at test time (EDSR's "+" results): the network restores the eight flips and 90-degree rotations of
its input, each output is turned back, and the eight are averaged.  Eight times the work for a small gain; the
paper's figures are without it."""

from __future__ import annotations

import itertools

import torch
from torch import nn


class SelfEnsemble(nn.Module):
    """Wraps a restoration network: (batch, channels, H, W) -> its output averaged over the 8 dihedral views."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for transpose, flip_h, flip_w in itertools.product((False, True), repeat=3):
            dims = [d for d, flip in ((-2, flip_h), (-1, flip_w)) if flip]
            view = x.transpose(-2, -1) if transpose else x
            out = self.model(view.flip(dims) if dims else view)
            out = out.flip(dims) if dims else out  # flips undo themselves, then the transpose
            out = out.transpose(-2, -1) if transpose else out
            total = out if total is None else total + out
        return total / 8
