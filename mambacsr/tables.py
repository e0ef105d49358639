r"""Several evaluations side by side, as the paper's tables set them out:

    python -m mambacsr.tables runs/dis_w4/evaluation.csv runs/dis_w8_noxs/evaluation.csv \
        runs/dis_w16/evaluation.csv [out=table2.md]

Each file is a summary CSV that ``python -m mambacsr.evaluate`` wrote; its rows are named after its run folder
(``runs/<experiment>/evaluation.csv``, evaluate's default place) or else after the file.  One table per LR condition
(codec and quality, or lr_root): the bicubic row, then each evaluation's model, its PSNR beside the paper's as
``ours (ours - paper)`` where the CSV holds the paper's figures, and the paper's row.  Prints Markdown, and writes it
to ``out`` if given.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .data.degrade import CODECS
from .evaluate import BENCHMARKS, GIVEN_COLUMNS, MADE_COLUMNS, SCORE_COLUMNS
from .utils.atomic import atomic_path
from .utils.cli import asks_for_help, split_options

Scores = Dict[str, Dict[str, Tuple[float, float]]]  # method -> benchmark -> (PSNR, SSIM)


def evaluation_name(path: Path) -> str:
    return path.parent.name if path.name == "evaluation.csv" and path.parent.name else path.stem


def read_evaluation(path) -> Dict[str, Scores]:
    """evaluate's summary CSV as ``condition -> method -> benchmark -> (PSNR, SSIM)``, a condition named as its
    table's heading ("JPEG quality 10", "LR images from my_lr"); raises ValueError for another file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass the CSVs python -m mambacsr.evaluate wrote.")
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header = rows[0] if rows else []
    if header not in (MADE_COLUMNS + SCORE_COLUMNS, GIVEN_COLUMNS + SCORE_COLUMNS):
        raise ValueError(f"{path} is not a summary CSV of python -m mambacsr.evaluate (its header is "
                         f"{','.join(header) or 'empty'}).")
    found: Dict[str, Scores] = {}
    for line, row in enumerate(rows[1:], start=2):
        try:
            if len(row) != len(header):
                raise ValueError
            *condition, benchmark, method, psnr, ssim = row
            heading = (f"LR images from {condition[0]}" if len(condition) == 1
                       else f"{CODECS[condition[0]].label} quality {condition[1]}")
            found.setdefault(heading, {}).setdefault(method, {})[benchmark] = (float(psnr), float(ssim))
        except (ValueError, KeyError):
            raise ValueError(f"{path}, line {line}: {','.join(row)!r} is not a row evaluate writes.") from None
    return found


def side_by_side(evaluations: List[Tuple[str, Dict[str, Scores]]]) -> str:
    """Markdown: one table per condition, rows from each (name, evaluation) in order."""
    headings = list(dict.fromkeys(h for _, evaluation in evaluations for h in evaluation))
    lines = []
    for heading in headings:
        present = [(name, evaluation[heading]) for name, evaluation in evaluations if heading in evaluation]
        names = [b for b in BENCHMARKS if any(b in scores for _, methods in present for scores in methods.values())]
        lines += [f"\n**{heading}** (PSNR / SSIM on Y, crop 4)\n", "| Method | " + " | ".join(names) + " |",
                  "| --- |" + " --- |" * len(names)]
        bicubic = next((methods["bicubic"] for _, methods in present if "bicubic" in methods), None)
        if bicubic is not None:
            lines.append(_row("bicubic", bicubic, names))
        for name, methods in present:
            for method, scores in methods.items():
                if method.startswith("model"):
                    label = name + (" (x8 ensemble)" if method == "model_x8" else "")
                    lines.append(_row(label, scores, names, methods.get("paper", {})))
            if "paper" in methods:
                lines.append(_row(f"{name}: paper", methods["paper"], names))
    return "\n".join(lines) + "\n"


def _row(label: str, scores: Dict[str, Tuple[float, float]], names: List[str],
         paper: Optional[Dict[str, Tuple[float, float]]] = None) -> str:
    cells = []
    for name in names:
        if name not in scores:
            cells.append("-")
            continue
        psnr, ssim = scores[name]
        delta = f" ({psnr - paper[name][0]:+.2f})" if paper and name in paper else ""
        cells.append(f"{psnr:.2f}{delta} / {ssim:.4f}")
    return f"| {label} | " + " | ".join(cells) + " |"


def main(argv: Optional[List[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if asks_for_help(args, __doc__):
        return 0
    opts, paths = split_options(args, {"out": None})
    if not paths:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        evaluations = [(evaluation_name(Path(p)), read_evaluation(p)) for p in paths]
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    table = side_by_side(evaluations)
    print(table)
    if opts["out"]:
        try:
            with atomic_path(opts["out"]) as tmp:
                tmp.write_text(table)
        except OSError as err:
            print(f"error: could not write {opts['out']} ({err.strerror or err}); the table above is all of it.",
                  file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
