"""Data: the JPEG degradation, image I/O, paired datasets."""

from .degrade import crop_to_scale, degrade, jpeg
from .resize import imresize

__all__ = ["degrade", "jpeg", "crop_to_scale", "imresize"]
