"""Validation: PSNR/SSIM on Y (crop = scale) of the EMA model, and side-by-side images."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from ..data.datasets import ValImage, to_tensor
from ..data.io import write_image
from ..data.resize import imresize
from ..metrics import calculate_psnr, calculate_ssim
from ..tiling import restore_tiled


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) float in [0, 1] -> HxWx3 uint8 (rounded, as the metrics expect)."""
    return (t[0].detach().float().clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).cpu().numpy()


def restore(model, lr: np.ndarray, scale: int, device, tile: Optional[int], overlap: int = 16) -> np.ndarray:
    return to_uint8(restore_tiled(model, to_tensor(lr)[None].to(device), scale, tile, overlap))


@torch.no_grad()
def validate(model, images: List[ValImage], scale: int, device, tile: Optional[int] = None,
             save_dir: Optional[Path] = None, save_count: int = 0, tag: str = "") -> Dict[str, float]:
    was_training = model.training
    model.eval()
    scores = {"psnr": [], "ssim": [], "psnr_bicubic": [], "ssim_bicubic": []}
    for i, item in enumerate(images):
        out = restore(model, item.lr, scale, device, tile)
        bicubic = imresize(item.lr, item.hr.shape[0], item.hr.shape[1])
        scores["psnr"].append(calculate_psnr(out, item.hr, scale, True))
        scores["ssim"].append(calculate_ssim(out, item.hr, scale, True))
        scores["psnr_bicubic"].append(calculate_psnr(bicubic, item.hr, scale, True))
        scores["ssim_bicubic"].append(calculate_ssim(bicubic, item.hr, scale, True))
        if save_dir is not None and i < save_count:
            write_image(Path(save_dir) / f"{tag}{item.name}.png", np.concatenate([bicubic, out, item.hr], axis=1))
    model.train(was_training)
    return {k: float(np.mean(v)) for k, v in scores.items()}
