"""The compressed-SR degradation: crop, MATLAB-style bicubic x1/scale, JPEG through OpenCV."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import cv2
import numpy as np

from .resize import imresize

Quality = Union[int, Sequence[int]]
MIN_QUALITY, MAX_QUALITY = 1, 100  # OpenCV's JPEG qualities


def crop_to_scale(hr: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom and right so both sides are multiples of ``scale``."""
    return hr[: hr.shape[0] - hr.shape[0] % scale, : hr.shape[1] - hr.shape[1] % scale]


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode with OpenCV's JPEG at ``quality`` (on BGR, as the paper's data was made)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV could not JPEG-encode the image.")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def pick_quality(quality: Quality, rng: Optional[np.random.Generator] = None) -> int:
    if isinstance(quality, (int, np.integer)):
        values = [int(quality)]
    else:
        values = [int(q) for q in quality]
    if not values or any(not MIN_QUALITY <= q <= MAX_QUALITY for q in values):
        raise ValueError(f"JPEG quality must be an integer in 1..100 or a non-empty list of them, got {quality!r}.")
    if len(values) == 1:
        return values[0]
    return int((rng or np.random.default_rng()).choice(values))


def degrade(hr: np.ndarray, scale: int = 4, quality: Quality = 10, rng: Optional[np.random.Generator] = None
            ) -> np.ndarray:
    """HxWx3 uint8 RGB high-resolution image -> (H//scale)x(W//scale)x3 uint8 RGB compressed low-resolution image.

    ``quality`` is one JPEG quality or a list to draw from with ``rng``.
    """
    if not isinstance(hr, np.ndarray) or hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3:
        shape = getattr(hr, "shape", None)
        raise ValueError(f"degrade takes an HxWx3 uint8 RGB array, got {type(hr).__name__} {shape} "
                         f"{getattr(hr, 'dtype', '')}.")
    if hr.shape[0] < scale or hr.shape[1] < scale:
        raise ValueError(f"the image ({hr.shape[0]}x{hr.shape[1]}) is smaller than the scale {scale}.")
    q = pick_quality(quality, rng)
    hr = crop_to_scale(hr, scale)
    lr = imresize(hr, hr.shape[0] // scale, hr.shape[1] // scale)
    return jpeg(lr, q)
