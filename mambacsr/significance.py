r"""Is one model better than another on the same images, or is the difference noise? Paired tests per benchmark:

    python -m mambacsr.significance runs/dis_w8_noxs/evaluation_per_image.csv \
        runs/dis_w8/evaluation_per_image.csv [out=xs_vs_noxs.md]

Both files are per-image CSVs that ``python -m mambacsr.evaluate`` wrote (``<out>_per_image.csv``); each run is named
after its run folder, else after its file. Images pair up by benchmark, LR condition and name; each run's model rows
are used (``model``, or ``model_x8`` for a self-ensemble). For each LR condition and benchmark both runs hold: the
number of images, each run's mean PSNR, the mean difference second - first with its 95% confidence interval (Student's
t), the two-sided p-values of the paired t-test and of the Wilcoxon signed-rank test (scipy), on how many images the
second is better, and the mean SSIM difference. The paper's ablations differ by a few hundredths of a dB; on Set5's
five images Wilcoxon's p cannot go below 1/16 (all five differences of one sign: 2 of the 32 sign patterns), on
Urban100's hundred it can.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from scipy import stats

from .evaluate import BENCHMARKS, PER_IMAGE_COLUMNS
from .tables import check_out_is_no_input, evaluation_names, print_and_write, read_rows
from .utils.cli import asks_for_help, split_options

PerImage = Dict[Tuple[str, str], Dict[str, Tuple[float, float]]]  # (condition, benchmark) -> image -> (PSNR, SSIM)


def read_per_image(path) -> PerImage:
    """evaluate's per-image CSV, its model rows only; raises ValueError for another file."""
    found: PerImage = {}
    for heading, (benchmark, image, method), scores in read_rows(path, PER_IMAGE_COLUMNS, "per-image CSV",
                                                                 "; pass <out>_per_image.csv, not <out>.csv"):
        if method.startswith("model"):
            found.setdefault((heading, benchmark), {})[image] = scores
    return found


@dataclass
class Comparison:
    images: int
    first: float                    # mean PSNR of each run
    second: float
    difference: float               # mean of second - first, dB
    interval: Optional[Tuple[float, float]]  # its 95% confidence interval (None for one image)
    p_t: Optional[float]            # paired t-test, two-sided
    p_wilcoxon: Optional[float]     # Wilcoxon signed-rank, two-sided (None when every difference is zero)
    better: int                     # images on which the second's PSNR is higher
    ssim_difference: float


def compare(first: Dict[str, Tuple[float, float]], second: Dict[str, Tuple[float, float]]) -> Comparison:
    """Paired comparison over the images both hold: ``image -> (PSNR, SSIM)`` each."""
    names = sorted(first.keys() & second.keys())
    a = np.array([first[n][0] for n in names])
    b = np.array([second[n][0] for n in names])
    d = b - a
    ssim = float(np.mean([second[n][1] - first[n][1] for n in names]))
    interval = p_t = p_w = None
    if len(names) > 1:
        se = d.std(ddof=1) / math.sqrt(len(d))
        half = stats.t.ppf(0.975, len(d) - 1) * se
        interval = (float(d.mean() - half), float(d.mean() + half))
        p_t = float(stats.ttest_rel(b, a).pvalue) if se > 0 else (1.0 if d.mean() == 0 else 0.0)
    if np.any(d != 0):
        p_w = float(stats.wilcoxon(d).pvalue)
    return Comparison(len(names), float(a.mean()), float(b.mean()), float(d.mean()), interval, p_t, p_w,
                      int(np.sum(d > 0)), ssim)


def _p(value: Optional[float]) -> str:
    return "-" if value is None else (f"{value:.3f}" if value >= 0.001 else "< 0.001")


def comparison_tables(first_name: str, first: PerImage, second_name: str, second: PerImage) -> str:
    """Markdown: one table per LR condition, one row per benchmark both runs hold."""
    lines = []
    keys = [k for k in first if k in second and first[k].keys() & second[k].keys()]
    headings = list(dict.fromkeys(heading for heading, _ in keys))
    for heading in headings:
        lines += [f"\n**{heading}**: {second_name} against {first_name} (PSNR on Y, crop 4)\n",
                  f"| Benchmark | images | {first_name} | {second_name} | difference (95% CI) | p, paired t | "
                  f"p, Wilcoxon | {second_name} better on | SSIM difference |",
                  "| --- |" + " --- |" * 8]
        for benchmark in [b for b in BENCHMARKS if (heading, b) in keys] + \
                sorted(b for h, b in keys if h == heading and b not in BENCHMARKS):
            c = compare(first[(heading, benchmark)], second[(heading, benchmark)])
            ci = f" ({c.interval[0]:+.3f} to {c.interval[1]:+.3f})" if c.interval else ""
            lines.append(f"| {benchmark} | {c.images} | {c.first:.3f} | {c.second:.3f} | {c.difference:+.3f}{ci} | "
                         f"{_p(c.p_t)} | {_p(c.p_wilcoxon)} | {c.better} of {c.images} | {c.ssim_difference:+.4f} |")
    return "\n".join(lines) + "\n"


def unpaired(first: PerImage, second: PerImage) -> List[str]:
    """What one run holds and the other lacks: whole (condition, benchmark)s, and images of shared ones."""
    notes = [f"{h}, {b}: only in the {which} run"
             for which, x, y in (("first", first, second), ("second", second, first)) for h, b in x if (h, b) not in y]
    for key in first.keys() & second.keys():
        missing = first[key].keys() ^ second[key].keys()
        if missing:
            notes.append(f"{key[0]}, {key[1]}: {len(missing)} image(s) in one run only (first: {sorted(missing)[0]}); "
                         "compared on the others")
    return notes


def main(argv: Optional[List[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if asks_for_help(args, __doc__):
        return 0
    opts, paths = split_options(args, {"out": None})
    if len(paths) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        check_out_is_no_input(opts["out"], paths)
        first_name, second_name = evaluation_names([Path(p) for p in paths])
        first, second = (read_per_image(p) for p in paths)
        if first_name == second_name:  # one file given twice
            first_name, second_name = f"{first_name} (1)", f"{second_name} (2)"
        if not any(first[k].keys() & second[k].keys() for k in first.keys() & second.keys()):
            raise ValueError("the two runs share no image of one LR condition and benchmark; nothing to compare.")
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for note in unpaired(first, second):
        print(f"note: {note}", file=sys.stderr)
    return print_and_write(comparison_tables(first_name, first, second_name, second), opts["out"])


if __name__ == "__main__":
    raise SystemExit(main())
