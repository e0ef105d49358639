r"""Evaluate a checkpoint on the benchmark sets, in the paper's table layout.

    python -m mambacsr.evaluate +experiment=dis_w8 checkpoint=runs/dis_w8/model_ema.safetensors \
        data_root=datasets/benchmarks qualities=[10,20,30] [tile=256] [overlap=16] [out=results/dis_w8] \
        [save_images=false] [ensemble=false] [device=auto | cpu | cuda:N] [protocol=tiles | released]
    python -m mambacsr.evaluate +experiment=dis_w8 checkpoint=W data_root=datasets/benchmarks codec=webp
    python -m mambacsr.evaluate +experiment=dis_w8 checkpoint=W data_root=datasets/benchmarks lr_root=my_lr

Benchmark folders found under data_root (HR images): Set5, Set14, Manga109, Urban100, DIV2K (DIV2K_valid_HR). Each may
hold its images directly or in an ``HR`` / ``GTmod12`` subfolder. The LR inputs are made from them with the paper's
degradation at each of ``qualities`` (seeded per image) and ``codec`` jpeg (the paper's, the default), webp or avif.
With ``lr_root`` they are read instead from ``lr_root/<set>`` (or its ``LR`` subfolder), or from ``lr_root`` with
``{set}`` replaced by each set's name (``lr_root=Testsets/{set}/LR_q10``): your own LR images, e.g. another codec's,
paired with the HR images by file stem (``0801.png`` also with ``0801x4.png``, DIV2K's naming), each exactly 1/scale
of its HR image (cropped to a multiple of the scale); sets without an LR folder there are skipped.

PSNR/SSIM on Y with a 4-pixel crop, outputs rounded to uint8; an HR image too small for them (under 19x19 pixels
once cropped to a multiple of the scale) stops the evaluation, named, before it is restored. A bicubic row (the LR
input upsampled with MATLAB bicubic) is reported beside the model, and where the experiment's config holds the
paper's figures for a JPEG quality (``paper.results``), the paper's row and the difference. Writes ``<out>.md`` and
``<out>.csv`` (each set's means), ``<out>_per_image.csv`` (each image's PSNR and SSIM) and, with
``save_images=true``, the restored images as ``<out>_images/<jpeg_q10 | lr_given>/<set>/<image>.png``.

``protocol=released`` restores each image as the authors' test code did (``released_protocol.py``: partitions of about
192 pixels, each mirrored to a multiple of 64, put together without blending; ``tile`` and ``overlap`` are then
unused), as the paper's figures were made, with the network placing its cross-scale outputs on partitions that are
not square as the released code does (``models/released_layout.py``; ``model.cross_scale.released_layout=false``
places them correctly); the default, ``tiles``, blends overlapping tiles. ``ensemble=true`` restores with the x8
self-ensemble (the average over each input's flips and rotations, 8x the time); its rows are marked "x8", in the CSVs
as the method ``model_x8``.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import torch
from tqdm import tqdm

from .checkpoints import load_weights
from .config import build_model, load_config
from .data.datasets import ImageSource, to_tensor
from .data.degrade import CODECS, MAX_QUALITY, MIN_QUALITY, check_codec, pick_quality
from .data.io import ImageError, write_image
from .data.resize import imresize
from .metrics import calculate_psnr, calculate_ssim, check_measurable
from .models import SelfEnsemble
from .released_protocol import check_protocol, network_as_released, restore_by_protocol
from .tiling import out_of_memory_advice
from .training.validation import to_uint8
from .utils.atomic import atomic_path
from .utils.cli import (asks_for_help, output_stem, parse_device, parse_flag, parse_overlap, parse_tile,
                        split_options)

BENCHMARKS = ("Set5", "Set14", "Manga109", "Urban100", "DIV2K")
_SUBFOLDERS = ("HR", "GTmod12", "DIV2K_valid_HR", "")


def _holds_files(folder: Path) -> bool:
    return folder.is_dir() and any(p.is_file() for p in folder.iterdir())


def image_folder(base: Path) -> Optional[Path]:
    """The folder of a benchmark's HR images: ``base``'s ``HR`` (``GTmod12``, ``DIV2K_valid_HR``) subfolder, or else
    ``base`` itself, the first that holds files; None if none does."""
    for sub in _SUBFOLDERS:
        folder = base / sub if sub else base
        if _holds_files(folder):
            return folder
    return None


def find_benchmarks(root) -> Dict[str, Path]:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data_root {root} does not exist; point it at a folder holding Set5, Set14, ...")
    found = {}
    for name in BENCHMARKS:
        for base in (root / name, root / f"{name}_valid_HR"):
            folder = image_folder(base)
            if folder is not None:
                found.setdefault(name, folder)
    if not found:
        raise FileNotFoundError(f"no benchmark folder ({', '.join(BENCHMARKS)}) found under {root}.")
    return found


def find_lr_folders(lr_root: str, benchmarks: Dict[str, Path]) -> Dict[str, Path]:
    """Each benchmark's folder of given LR images: ``lr_root`` with ``{set}`` replaced by its name
    (``Testsets/{set}/LR_q10``, the released test sets' layout), or else ``lr_root/<name>`` or its ``LR`` subfolder.
    Benchmarks without one are left out, and none at all is an error."""
    templated = "{set}" in lr_root
    root = Path(lr_root.split("{set}")[0]) if templated else Path(lr_root)
    if not root.is_dir():
        raise FileNotFoundError(f"lr_root {lr_root}: {root} does not exist; point it at a folder holding one folder of "
                                f"LR images per benchmark ({', '.join(benchmarks)}), or use {{set}} for the name.")
    found = {}
    for name in benchmarks:
        candidates = [Path(lr_root.replace("{set}", name))] if templated else [root / name / "LR", root / name]
        for folder in candidates:
            if _holds_files(folder):
                found.setdefault(name, folder)
    if not found:
        example = lr_root.replace("{set}", next(iter(benchmarks))) if templated else root / next(iter(benchmarks))
        raise FileNotFoundError(f"lr_root {lr_root} holds no LR folder for the benchmarks found in data_root "
                                f"({', '.join(benchmarks)}); name each after its set, e.g. {example}.")
    return found


METHODS = ("bicubic", "model")


@dataclass
class SetScores:
    """One benchmark's PSNR and SSIM per image (in ``images``' order) for each method ("model", "bicubic")."""
    images: List[str] = field(default_factory=list)
    psnr: Dict[str, List[float]] = field(default_factory=lambda: {m: [] for m in METHODS})
    ssim: Dict[str, List[float]] = field(default_factory=lambda: {m: [] for m in METHODS})

    def mean(self, method: str, metric: str) -> float:
        return float(np.mean(getattr(self, metric)[method]))


# The CSVs' columns: the LR condition's (made from the HR images, or given in lr_root), then the scores'.
MADE_COLUMNS, GIVEN_COLUMNS = ["codec", "quality"], ["lr_root"]
SCORE_COLUMNS = ["benchmark", "method", "psnr", "ssim"]
PER_IMAGE_COLUMNS = ["benchmark", "image", "method", "psnr", "ssim"]  # <out>_per_image.csv, after the condition's


def restore_image(model, lr: np.ndarray, scale: int, device, tile, overlap: int, protocol: str) -> np.ndarray:
    """HxWx3 uint8 LR -> the model's output, by our blended tiles or by the authors' partitions (``released``)."""
    return to_uint8(restore_by_protocol(model, to_tensor(lr)[None].to(device), scale, protocol, tile, overlap))


def evaluate_folder(model, source: ImageSource, quality: Optional[int], scale: int, device, tile, overlap: int = 16,
                    seed: int = 0, codec: str = "jpeg", label: str = "", save_dir: Optional[Path] = None,
                    protocol: str = "tiles") -> SetScores:
    """PSNR / SSIM of the model and of bicubic upsampling for each of ``source``'s images: its LR partners where it
    has them, else each HR image degraded with ``codec`` at ``quality``.  With ``save_dir`` the model's outputs are
    written there as ``<image>.png``."""
    scores = SetScores()
    for index in tqdm(range(len(source)), desc=label, leave=False):
        lr, hr = source.pair(index, scale, quality, seed, codec)
        # Checked before the restoration, which may take minutes, rather than at the metrics after it.
        check_measurable(hr.shape, scale, f"{label}: {source.describe(index)}, cropped to a multiple of {scale},")
        sr = restore_image(model, lr, scale, device, tile, overlap, protocol)
        if save_dir is not None:
            write_image(save_dir / f"{source.names[index]}.png", sr)
        scores.images.append(source.names[index])
        for method, out in (("model", sr), ("bicubic", imresize(lr, hr.shape[0], hr.shape[1]))):
            scores.psnr[method].append(calculate_psnr(out, hr, scale, True))
            scores.ssim[method].append(calculate_ssim(out, hr, scale, True))
    return scores


def paper_results(paper) -> Dict[int, Dict[str, List[float]]]:
    """The experiment's ``paper.results`` (quality -> benchmark -> [PSNR, SSIM]), or {} where the paper gives none."""
    results = (paper or {}).get("results") or {}
    return {int(q): {name: [float(v) for v in values] for name, values in per_set.items()}
            for q, per_set in results.items()}


def format_table(results: Dict[Union[int, str], Dict[str, SetScores]], label: str, paper=None,
                 codec: str = "jpeg") -> str:
    """Markdown, one table per quality of ``codec`` (an int key) or folder of given LR images (a str key): bicubic,
    the model, and where the experiment's config has the paper's figures for that JPEG quality (``paper.results``),
    the paper's row and the difference ours - paper."""
    names = [b for b in BENCHMARKS if any(b in r for r in results.values())]
    reported = paper_results(paper) if codec == "jpeg" else {}
    lines = []
    for quality, per_set in results.items():
        given, codec_label = isinstance(quality, str), CODECS[codec].label
        lines.append(f"\n**{f'LR images from {quality}' if given else f'{codec_label} quality {quality}'}** "
                     "(PSNR / SSIM on Y, crop 4)\n")
        lines.append("| Method | " + " | ".join(names) + " |")
        lines.append("| --- |" + " --- |" * len(names))
        for row, key in ((f"{'LR' if given else codec_label} + bicubic", "bicubic"), (label, "model")):
            cells = [f"{per_set[n].mean(key, 'psnr'):.2f} / {per_set[n].mean(key, 'ssim'):.4f}" if n in per_set
                     else "-" for n in names]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        theirs = reported.get(quality, {})
        if any(n in theirs for n in names):
            source = (paper or {}).get("table") or "the paper"
            cells = [f"{theirs[n][0]:.2f} / {theirs[n][1]:.4f}" if n in theirs else "-" for n in names]
            lines.append(f"| paper: {source} | " + " | ".join(cells) + " |")
            cells = [f"{per_set[n].mean('model', 'psnr') - theirs[n][0]:+.2f} / "
                     f"{per_set[n].mean('model', 'ssim') - theirs[n][1]:+.4f}"
                     if n in theirs and n in per_set else "-" for n in names]
            lines.append("| ours - paper | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_qualities(value: str) -> List[int]:
    """``qualities=[10,20,30]`` (or ``qualities=10``) -> [10, 20, 30], checked before any image is restored."""
    try:
        qualities = [int(q) for q in value.strip("[]").split(",") if q.strip()]
        pick_quality(qualities)  # the degradation's own check: a non-empty list, each in range
    except ValueError:
        raise ValueError(f"qualities={value}: pass qualities from {MIN_QUALITY} to {MAX_QUALITY}, e.g. "
                         "qualities=[10,20,30].") from None
    return qualities


def main(argv: Optional[List[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if asks_for_help(args, __doc__):
        return 0
    opts, overrides = split_options(args, {"checkpoint": None, "data_root": "datasets/benchmarks", "qualities": None,
                                           "codec": None, "lr_root": None, "tile": "256", "overlap": "16",
                                           "out": None, "save_images": "false", "ensemble": "false",
                                           "device": "auto", "protocol": "tiles"})
    try:
        if opts["checkpoint"] is None:
            raise ValueError("pass checkpoint=PATH (our .safetensors / iter_*.pt, or an authors' .pth).")
        cfg = load_config(overrides, tool_options=list(opts))
        tile = parse_tile(opts["tile"])
        overlap = parse_overlap(opts["overlap"], tile)
        save_images = parse_flag("save_images", opts["save_images"])
        ensemble = parse_flag("ensemble", opts["ensemble"])
        if check_protocol(opts["protocol"]) == "released":
            network_as_released(cfg, overrides)
        sets = find_benchmarks(opts["data_root"])
        lr_folders = {}
        codec = check_codec(opts["codec"] or "jpeg")
        if opts["lr_root"] is None:  # condition -> the quality its LR images are made at
            conditions = {q: q for q in parse_qualities(opts["qualities"] or "[10]")}
        elif opts["qualities"] is not None or opts["codec"] is not None:
            raise ValueError(f"qualities= and codec= make LR images from the HR images, and lr_root= gives the LR "
                             f"images ({opts['lr_root']}): pass one or the other.")
        else:
            lr_folders = find_lr_folders(opts["lr_root"], sets)
            for name in sets.keys() - lr_folders.keys():
                print(f"note: {name} skipped, no LR folder for it under {opts['lr_root']}", file=sys.stderr)
            sets = {name: folder for name, folder in sets.items() if name in lr_folders}
            conditions = {opts["lr_root"]: None}
        # Each set is read once per condition: a cache would only hold memory (DIV2K's images are 2K).
        sources = {name: ImageSource.from_folders(folder, lr_folders.get(name), cache_size=0)
                   for name, folder in sets.items()}
        out = output_stem(opts["out"], Path(cfg.run_dir) / "evaluation")
        images_dir = out.parent / f"{out.name}_images" if save_images else None
        device = parse_device(opts["device"])
        model = load_weights(build_model(cfg), opts["checkpoint"]).to(device).eval()
        if ensemble:
            model = SelfEnsemble(model)
        results = {}
        for key, quality in conditions.items():
            condition = "lr_given" if quality is None else f"{codec}_q{quality}"
            results[key] = {name: evaluate_folder(
                model, source, quality, cfg.data.scale, device, tile, overlap, codec=codec,
                label=name if quality is None else f"{name} q{quality}",
                save_dir=images_dir / condition / name if images_dir else None, protocol=opts["protocol"])
                for name, source in sources.items()}
    except torch.OutOfMemoryError:
        print(f"error: {out_of_memory_advice(tile)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; nothing was written (the tables are written when every set is done).", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, ImageError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a restored image that save_images could not write
        print(f"error: could not write {err.filename or 'a restored image'} ({err.strerror or err}); free space or "
              "pick another out=, or leave save_images out.", file=sys.stderr)
        return 1
    table = format_table(results, f"{cfg.name} (x8 ensemble)" if ensemble else cfg.name, cfg.get("paper"), codec)
    print(table)
    columns = GIVEN_COLUMNS if opts["lr_root"] else MADE_COLUMNS
    cells = {key: [key] if opts["lr_root"] else [codec, key] for key in results}  # each condition's CSV cells
    reported = paper_results(cfg.get("paper")) if codec == "jpeg" else {}
    per_image = out.parent / f"{out.name}_per_image.csv"
    method_names = {"bicubic": "bicubic", "model": "model_x8" if ensemble else "model"}
    try:
        with atomic_path(out.with_suffix(".md")) as tmp:
            tmp.write_text(table)
        write_csv(out.with_suffix(".csv"), columns + SCORE_COLUMNS,
                  summary_rows(results, cells, reported, method_names))
        write_csv(per_image, columns + PER_IMAGE_COLUMNS,
                  per_image_rows(results, cells, method_names))
    except OSError as err:  # a disk that filled during the run: the table above is the result
        print(f"error: could not write the results beside {out} ({err.strerror or err}); the table above holds "
              "them.", file=sys.stderr)
        return 1
    print(f"wrote {out.with_suffix('.md')}, {out.with_suffix('.csv')} and {per_image}"
          + (f"; the restored images are in {images_dir}" if images_dir else ""))
    return 0


def summary_rows(results, conditions, reported, method_names):
    """Each benchmark's mean per method, and the paper's figures where it has them."""
    for key, per_set in results.items():
        for name, scores in per_set.items():
            for method in METHODS:
                yield [*conditions[key], name, method_names[method], f"{scores.mean(method, 'psnr'):.4f}",
                       f"{scores.mean(method, 'ssim'):.6f}"]
            if name in reported.get(key, {}):
                yield [*conditions[key], name, "paper", *reported[key][name]]


def per_image_rows(results, conditions, method_names):
    for key, per_set in results.items():
        for name, scores in per_set.items():
            for i, image in enumerate(scores.images):
                for method in METHODS:
                    yield [*conditions[key], name, image, method_names[method], f"{scores.psnr[method][i]:.4f}",
                           f"{scores.ssim[method][i]:.6f}"]


def write_csv(path: Path, header: List[str], rows) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)


if __name__ == "__main__":
    raise SystemExit(main())
