"""PSNR and SSIM with BasicSR's definitions, on RGB uint8 HxWx3 arrays (BasicSR's own functions take BGR).

    calculate_psnr(img, ref, crop_border, test_y_channel=False)
    calculate_ssim(img, ref, crop_border, test_y_channel=False)

``test_y_channel`` evaluates on Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 (values in 0..255, float).
SSIM: 11x11 Gaussian window (sigma 1.5), valid region only, c1 = (0.01*255)^2, c2 = (0.03*255)^2, averaged over
channels.
"""

from __future__ import annotations

import cv2
import numpy as np


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """HxWx3 RGB in 0..255 (any dtype) -> HxW float64 Y in 16..235."""
    img = img.astype(np.float64)
    return 16.0 + (65.481 * img[..., 0] + 128.553 * img[..., 1] + 24.966 * img[..., 2]) / 255.0


def _prepare(img: np.ndarray, ref: np.ndarray, crop_border: int, test_y_channel: bool):
    if img.shape != ref.shape:
        raise ValueError(f"image shapes differ: {img.shape} vs {ref.shape}.")
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"metrics take HxWx3 RGB arrays, got shape {img.shape}.")
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border]
        ref = ref[crop_border:-crop_border, crop_border:-crop_border]
    if test_y_channel:
        return rgb_to_y(img)[..., None], rgb_to_y(ref)[..., None]
    return img.astype(np.float64), ref.astype(np.float64)


def calculate_psnr(img: np.ndarray, ref: np.ndarray, crop_border: int, test_y_channel: bool = False) -> float:
    img, ref = _prepare(img, ref, crop_border, test_y_channel)
    mse = np.mean((img - ref) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(255.0 ** 2 / mse))


def _ssim_channel(img: np.ndarray, ref: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    kernel = cv2.getGaussianKernel(11, 1.5)
    window = np.outer(kernel, kernel.transpose())
    mu1 = cv2.filter2D(img, -1, window)[5:-5, 5:-5]
    mu2 = cv2.filter2D(ref, -1, window)[5:-5, 5:-5]
    mu1_sq, mu2_sq, mu1_mu2 = mu1 ** 2, mu2 ** 2, mu1 * mu2
    sigma1_sq = cv2.filter2D(img ** 2, -1, window)[5:-5, 5:-5] - mu1_sq
    sigma2_sq = cv2.filter2D(ref ** 2, -1, window)[5:-5, 5:-5] - mu2_sq
    sigma12 = cv2.filter2D(img * ref, -1, window)[5:-5, 5:-5] - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + c1) * (2 * sigma12 + c2)) / ((mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2))
    return float(ssim_map.mean())


def calculate_ssim(img: np.ndarray, ref: np.ndarray, crop_border: int, test_y_channel: bool = False) -> float:
    img, ref = _prepare(img, ref, crop_border, test_y_channel)
    return float(np.mean([_ssim_channel(img[..., c], ref[..., c]) for c in range(img.shape[2])]))
