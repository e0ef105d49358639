"""Data: the compression degradation, image I/O, paired datasets."""

from .degrade import CODECS, compress, crop_to_scale, degrade
from .resize import imresize

__all__ = ["degrade", "compress", "CODECS", "crop_to_scale", "imresize"]
