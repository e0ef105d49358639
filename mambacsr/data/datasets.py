"""Paired training and validation data.

Training draws are *stateless*: the patch for key ``(iteration * world_size + rank) * batch + slot`` depends only on
that key and the seed, so a resumed run (or one with more data-loader workers) sees exactly the patches an
uninterrupted run would.  On-the-fly LR images are seeded per image, so every epoch sees the same LR for an image,
as with a precomputed set.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch

from ..metrics import check_measurable
from .degrade import Codecs, Quality, check_scalable, crop_to_scale, degrade
from .io import by_stem, list_images, read_rgb

# Photographs shipped inside scikit-image's wheel (public domain or CC0), readable offline.
EMBEDDED_TRAIN = ("astronaut", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry")
EMBEDDED_VAL = ("chelsea",)


def embedded_images(names: Sequence[str]) -> List[np.ndarray]:
    import skimage.data

    return [np.ascontiguousarray(getattr(skimage.data, name)()[:, :, :3]) for name in names]


class ImageSource:
    """HR images from a folder (read on access) or from memory, with optional precomputed LR partners.

    The last ``cache_size`` (LR, HR) pairs are kept: an on-the-fly LR image is a pure function of (image, seed), so
    the cache changes nothing but the time spent re-reading and re-degrading an image.
    """

    def __init__(self, hr: Sequence, lr: Optional[Sequence] = None, names: Optional[Sequence[str]] = None,
                 cache_size: int = 64):
        self.hr, self.lr = list(hr), (list(lr) if lr is not None else None)
        self.names = list(names) if names is not None else [Path(h).stem if not isinstance(h, np.ndarray)
                                                            else f"image{i:03d}" for i, h in enumerate(self.hr)]
        if self.lr is not None and len(self.lr) != len(self.hr):
            raise ValueError(f"{len(self.lr)} LR images for {len(self.hr)} HR images; the folders must pair up.")
        self._cache: "OrderedDict[tuple, tuple]" = OrderedDict()
        self.cache_size = cache_size

    @classmethod
    def from_folders(cls, hr_folder, lr_folder=None, cache_size: int = 64) -> "ImageSource":
        hr = list_images(hr_folder)
        lr = None
        if lr_folder is not None:
            by_stem(hr)  # two HR images of one stem would take the same LR partner
            lr_by_stem = by_stem(list_images(lr_folder))
            # DIV2K names an LR image after its HR image and the scale: 0801.png and 0801x4.png.
            for stem, path in list(lr_by_stem.items()):
                named = re.fullmatch(r"(.+)x\d+", stem)
                if named:
                    lr_by_stem.setdefault(named.group(1), path)
            missing = [p.name for p in hr if p.stem not in lr_by_stem]
            if missing:
                raise FileNotFoundError(f"{len(missing)} HR images have no LR partner in {lr_folder} "
                                        f"(first: {missing[0]}); run `python -m mambacsr.prepare` or drop the LR path.")
            lr = [lr_by_stem[p.stem] for p in hr]
        return cls(hr, lr, cache_size=cache_size)

    @classmethod
    def embedded(cls, split: str) -> "ImageSource":
        names = EMBEDDED_TRAIN if split == "train" else EMBEDDED_VAL
        return cls(embedded_images(names), names=list(names))

    def __len__(self) -> int:
        return len(self.hr)

    def describe(self, index: int) -> str:
        """The image's file, or its name for an image given as an array: what an error message names."""
        hr = self.hr[index]
        return self.names[index] if isinstance(hr, np.ndarray) else str(hr)

    def pair(self, index: int, scale: int, quality: Quality, seed: int, codec: Codecs = "jpeg"):
        """(LR, HR) uint8 RGB arrays; HR cropped to a multiple of ``scale``.  The LR image is the given partner, or
        else the HR image degraded with ``codec`` at ``quality``."""
        key = (index, scale, str(quality), seed, str(codec))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        result = self._load_pair(index, scale, quality, seed, codec)
        self._cache[key] = result
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return result

    def _load_pair(self, index: int, scale: int, quality: Quality, seed: int, codec: Codecs):
        hr = self.hr[index]
        hr = hr if isinstance(hr, np.ndarray) else read_rgb(hr)
        check_scalable(hr.shape, scale, f"HR image {self.describe(index)}")
        hr = crop_to_scale(hr, scale)
        if self.lr is not None:
            lr = self.lr[index]
            lr = lr if isinstance(lr, np.ndarray) else read_rgb(lr)
            expected = (hr.shape[0] // scale, hr.shape[1] // scale)
            if lr.shape[:2] != expected:
                raise ValueError(f"LR image {self.lr[index]} is {lr.shape[0]}x{lr.shape[1]}, expected "
                                 f"{expected[0]}x{expected[1]} for its HR image at scale {scale}.")
        else:
            lr = degrade(hr, scale, quality, np.random.default_rng([seed, index]), codec)
        return lr, hr


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


class TrainPatches(torch.utils.data.Dataset):
    """key -> (lr (3, p, p), hr (3, scale*p, scale*p)) float tensors in [0, 1]: a random image, a random LR crop,
    random flips and 90-degree rotations, all drawn from ``default_rng([seed, key])``."""

    def __init__(self, source: ImageSource, scale: int, quality: Quality, patch: int, augment: bool, seed: int,
                 codec: Codecs = "jpeg"):
        self.source, self.scale, self.quality, self.codec = source, scale, quality, codec
        self.patch, self.augment, self.seed = patch, augment, seed

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: int):
        rng = np.random.default_rng([self.seed, 1, key])
        index = int(rng.integers(len(self.source)))
        lr, hr = self.source.pair(index, self.scale, self.quality, self.seed, self.codec)
        p, s = self.patch, self.scale
        if lr.shape[0] < p or lr.shape[1] < p:
            raise ValueError(f"training image {self.source.describe(index)} gives a {lr.shape[0]}x{lr.shape[1]} LR "
                             f"image, smaller than the {p}x{p} patch; lower data.patch_size or drop the image.")
        top, left = int(rng.integers(lr.shape[0] - p + 1)), int(rng.integers(lr.shape[1] - p + 1))
        lr = lr[top:top + p, left:left + p]
        hr = hr[top * s:(top + p) * s, left * s:(left + p) * s]
        if self.augment:
            hflip, vflip, transpose = rng.random(3) < 0.5
            for cond, fn in ((hflip, lambda a: a[:, ::-1]), (vflip, lambda a: a[::-1]),
                             (transpose, lambda a: a.transpose(1, 0, 2))):
                if cond:
                    lr, hr = fn(lr), fn(hr)
        return to_tensor(lr), to_tensor(hr)


class IterationBatches(torch.utils.data.Sampler):
    """Yields this rank's batch of keys for iterations ``start .. total - 1``."""

    def __init__(self, start: int, total: int, batch: int, rank: int = 0, world: int = 1):
        self.start, self.total, self.batch, self.rank, self.world = start, total, batch, rank, world

    def __iter__(self) -> Iterator[List[int]]:
        for it in range(self.start, self.total):
            first = (it * self.world + self.rank) * self.batch
            yield list(range(first, first + self.batch))

    def __len__(self) -> int:
        return max(0, self.total - self.start)


@dataclass
class ValImage:
    name: str
    lr: np.ndarray
    hr: np.ndarray


def validation_images(source: ImageSource, scale: int, quality: int, seed: int, limit: Optional[int] = None,
                      codec: str = "jpeg") -> List[ValImage]:
    """The first ``limit`` (LR, HR) pairs of ``source``, each checked to be large enough for the metrics at crop
    ``scale``, so that a run stops at its start, not at its first validation, on an image too small to score."""
    count = len(source) if limit is None else min(limit, len(source))
    images = [ValImage(source.names[i], *source.pair(i, scale, quality, seed, codec)) for i in range(count)]
    for i, item in enumerate(images):
        check_measurable(item.hr.shape, scale,
                         f"validation image {source.describe(i)}, cropped to a multiple of {scale},")
    return images
