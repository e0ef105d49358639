"""Prepare training and test data on all cores, resumably.

    python -m mambacsr.prepare subimages HR_DIR OUT_DIR [size=480] [step=240]   # DF2K sub-images, as BasicSR
    python -m mambacsr.prepare lr HR_DIR OUT_DIR [quality=10] [scale=4] [seed=0] [codec=jpeg]   # LR partners

Each output is written atomically and skipped when it already exists, so an interrupted run continues where it
stopped without leaving half-written files.  LR images are seeded per file (by its position in the sorted folder),
so they match what the on-the-fly datasets produce; ``codec`` is jpeg (the paper's), webp or avif, stored as PNG.

Folder layouts (see README "Data"): DF2K = DIV2K_train_HR (0001-0800) and Flickr2K_HR copied into one HR folder;
benchmarks = Set5, Set14, Manga109, Urban100, DIV2K (DIV2K_valid_HR) side by side.
"""

from __future__ import annotations

import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
from tqdm import tqdm

from .data.degrade import MAX_QUALITY, MIN_QUALITY, check_codec, check_scalable, degrade
from .data.io import ImageError, by_stem, list_images, read_rgb, write_image
from .utils.atomic import check_writable
from .utils.cli import whole_number_option


def subimage_boxes(height: int, width: int, size: int, step: int):
    """Top-left corners of ``size`` crops every ``step`` pixels, the last flush with the border (BasicSR's rule); a
    side shorter than ``size`` is kept whole (BasicSR fails on it)."""
    def starts(extent):
        s = list(range(0, max(extent - size, 0) + 1, step))
        if extent > size and s[-1] != extent - size:
            s.append(extent - size)
        return s
    return [(y, x) for y in starts(height) for x in starts(width)]


# Workers return a file they cannot read as its error, and the others go on; an output they cannot write (a full
# disk, a read-only folder) raises OSError, which stops the run, since every later output would fail the same way.
def _subimages(path: Path, out_dir: Path, size: int, step: int) -> Optional[str]:
    try:
        img = read_rgb(path)
    except (ImageError, OSError) as err:
        return str(err)
    for i, (y, x) in enumerate(subimage_boxes(img.shape[0], img.shape[1], size, step), start=1):
        target = out_dir / f"{path.stem}_s{i:03d}.png"
        if not target.exists():
            write_image(target, np.ascontiguousarray(img[y:y + size, x:x + size]))
    return None


def _lr(job, out_dir: Path, scale: int, quality: int, seed: int, codec: str) -> Optional[str]:
    index, path = job
    target = out_dir / f"{path.stem}.png"
    if target.exists():
        return None
    try:
        hr = read_rgb(path)
        check_scalable(hr.shape, scale, str(path))
    except (ImageError, OSError, ValueError) as err:
        return str(err)
    write_image(target, degrade(hr, scale, quality, np.random.default_rng([seed, index]), codec))
    return None


def _ignore_sigint() -> None:
    # Ctrl-C reaches the workers too: they finish the file in hand, and the main process stops handing out more.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run(jobs, fn, desc: str) -> List[str]:
    workers = max(1, os.cpu_count() or 1)
    with ProcessPoolExecutor(workers, initializer=_ignore_sigint) as pool:
        try:
            return [e for e in tqdm(pool.map(fn, jobs, chunksize=4), total=len(jobs), desc=desc) if e]
        except (OSError, KeyboardInterrupt):
            pool.shutdown(cancel_futures=True)
            raise


def _whole(low: int, high: Optional[int] = None) -> Callable[[str, str], int]:
    return lambda key, value: whole_number_option(key, value, low, high)


def _codec(key: str, value: str) -> str:
    return check_codec(value)


# Each mode's options: (default, parser of key and value).
OPTIONS = {"subimages": {"size": (480, _whole(1)), "step": (240, _whole(1))},
           "lr": {"quality": (10, _whole(MIN_QUALITY, MAX_QUALITY)), "scale": (4, _whole(1)), "seed": (0, _whole(0)),
                  "codec": ("jpeg", _codec)}}


def parse_options(mode: str, args: List[str]) -> dict:
    """The ``key=value`` options of ``mode``, defaults filled in; raises ValueError for an unknown key or a value out
    of its range, saying what to pass."""
    spec = OPTIONS[mode]
    opts = {key: default for key, (default, _) in spec.items()}
    for item in args:
        key, _, value = item.partition("=")
        if key not in spec:
            raise ValueError(f"{item}: {mode} takes {', '.join(f'{k}=' for k in spec)} (see python -m "
                             "mambacsr.prepare).")
        opts[key] = spec[key][1](key, value)
    return opts


def main(argv: Optional[List[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    positional = [a for a in args if "=" not in a]
    if len(positional) != 3 or positional[0] not in OPTIONS:
        print(__doc__, file=sys.stderr)
        return 2
    mode, src, dst = positional[0], Path(positional[1]), Path(positional[2])
    try:
        opts = parse_options(mode, [a for a in args if "=" in a])
        files = list_images(src)
        by_stem(files)  # each output is named by its input's stem
        if dst.resolve() == src.resolve():
            raise ValueError(f"{dst} is the input folder: its outputs would be skipped as made (a PNG input has its "
                             "output's name) or taken for inputs by the next run; pick another output folder.")
        check_writable(dst)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        print(f"error: cannot write in {dst} ({err.strerror or err}); pick another output folder.", file=sys.stderr)
        return 1
    try:
        if mode == "subimages":
            errors = run(files, partial(_subimages, out_dir=dst, **opts), "sub-images")
        else:
            errors = run(list(enumerate(files)), partial(_lr, out_dir=dst, **opts), "LR images")
    except OSError as err:
        print(f"error: could not write {err.filename or 'in ' + str(dst)} ({err.strerror or err}); each file is "
              "written whole, so those there are complete: free space, then run the same command to make the rest.",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted; each file in {dst} is written whole, so those there are complete: run the same command "
              "to make the rest.", file=sys.stderr)
        return 130
    for err in errors:
        print(f"error: {err}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
