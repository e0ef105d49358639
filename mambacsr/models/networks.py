"""The x4 compressed-image super-resolution networks: MambaCSR and the MambaIR baseline.

    image -> mean shift -> Conv3x3 (shallow) -> LayerNorm -> residual groups -> LayerNorm -> Conv3x3 (+ shallow)
          -> pixel-shuffle upsampler -> mean shift back

MambaCSR adds a half-resolution branch (bilinear x0.5 of the shallow features, its own LayerNorm and one RLMG) that
a cross-scale block fuses into the main features after the first group.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import RLMB, RLMG, CrossScaleBlock, MambaIRBlock
from .heads import MeanShift, PixelShuffleUpsampler
from .scan_pattern import block_directions, parse_directions


def check_sizes(upscale: int, embed_dim: int, depths: Sequence[int], d_state: int, drop_path_rate: float,
                mlp_ratio: float = 1.0) -> None:
    """Raise ValueError, naming the ``model.*`` value and what to pass, for sizes no network can be built with (some
    would build a network that does nothing, ``d_state=0``, or fail deep inside PyTorch)."""
    def whole(v, low):
        return isinstance(v, int) and not isinstance(v, bool) and v >= low

    checks = (("upscale", upscale, whole(upscale, 2), "3 or a power of two, at least 2 (the paper's: 4)"),
              ("embed_dim", embed_dim, whole(embed_dim, 1), "a channel count, at least 1 (the paper's: 180)"),
              ("depths", list(depths), len(depths) > 0 and all(whole(d, 1) for d in depths),
               "blocks per group, each at least 1, e.g. [6, 6, 6, 6, 6, 6]"),
              ("d_state", d_state, whole(d_state, 1), "a state size, at least 1 (the paper's: 16)"),
              ("drop_path_rate", drop_path_rate, 0 <= drop_path_rate < 1, "a rate in [0, 1)"),
              ("mlp_ratio", mlp_ratio, mlp_ratio > 0, "a ratio above 0, e.g. 2.0"))
    for name, value, ok, expected in checks:
        if not ok:
            raise ValueError(f"model.{name}={value!r}: expected {expected}.")


def check_flags(**flags) -> None:
    """Raise ValueError, naming the ``model.*`` switch, for a value that is not true or false: a YAML or command-line
    typo such as ``maybe`` or ``1`` would otherwise be read as true."""
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ValueError(f"model.{name}={value!r}: expected true or false.")


def _drop_path_rates(depths: Sequence[int], rate: float) -> list:
    total = sum(depths)
    return [rate * i / (total - 1) if total > 1 else 0.0 for i in range(total)]


def _init_weights(module: nn.Module) -> None:
    """The released code's init: truncated normal (std 0.02) Linear weights, zero biases, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def check_image_batch(img) -> None:
    if not isinstance(img, torch.Tensor) or img.dim() != 4 or not img.is_floating_point():
        shape = tuple(img.shape) if isinstance(img, torch.Tensor) else type(img).__name__
        raise ValueError(
            f"the network takes a float image batch of shape (batch, channels, height, width) in [0, 1], got {shape}"
            + (f" of dtype {img.dtype}" if isinstance(img, torch.Tensor) else "") + "."
        )


class _SuperResolutionNet(nn.Module):
    """Shared skeleton; subclasses build ``self.groups`` and may override :meth:`deep_features`."""

    def __init__(self, in_chans: int, upscale: int, embed_dim: int, img_range: float):
        super().__init__()
        self.in_chans, self.upscale = in_chans, upscale
        self.shift = MeanShift(img_range=img_range) if in_chans == 3 else MeanShift((0.0,) * in_chans, img_range)
        self.conv_first = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.embed_norm = nn.LayerNorm(embed_dim)
        self.norm = nn.LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        self.upsampler = PixelShuffleUpsampler(embed_dim, upscale, in_chans)

    def deep_features(self, tokens: torch.Tensor, shallow: torch.Tensor) -> torch.Tensor:
        for group in self.groups:
            tokens = group(tokens)
        return tokens

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """img: (B, in_chans, H, W) in [0, 1], any H and W.  Returns (B, in_chans, scale*H, scale*W)."""
        check_image_batch(img)
        if img.shape[1] != self.in_chans:
            raise ValueError(f"the network expects {self.in_chans} input channels, got image batch {tuple(img.shape)}.")
        shallow = self.conv_first(self.shift.normalise(img))
        tokens = self.embed_norm(shallow.permute(0, 2, 3, 1))
        tokens = self.norm(self.deep_features(tokens, shallow))
        features = self.conv_after_body(tokens.permute(0, 3, 1, 2)) + shallow
        return self.shift.denormalise(self.upsampler(features))


def _linear_resize_weights(n_in: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in) weights of a 1D linear resize with align_corners=False: row i mixes the inputs output i reads."""
    eye = torch.eye(n_in, dtype=like.dtype, device=like.device)
    return F.interpolate(eye[None], size=n_out, mode="linear", align_corners=False)[0].T


def half_resolution(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2)), bilinear with align_corners=False as in the released code.

    Under ``torch.use_deterministic_algorithms(True)`` the same resize runs as two small matmuls with the same
    weights: bilinear resizing's CUDA backward adds with atomics, a matmul's backward does not."""
    size = ((x.shape[2] + 1) // 2, (x.shape[3] + 1) // 2)
    if not torch.are_deterministic_algorithms_enabled():
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    rows = _linear_resize_weights(x.shape[2], size[0], x)
    cols = _linear_resize_weights(x.shape[3], size[1], x)
    with torch.autocast(x.device.type, enabled=False):  # in x's precision, as F.interpolate under bf16 autocast
        return rows @ x @ cols.T


class MambaCSR(_SuperResolutionNet):
    """MambaCSR: RLMG groups with dual-interleaved scanning, plus position-aligned cross-scale scanning.

    Args:
        depths: blocks per group (6 groups of 6).
        scan_pattern: keyword arguments of :func:`block_directions` (windows, hierarchical and
            horizontal-to-vertical interleave).
        cab: parallel channel-attention branch in every RLMB.
        cross_scale: None/disabled, or a mapping with ``enabled``, ``mode`` ("aligned" | "sequential"),
            ``directions`` (released-code names), ``low_depth`` (blocks of the half-resolution group),
            ``after_group`` (index of the group the fusion follows), ``mlp_ratio`` and ``released_layout`` (put
            the column-first outputs back as the released code does on non-square maps; see
            :mod:`.released_layout`).
        scan_backend: "auto" | "torch" | "triton".
    """

    def __init__(self, in_chans: int = 3, upscale: int = 4, embed_dim: int = 180,
                 depths: Sequence[int] = (6, 6, 6, 6, 6, 6), d_state: int = 16, mlp_ratio: float = 2.0,
                 drop_path_rate: float = 0.1, img_range: float = 1.0, scan_pattern: Optional[dict] = None,
                 cab: bool = True, cross_scale: Optional[dict] = None, scan_backend: str = "auto"):
        check_sizes(upscale, embed_dim, depths, d_state, drop_path_rate, mlp_ratio)
        super().__init__(in_chans, upscale, embed_dim, img_range)
        pattern = dict(scan_pattern or {})
        cross_scale = dict(cross_scale or {})
        check_flags(cab=cab, **{f"scan_pattern.{k}": pattern[k] for k in ("hierarchical", "horizontal_to_vertical")
                                if k in pattern},
                    **{f"cross_scale.{k}": cross_scale[k] for k in ("enabled", "released_layout") if k in cross_scale})
        rates = _drop_path_rates(depths, drop_path_rate)

        def group(group_rates: Sequence[float]) -> RLMG:
            return RLMG([RLMB(embed_dim, block_directions(i, **pattern), d_state, mlp_ratio, rate, cab=cab,
                              backend=scan_backend) for i, rate in enumerate(group_rates)], embed_dim)

        self.groups = nn.ModuleList(group(rates[sum(depths[:g]):sum(depths[:g + 1])]) for g in range(len(depths)))
        self.cross_scale_after = None
        if cross_scale.get("enabled", False):
            mode = cross_scale.get("mode", "aligned")
            names = cross_scale.get("directions", ("w16", "w16_flip", "c_w16", "c_w16_flip"))
            self.cross_scale_after = int(cross_scale.get("after_group", 0))
            if not 0 <= self.cross_scale_after < len(depths):
                raise ValueError(f"cross_scale.after_group={self.cross_scale_after} is not a group index "
                                 f"(0..{len(depths) - 1}).")
            self.low_norm = nn.LayerNorm(embed_dim)
            # The released code gives the low-resolution group the drop-path rates of the first blocks.
            low_depth = int(cross_scale.get("low_depth", 6))
            self.low_group = group(rates[:low_depth] + [rates[-1]] * max(0, low_depth - len(rates)))
            self.cross_block = CrossScaleBlock(embed_dim, parse_directions(names, mode), d_state,
                                               float(cross_scale.get("mlp_ratio", 4.0)), backend=scan_backend,
                                               released_layout=cross_scale.get("released_layout", False))
        self.apply(_init_weights)

    def low_resolution_features(self, shallow: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) shallow features -> (B, ceil(H/2), ceil(W/2), C) half-resolution branch output."""
        low = half_resolution(shallow)
        return self.low_group(self.low_norm(low.permute(0, 2, 3, 1)))

    def deep_features(self, tokens: torch.Tensor, shallow: torch.Tensor) -> torch.Tensor:
        for index, group in enumerate(self.groups):
            tokens = group(tokens)
            if index == self.cross_scale_after:
                tokens = self.cross_block(tokens, self.low_resolution_features(shallow))
        return tokens


class MambaIR(_SuperResolutionNet):
    """The MambaIR baseline: residual state-space groups whose blocks scan four global directions."""

    def __init__(self, in_chans: int = 3, upscale: int = 4, embed_dim: int = 180,
                 depths: Sequence[int] = (6, 6, 6, 6, 6, 6), d_state: int = 16, drop_path_rate: float = 0.1,
                 img_range: float = 1.0,
                 directions: Sequence[str] = ("global", "c_global", "global_flip", "c_global_flip"),
                 cab_compress: int = 3, cab_squeeze: int = 30, scan_backend: str = "auto"):
        check_sizes(upscale, embed_dim, depths, d_state, drop_path_rate)
        super().__init__(in_chans, upscale, embed_dim, img_range)
        dirs = parse_directions(directions)
        rates = _drop_path_rates(depths, drop_path_rate)
        self.groups = nn.ModuleList(
            RLMG([MambaIRBlock(embed_dim, dirs, d_state, rates[sum(depths[:g]) + i], cab_compress, cab_squeeze,
                               backend=scan_backend) for i in range(d)], embed_dim)
            for g, d in enumerate(depths)
        )
        self.apply(_init_weights)
