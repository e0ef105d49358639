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


# SSIM's Gaussian window (BasicSR's); SSIM is averaged over the window's valid positions only.
SSIM_WINDOW = 11


def check_measurable(shape, crop_border: int, what: str = "the image", window: int = SSIM_WINDOW) -> None:
    """Raises ValueError, naming ``what``, unless an image of ``shape`` (H, W[, C]) keeps ``window`` x ``window``
    pixels once ``crop_border`` pixels are cut from each side: SSIM's window (the default), where both metrics are
    defined, or 1 for PSNR alone."""
    need = 2 * crop_border + window
    if shape[0] < need or shape[1] < need:
        why = f", SSIM's {window}x{window} window inside" if window > 1 else ""
        raise ValueError(f"{what} is {shape[0]}x{shape[1]}, too small to score: with {crop_border} pixels cut from "
                         f"each side it needs at least {need}x{need}{why}; drop it or use a larger image.")


def _prepare(img: np.ndarray, ref: np.ndarray, crop_border: int, test_y_channel: bool, window: int):
    if img.shape != ref.shape:
        raise ValueError(f"image shapes differ: {img.shape} vs {ref.shape}.")
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"metrics take HxWx3 RGB arrays, got shape {img.shape}.")
    check_measurable(img.shape, crop_border, window=window)
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border]
        ref = ref[crop_border:-crop_border, crop_border:-crop_border]
    if test_y_channel:
        return rgb_to_y(img)[..., None], rgb_to_y(ref)[..., None]
    return img.astype(np.float64), ref.astype(np.float64)


def calculate_psnr(img: np.ndarray, ref: np.ndarray, crop_border: int, test_y_channel: bool = False) -> float:
    img, ref = _prepare(img, ref, crop_border, test_y_channel, window=1)
    mse = np.mean((img - ref) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(255.0 ** 2 / mse))


def _ssim_channel(img: np.ndarray, ref: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    kernel = cv2.getGaussianKernel(SSIM_WINDOW, 1.5)
    window = np.outer(kernel, kernel.transpose())
    r = SSIM_WINDOW // 2
    valid = (slice(r, -r), slice(r, -r))  # positions where the whole window lies inside the image

    def filtered(x):
        return cv2.filter2D(x, -1, window)[valid]

    mu1, mu2 = filtered(img), filtered(ref)
    mu1_sq, mu2_sq, mu1_mu2 = mu1 ** 2, mu2 ** 2, mu1 * mu2
    sigma1_sq = filtered(img ** 2) - mu1_sq
    sigma2_sq = filtered(ref ** 2) - mu2_sq
    sigma12 = filtered(img * ref) - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + c1) * (2 * sigma12 + c2)) / ((mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2))
    return float(ssim_map.mean())


def calculate_ssim(img: np.ndarray, ref: np.ndarray, crop_border: int, test_y_channel: bool = False) -> float:
    img, ref = _prepare(img, ref, crop_border, test_y_channel, window=SSIM_WINDOW)
    return float(np.mean([_ssim_channel(img[..., c], ref[..., c]) for c in range(img.shape[2])]))
