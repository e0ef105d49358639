"""Input normalisation, shallow feature extraction and the pixel-shuffle reconstruction head."""

from __future__ import annotations

import math

import torch
from torch import nn


class MeanShift(nn.Module):
    """Subtract the DF2K RGB mean (and scale by ``img_range``) on the way in, undo it on the way out."""

    def __init__(self, mean=(0.4488, 0.4371, 0.4040), img_range: float = 1.0):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.img_range = img_range

    def normalise(self, img: torch.Tensor) -> torch.Tensor:
        return (img - self.mean.to(img.dtype)) * self.img_range

    def denormalise(self, out: torch.Tensor) -> torch.Tensor:
        return out / self.img_range + self.mean.to(out.dtype)


class PixelShuffleUpsampler(nn.Module):
    """Conv3x3 dim->64 + LeakyReLU, log2(scale) x [Conv3x3 64->256, PixelShuffle(2)] (or one x3 stage),
    Conv3x3 64->out.  x: (B, dim, H, W) -> (B, out, scale*H, scale*W)."""

    def __init__(self, dim: int, scale: int, out_channels: int = 3, num_feat: int = 64):
        super().__init__()
        self.conv_before = nn.Sequential(nn.Conv2d(dim, num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True))
        stages = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                stages += [nn.Conv2d(num_feat, 4 * num_feat, 3, 1, 1), nn.PixelShuffle(2)]
        elif scale == 3:
            stages += [nn.Conv2d(num_feat, 9 * num_feat, 3, 1, 1), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"upscale={scale} is not supported; use a power of two or 3.")
        self.upsample = nn.Sequential(*stages)
        self.conv_last = nn.Conv2d(num_feat, out_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_last(self.upsample(self.conv_before(x)))
