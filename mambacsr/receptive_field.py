r"""Effective receptive field of a network, as in the paper's Fig. 4 (sequential, hierarchical interleaved and
local-window scans, on Manga109):

    python -m mambacsr.receptive_field +experiment=mambair checkpoint=W data_root=datasets/benchmarks/Manga109 \
        [images=20] [size=128] [quality=10] [out=runs/mambair/receptive_field] [device=auto]

Fig. 4's three networks are the experiments ``mambair`` (sequential scans), ``ablation_hierarchical`` (hierarchical
interleaved) and ``ablation_none`` (local windows only). ``checkpoint`` is optional: without it the network is
taken as initialised, the receptive field of its architecture alone.

For each of the first ``images`` images under ``data_root`` (a folder of HR images, or a benchmark folder holding
them in ``HR``): the LR input made as ``evaluate`` makes it (JPEG at ``quality``, seeded per image), its central
``size`` x ``size`` crop, and the gradient, with respect to that crop, of the output's central pixel (the sum of its
three channels). The map is the mean over the images of the gradients' absolute values, summed over the channels
(Luo et al.'s effective receptive field; RepLKNet's figures keep only the positive part).

Writes ``<out>.npy`` (the size x size map, float64), ``<out>.png`` (the map on a log scale over three decades below
its peak, in OpenCV's viridis colours, enlarged to at least 512 pixels) and ``<out>.json``, and prints, for 20%,
30%, 50% and 99% of the map's total, the side of the smallest square around the centre that holds it and that
square's share of the crop (RepLKNet's measure): a wider field needs a larger square for the same share.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import cv2
import numpy as np
import torch

from .checkpoints import load_weights
from .config import build_model, load_config
from .data.datasets import ImageSource, to_tensor
from .data.degrade import MAX_QUALITY, MIN_QUALITY
from .data.io import ImageError, write_image
from .evaluate import image_folder
from .utils.atomic import atomic_path
from .utils.cli import asks_for_help, parse_device, output_stem, split_options, whole_number_option

SHARES = (0.2, 0.3, 0.5, 0.99)
DECADES = 3  # the picture's log scale


def input_gradient(model: torch.nn.Module, crop: torch.Tensor) -> torch.Tensor:
    """crop: (1, C, h, w) LR input -> (h, w) absolute gradient of the output's central pixel, summed over channels."""
    crop = crop.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = model(crop)
        centre = out[:, :, out.shape[2] // 2, out.shape[3] // 2].sum()
        (grad,) = torch.autograd.grad(centre, crop)
    return grad.abs().sum(dim=(0, 1)).double().cpu()


def effective_receptive_field(model: torch.nn.Module, crops: Iterable[torch.Tensor]) -> np.ndarray:
    """Mean of :func:`input_gradient` over ``crops`` (each (1, C, h, w), all one size) -> (h, w) float64."""
    total, count = None, 0
    for crop in crops:
        grad = input_gradient(model, crop)
        total = grad if total is None else total + grad
        count += 1
    if count == 0:
        raise ValueError("no input to measure the receptive field on.")
    return (total / count).numpy()


def square_shares(field: np.ndarray, shares: Iterable[float] = SHARES) -> Dict[float, Dict[str, float]]:
    """For each share of ``field``'s total: the side of the smallest square centred on the central pixel that holds
    it (cut at the map's edges) and its area as a share of the map's."""
    h, w = field.shape
    cy, cx = h // 2, w // 2
    total = field.sum()
    result = {}
    for share in shares:
        for radius in range(max(h, w)):
            square = field[max(0, cy - radius):cy + radius + 1, max(0, cx - radius):cx + radius + 1]
            if square.sum() >= share * total:
                break
        result[share] = {"side": 2 * radius + 1, "area": square.size / field.size}
    return result


def picture(field: np.ndarray, decades: int = DECADES) -> np.ndarray:
    """The map on a log scale over ``decades`` below its peak, as a BGR uint8 heat map of at least 512 pixels."""
    peak = field.max()
    scaled = np.log10(np.maximum(field / peak, 10.0 ** -decades)) / decades + 1 if peak > 0 else np.zeros_like(field)
    colours = cv2.applyColorMap(np.round(scaled * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    zoom = max(1, -(-512 // max(field.shape)))
    return cv2.resize(colours, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)


def central_crops(source: ImageSource, count: int, size: int, scale: int, quality: int, device) -> List[torch.Tensor]:
    crops, small = [], []
    for index in range(len(source)):
        if len(crops) == count:
            break
        lr, _ = source.pair(index, scale, quality, seed=0)
        h, w = lr.shape[:2]
        if h < size or w < size:
            small.append(source.names[index])
            continue
        top, left = (h - size) // 2, (w - size) // 2
        crops.append(to_tensor(lr[top:top + size, left:left + size])[None].to(device))
    if small:
        print(f"note: {len(small)} image(s) smaller than size={size} LR pixels skipped (first: {small[0]})",
              file=sys.stderr)
    if not crops:
        raise ValueError(f"no image is at least {size}x{size} LR pixels; pass a smaller size=.")
    return crops


def main(argv: Optional[List[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if asks_for_help(args, __doc__):
        return 0
    opts, overrides = split_options(args, {"checkpoint": None, "data_root": None, "images": "20", "size": "128",
                                           "quality": "10", "out": None, "device": "auto"})
    try:
        if opts["data_root"] is None:
            raise ValueError("pass data_root=FOLDER, a folder of HR images (the paper's figure: Manga109).")
        folder = image_folder(Path(opts["data_root"]))
        if folder is None:
            raise FileNotFoundError(f"data_root={opts['data_root']} holds no images (nor an HR subfolder with them).")
        images = whole_number_option("images", opts["images"], 1)
        size = whole_number_option("size", opts["size"], 1)
        quality = whole_number_option("quality", opts["quality"], MIN_QUALITY, MAX_QUALITY)
        cfg = load_config(overrides, tool_options=list(opts))
        out = output_stem(opts["out"], Path(cfg.run_dir) / "receptive_field")
        device = parse_device(opts["device"])
        model = build_model(cfg)
        if opts["checkpoint"] is None:
            print("note: no checkpoint=, so the network as initialised: its architecture's receptive field",
                  file=sys.stderr)
        else:
            model = load_weights(model, opts["checkpoint"])
        model = model.to(device).eval()
        crops = central_crops(ImageSource.from_folders(folder, cache_size=0), images, size, cfg.data.scale, quality,
                              device)
        field = effective_receptive_field(model, crops)
    except torch.OutOfMemoryError:
        print(f"error: out of memory at size={opts['size']}; pass a smaller size=.", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, ImageError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    shares = square_shares(field)
    summary = {"experiment": cfg.name, "checkpoint": opts["checkpoint"], "data_root": str(folder),
               "images": len(crops), "size": size, "quality": quality,
               "shares": {f"{share:.0%}": value for share, value in shares.items()}}
    print(f"effective receptive field of {cfg.name}, {len(crops)} image(s), {size}x{size} LR crops:")
    for share, value in shares.items():
        print(f"  {share:>4.0%} of the total within the central {value['side']}x{value['side']} square "
              f"({value['area']:.1%} of the crop)")
    try:
        with atomic_path(out.with_suffix(".npy")) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, field)
        write_image(out.with_suffix(".png"), cv2.cvtColor(picture(field), cv2.COLOR_BGR2RGB))
        with atomic_path(out.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(summary, indent=2) + "\n")
    except OSError as err:
        print(f"error: could not write {err.filename or out} ({err.strerror or err}); the figures above are the "
              "summary.", file=sys.stderr)
        return 1
    print(f"wrote {out}.npy, {out}.png and {out}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
