"""Tiled restoration equals the untiled one away from tile edges, and bounds the size of what the model sees."""

import torch
import torch.nn.functional as F

from mambacsr.tiling import restore_tiled, tile_starts
from tiny import tiny_mambacsr


class LocalSR(torch.nn.Module):
    """A small convolutional x2 model: receptive field radius 2 LR pixels, so tiles are exact inside."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.GELU(),
                                        torch.nn.Conv2d(8, 12, 3, padding=1), torch.nn.PixelShuffle(2))
        self.sizes = []

    def forward(self, x):
        self.sizes.append(tuple(x.shape[-2:]))
        return self.body(x)


def test_tile_starts_cover_with_overlap():
    assert tile_starts(100, 40, 8) == [0, 32, 60]
    assert tile_starts(30, 40, 8) == [0]


def test_tiled_equals_untiled_away_from_tile_edges():
    model = LocalSR()
    x = torch.rand(1, 3, 45, 70)
    full = model(x)
    model.sizes.clear()
    tiled = restore_tiled(model, x, scale=2, tile=20, overlap=8)
    assert max(max(s) for s in model.sizes) <= 20  # memory bounded by the tile
    # A pixel is exact when every tile covering it sees it more than the receptive field (2 LR px) away from the
    # tile's inner edges (image borders are zero-padded alike in both runs).
    covered_inexact = torch.zeros(45, 70, dtype=torch.bool)
    for r0 in tile_starts(45, 20, 8):
        for c0 in tile_starts(70, 20, 8):
            tile_mask = torch.zeros(45, 70, dtype=torch.bool)
            tile_mask[r0:r0 + 20, c0:c0 + 20] = True
            inner = torch.zeros_like(tile_mask)
            inner[r0 + (2 if r0 > 0 else 0):r0 + 20 - (2 if r0 + 20 < 45 else 0),
                  c0 + (2 if c0 > 0 else 0):c0 + 20 - (2 if c0 + 20 < 70 else 0)] = True
            covered_inexact |= tile_mask & ~inner
    good = F.interpolate((~covered_inexact).float()[None, None], scale_factor=2)[0, 0].bool()
    assert good.float().mean() > 0.5  # most of the image, seams included only where exact
    torch.testing.assert_close(tiled[0][:, good], full[0][:, good], rtol=1e-5, atol=1e-6)
    # Near the seams the blend stays close (no visible seam).
    assert (tiled - full).abs().max() < 0.2


def test_mambacsr_tiles_any_size():
    model = tiny_mambacsr().eval()
    out = restore_tiled(model, torch.rand(1, 3, 23, 37), scale=4, tile=16, overlap=4, pad_multiple=8)
    assert out.shape == (1, 3, 92, 148) and torch.isfinite(out).all()
