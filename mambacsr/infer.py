"""Restore your own images: ``python -m mambacsr.infer +experiment=dis_w8 checkpoint=W input=IN output=OUT``.

``input`` is an image file or a folder; restored x4 PNGs go to the ``output`` folder with the input's file stem (for one
input file, ``output`` may instead name the image to write, e.g. ``output=photo_x4.png``).  ``output`` is never the
input folder, nor a file that is an input: both are refused, ``overwrite=true`` or not.
Files already restored there are skipped (so an interrupted run resumes); ``overwrite=true`` redoes them.  A folder
holding two images of one stem (``photo.jpg`` and ``photo.png``, which would both be restored to ``photo.png``) is
refused before anything is written.
Other options: ``tile=auto`` (LR tile side: 256 on a GPU, 128 on the CPU, whose memory a 256-pixel tile of the
paper's network takes several GB of; ``null`` = whole image), ``overlap=16``, ``overwrite=false``,
``ensemble=false`` (``true``: the x8 self-ensemble, the average over the input's flips and rotations; 8x the time),
``device=auto`` (the first CUDA GPU where there is one, else the CPU; or ``cpu``, ``cuda:1``, ...),
``protocol=tiles`` (``released``: restore as the authors' test code did, for outputs that match theirs, e.g. as a
baseline in a comparison; see ``released_protocol.py``; ``tile`` and ``overlap`` are then unused).

Inputs other than 8-bit RGB, documented behaviour:
  - grayscale: replicated to RGB, restored, converted back to one channel (ITU-R 601 luma), saved gray;
  - RGBA: colour restored by the network, alpha upscaled with MATLAB-style bicubic, saved as RGBA;
  - 16-bit: run in float from the full 16-bit values and saved as 16-bit PNG.
An unreadable, empty or truncated file is reported by name and skipped; the exit code is then 1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np
import torch
from tqdm import tqdm

from .checkpoints import load_weights
from .config import build_model, load_config
from .data.io import IMAGE_SUFFIXES, ImageError, by_stem, list_images, read_image_any, write_image
from .data.resize import imresize
from .models import SelfEnsemble
from .released_protocol import check_protocol, network_as_released, restore_by_protocol
from .tiling import out_of_memory_advice
from .utils.cli import asks_for_help, parse_device, parse_flag, parse_overlap, parse_tile, split_options


# tile=auto: the LR tile side per device.  On the CPU a 128-pixel tile is no slower per pixel and takes about a
# third of a 256-pixel tile's memory (0.7-1.2 against 3.0 GB; README, "Train, evaluate, restore").
AUTO_TILE = {"cuda": 256, "cpu": 128}


def restore_array(model, img: np.ndarray, scale: int, device, tile: Optional[int], overlap: int,
                  protocol: str = "tiles") -> np.ndarray:
    """Any image read by :func:`read_image_any` -> the restored image in the same layout and bit depth, by
    ``protocol`` (:func:`released_protocol.restore_by_protocol`).

    img: (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA, uint8 or uint16.  Returns (scale*H, scale*W[, channels]) of
    img's dtype.  Raises ValueError for another dtype or layout: a float image would be read as 8-bit values and
    come back dark without a word.
    """
    if not isinstance(img, np.ndarray) or img.dtype not in (np.uint8, np.uint16):
        kind = img.dtype if isinstance(img, np.ndarray) else type(img).__name__
        raise ValueError(f"restore_array takes uint8 or uint16 images, as read_image_any returns them, got {kind}; "
                         "convert a float image in [0, 1] with (img * 255).round().astype(np.uint8).")
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (3, 4))):
        raise ValueError(f"restore_array takes (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA images, got shape "
                         f"{img.shape}.")
    peak = 65535.0 if img.dtype == np.uint16 else 255.0
    alpha = None
    if img.ndim == 2:
        rgb = np.repeat(img[:, :, None], 3, axis=2)
    elif img.shape[2] == 4:
        rgb, alpha = img[:, :, :3], img[:, :, 3]
    else:
        rgb = img
    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)).astype(np.float32) / peak)[None].to(device)
    y = restore_by_protocol(model, x, scale, protocol, tile, overlap)[0].clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    out = np.round(y * peak).astype(img.dtype)
    if img.ndim == 2:
        return cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
    if alpha is not None:
        big_alpha = np.clip(np.round(imresize(alpha.astype(np.float64), out.shape[0], out.shape[1])), 0, peak)
        return np.dstack([out, big_alpha.astype(img.dtype)])
    return out


def collect_inputs(path) -> List[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = list_images(path)
        by_stem(files)  # each output is named by its input's stem
        return files
    raise FileNotFoundError(f"input {path} does not exist.")


def output_targets(inputs: List[Path], single_file: bool, output: Path) -> List[Path]:
    """Where each input is restored to: ``output/<stem>.png``, or, for one input file and an ``output`` named like an
    image (``photo_x4.png``), that file.  Raises ValueError, saying what to pass, for an image name given a folder of
    inputs, an ``output`` that is an existing file otherwise, the input folder itself (the next run would take the
    restored images for inputs), or a target that is its own input (``overwrite=true`` would replace it)."""
    if output.suffix.lower() in IMAGE_SUFFIXES and not output.is_dir():
        if not single_file:
            raise ValueError(f"output={output} names an image, but input is a folder: pass a folder for the restored "
                             "images.")
        targets = [output]
    elif output.exists() and not output.is_dir():
        raise ValueError(f"output={output} is a file: pass a folder for the restored images, or, for one input file, "
                         "the image to write (e.g. output=photo_x4.png).")
    elif not single_file and inputs and output.resolve() == inputs[0].parent.resolve():
        raise ValueError(f"output={output} is the input folder: a later run would take the restored images for "
                         f"inputs, and PNG inputs would be overwritten; pick another folder (e.g. output="
                         f"{output.resolve().name}_x4).")
    else:
        targets = [output / f"{path.stem}.png" for path in inputs]
    for path, target in zip(inputs, targets):
        if target.resolve() == path.resolve():
            raise ValueError(f"output={output} would overwrite the input {path} with its restoration: pick another "
                             f"image name or folder (e.g. output={path.with_name(path.stem + '_x4.png')}).")
    return targets


def main(argv: Optional[List[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if asks_for_help(args, __doc__):
        return 0
    opts, overrides = split_options(args, {"checkpoint": None, "input": None, "output": None, "tile": "auto",
                                           "overlap": "16", "overwrite": "false", "ensemble": "false",
                                           "device": "auto", "protocol": "tiles"})
    try:
        for key in ("checkpoint", "input", "output"):
            if opts[key] is None:
                raise ValueError(f"pass {key}=... (python -m mambacsr.infer --help).")
        inputs = collect_inputs(opts["input"])
        output = Path(opts["output"])
        targets = output_targets(inputs, Path(opts["input"]).is_file(), output)
        overwrite = parse_flag("overwrite", opts["overwrite"])
        ensemble = parse_flag("ensemble", opts["ensemble"])
        cfg = load_config(overrides, tool_options=list(opts))
        device = parse_device(opts["device"])
        tile = parse_tile(opts["tile"], auto=AUTO_TILE[device.type])
        overlap = parse_overlap(opts["overlap"], tile)
        if check_protocol(opts["protocol"]) == "released":
            network_as_released(cfg, overrides)
        model = load_weights(build_model(cfg), opts["checkpoint"]).to(device).eval()
        if ensemble:
            model = SelfEnsemble(model)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    failures, restored, skipped = [], 0, 0
    for path, target in tqdm(list(zip(inputs, targets)), desc="restoring", disable=len(inputs) == 1):
        if target.exists() and not overwrite:
            skipped += 1
            continue
        try:
            img = read_image_any(path)
            write_image(target, restore_array(model, img, cfg.data.scale, device, tile, overlap, opts["protocol"]))
            restored += 1
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()  # the next image starts without this one's cached blocks
            failures.append(f"{path}: {out_of_memory_advice(tile)}")
            tqdm.write(f"error: {failures[-1]}", file=sys.stderr)
        except (ImageError, RuntimeError) as err:
            failures.append(str(err))
            tqdm.write(f"error: {err}", file=sys.stderr)
        except OSError as err:  # the output cannot be written (a full disk, no permission): nor can the next one
            print(f"error: could not write {target} ({err.strerror or err}); each image is written whole, so those "
                  f"restored so far are complete: free space or pick another output=, then run the same command to "
                  f"restore the rest.", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"interrupted after {restored} image(s); each is written whole, so those in {output} are complete: "
                  "run the same command to restore the rest.", file=sys.stderr)
            return 130
    done = f"restored {restored} image(s) to {output}" + (f", {skipped} already there" if skipped else "")
    if failures:
        print(f"{len(failures)} of {len(inputs)} image(s) failed; {done}.", file=sys.stderr)
        return 1
    print(done)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
