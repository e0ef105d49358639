"""The compressed-SR degradation: crop, MATLAB-style bicubic x1/scale, then a codec through OpenCV (JPEG, the
paper's; WebP and AVIF for the other codecs the paper leaves open)."""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional, Sequence, Union

import cv2
import numpy as np

from .resize import imresize

Quality = Union[int, Sequence[int]]
Codecs = Union[str, Sequence[str]]
MIN_QUALITY, MAX_QUALITY = 1, 100  # every codec below: higher is better, 100 the best lossy setting


class Codec(NamedTuple):
    label: str       # as tables name it
    extension: str   # what cv2.imencode encodes by
    flag_name: str   # OpenCV's quality parameter, by name: builds without the codec lack it


CODECS = {
    "jpeg": Codec("JPEG", ".jpg", "IMWRITE_JPEG_QUALITY"),
    "webp": Codec("WebP", ".webp", "IMWRITE_WEBP_QUALITY"),
    "avif": Codec("AVIF", ".avif", "IMWRITE_AVIF_QUALITY"),  # AV1 intra frames
}


def crop_to_scale(hr: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom and right so both sides are multiples of ``scale``."""
    return hr[: hr.shape[0] - hr.shape[0] % scale, : hr.shape[1] - hr.shape[1] % scale]


def check_scalable(shape, scale: int, what: str = "the image") -> None:
    """Raises ValueError, naming ``what``, if an HR image of ``shape`` (H, W[, C]) is smaller than ``scale`` on a
    side: cropped to a multiple of it, nothing would be left to downscale."""
    if shape[0] < scale or shape[1] < scale:
        raise ValueError(f"{what} is {shape[0]}x{shape[1]}, smaller than the scale {scale}: it has no LR image; drop "
                         "it or use a larger image.")


def check_codec(codec, lists: bool = False):
    """``codec`` if it is one of CODECS (or, with ``lists``, a non-empty list of them) and this OpenCV build encodes
    it; raises ValueError saying what to pass."""
    names = list(codec) if lists and isinstance(codec, (list, tuple)) and codec else [codec]
    for name in names:
        if not isinstance(name, str) or name not in CODECS:
            raise ValueError(f"codec={codec!r}: pass one of {', '.join(CODECS)}"
                             f"{', or a list of them to draw from per image' if lists else ''}.")
        if not _opencv_encodes(name):
            raise ValueError(f"codec={name}: this OpenCV ({cv2.__version__}) cannot encode {CODECS[name].label}; "
                             "install an opencv-python-headless build with it, or pick another codec.")
    return codec


@functools.lru_cache(maxsize=None)
def _opencv_encodes(codec: str) -> bool:
    try:
        compress(np.zeros((16, 16, 3), np.uint8), 50, codec)
    except (RuntimeError, cv2.error):
        return False
    return True


def compress(rgb: np.ndarray, quality: int, codec: str = "jpeg") -> np.ndarray:
    """Encode and decode with OpenCV's ``codec`` at ``quality`` (on BGR, as the paper's JPEG data was made)."""
    spec = CODECS[codec]
    flag = getattr(cv2, spec.flag_name, None)
    ok, buf = (False, None) if flag is None else cv2.imencode(
        spec.extension, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [flag, int(quality)])
    if not ok:
        raise RuntimeError(f"OpenCV could not {spec.label}-encode the image.")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def pick_quality(quality: Quality, rng: Optional[np.random.Generator] = None) -> int:
    if isinstance(quality, (int, np.integer)):
        values = [int(quality)]
    else:
        values = [int(q) for q in quality]
    if not values or any(not MIN_QUALITY <= q <= MAX_QUALITY for q in values):
        raise ValueError(f"quality must be an integer in {MIN_QUALITY}..{MAX_QUALITY} or a non-empty list of them, "
                         f"got {quality!r}.")
    return int(_draw(values, rng))


def _draw(values: list, rng: Optional[np.random.Generator]):
    """One of ``values``, drawn with ``rng``; a single value draws nothing, so it leaves ``rng`` where it was."""
    if len(values) == 1:
        return values[0]
    return (rng or np.random.default_rng()).choice(values)


def degrade(hr: np.ndarray, scale: int = 4, quality: Quality = 10, rng: Optional[np.random.Generator] = None,
            codec: Codecs = "jpeg") -> np.ndarray:
    """HxWx3 uint8 RGB high-resolution image -> (H//scale)x(W//scale)x3 uint8 RGB compressed low-resolution image.

    ``quality`` is one quality or a list to draw from with ``rng``; ``codec`` one key of CODECS or a list to draw
    from after the quality (one codec draws nothing, so a single codec's images do not depend on it).
    """
    if not isinstance(hr, np.ndarray) or hr.dtype != np.uint8 or hr.ndim != 3 or hr.shape[2] != 3:
        shape = getattr(hr, "shape", None)
        raise ValueError(f"degrade takes an HxWx3 uint8 RGB array, got {type(hr).__name__} {shape} "
                         f"{getattr(hr, 'dtype', '')}.")
    check_scalable(hr.shape, scale)
    check_codec(codec, lists=True)
    q = pick_quality(quality, rng)
    if not isinstance(codec, str):
        codec = str(_draw(list(codec), rng))
    hr = crop_to_scale(hr, scale)
    lr = imresize(hr, hr.shape[0] // scale, hr.shape[1] // scale)
    return compress(lr, q, codec)
