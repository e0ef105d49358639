"""Reading and writing images with clear errors; RGB everywhere."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..utils.atomic import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ImageError(ValueError):
    """An image file that cannot be used; the message names the file and what to do."""


def list_images(folder) -> list:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist (or is not a folder).")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir())
        hint = ""
        if subfolders:  # e.g. DF2K's two sets copied in as folders
            shown = ", ".join(subfolders[:3]) + (", ..." if len(subfolders) > 3 else "")
            hint = (f"; images are read from the folder itself, not from its subfolders ({shown}): point at one, or "
                    "put their images in one folder")
        raise FileNotFoundError(f"image folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}){hint}.")
    return files


def by_stem(files) -> dict:
    """``{stem: path}`` of ``files``, which the package's tools key by their stem (a restored or degraded image is
    written as ``<stem>.png``; LR images pair with HR ones by stem).  Raises ValueError, naming both files, where two
    share a stem (``photo.jpg`` and ``photo.png``), which would otherwise write one output over the other or pair an
    image with another's partner."""
    found = {}
    for path in files:
        path = Path(path)
        other = found.setdefault(path.stem, path)
        if other != path:
            raise ValueError(f"{other.name} and {path.name} in {path.parent} share the name {path.stem!r}, by which "
                             "outputs are named and LR images paired: rename one, or move it to another folder.")
    return found


def read_image_any(path) -> np.ndarray:
    """The file's image: HxW (gray), HxWx3 (RGB) or HxWx4 (RGBA), uint8 or uint16, turned upright by its EXIF
    orientation as image viewers show it (a camera's or phone's photo), except an image with an alpha channel."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file.")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: the file is empty; re-copy or remove it.")
    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is not None and not (img.ndim == 3 and img.shape[2] == 4):
        # IMREAD_UNCHANGED, which alone keeps alpha, ignores the EXIF orientation; these flags apply it and keep gray
        # and 16 bits, so that a photo taken sideways is restored upright.
        img = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if img is None:
        raise ImageError(f"{path}: not a readable image (truncated or not an image format OpenCV reads).")
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    elif img.ndim != 2:
        raise ImageError(f"{path}: unsupported channel layout {img.shape}.")
    if img.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"{path}: unsupported sample type {img.dtype}; use 8- or 16-bit images.")
    return img


def read_rgb(path) -> np.ndarray:
    """HxWx3 uint8 RGB (gray is replicated, alpha dropped, 16-bit rounded to 8-bit)."""
    img = read_image_any(path)
    if img.dtype == np.uint16:
        img = np.round(img / 257.0).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3])


def write_image(path, img: np.ndarray) -> None:
    """Write atomically (a crash never leaves a half-written file); RGB(A) or gray, uint8 or uint16."""
    path = Path(path)
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(path.suffix or ".png", img)
    if not ok:
        raise ImageError(f"{path}: OpenCV could not encode the image as {path.suffix}.")
    with atomic_path(path) as tmp:
        buf.tofile(str(tmp))
