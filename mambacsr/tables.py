r"""Several evaluations side by side, as the paper's tables set them out:

    python -m mambacsr.tables runs/dis_w4/evaluation.csv runs/dis_w8_noxs/evaluation.csv \
        runs/dis_w16/evaluation.csv [out=table2.md | out=table2.tex] [format=markdown | latex]

Each file is a summary CSV that ``python -m mambacsr.evaluate`` wrote; its rows are named after its run folder
(``runs/<experiment>/evaluation.csv``, evaluate's default place) or else after the file.  One table per LR condition
(codec and quality, or lr_root): the bicubic row, then each evaluation's model, its PSNR beside the paper's as
``ours (ours - paper)`` where the CSV holds the paper's figures, and the paper's row.  Prints Markdown, and writes it
to ``out`` if given.  ``format=latex`` (the default for an ``out`` ending in ``.tex``) prints LaTeX tables for a paper
instead (booktabs): ``PSNR/SSIM`` cells, the best model of each column in bold, no differences to the paper.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .data.degrade import CODECS
from .evaluate import BENCHMARKS, GIVEN_COLUMNS, MADE_COLUMNS, SCORE_COLUMNS
from .utils.atomic import atomic_path
from .utils.cli import asks_for_help, split_options

Scores = Dict[str, Dict[str, Tuple[float, float]]]  # method -> benchmark -> (PSNR, SSIM)


def evaluation_name(path: Path) -> str:
    """A run's name from its CSV (summary or per-image): its run folder for evaluate's default name, else the file's."""
    stem = path.stem.removesuffix("_per_image")
    return path.parent.name if stem == "evaluation" and path.suffix == ".csv" and path.parent.name else stem


def evaluation_names(paths: List[Path]) -> List[str]:
    """Each CSV's :func:`evaluation_name`; where two share one (``server/dis_w8/evaluation.csv`` and
    ``laptop/dis_w8/evaluation.csv``), their paths as given instead, so that no two rows or columns read the same."""
    names = [evaluation_name(p) for p in paths]
    return [str(p) if names.count(name) > 1 else name for p, name in zip(paths, names)]


def read_rows(path, columns: List[str], kind: str, hint: str = "") -> List[Tuple[str, List[str], Tuple[float, float]]]:
    """An evaluate CSV whose columns after the LR condition's are ``columns`` (ending in psnr, ssim), ``kind`` naming
    it in errors ("summary CSV"): each row as (its condition's table heading, e.g. "JPEG quality 10" or "LR images
    from my_lr"; its other cells; (PSNR, SSIM)).  Raises FileNotFoundError or ValueError, naming the file or line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass the {kind}s that python -m mambacsr.evaluate wrote.")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a text file, so not a {kind} of python -m mambacsr.evaluate{hint}.") from None
    header = rows[0] if rows else []
    if header not in (MADE_COLUMNS + columns, GIVEN_COLUMNS + columns):
        raise ValueError(f"{path} is not a {kind} of python -m mambacsr.evaluate (its header is "
                         f"{','.join(header) or 'empty'}){hint}.")
    found = []
    for line, row in enumerate(rows[1:], start=2):
        try:
            if len(row) != len(header):
                raise ValueError
            condition, cells = row[:len(header) - len(columns)], row[len(header) - len(columns):]
            heading = (f"LR images from {condition[0]}" if len(condition) == 1
                       else f"{CODECS[condition[0]].label} quality {condition[1]}")
            found.append((heading, cells[:-2], (float(cells[-2]), float(cells[-1]))))
        except (ValueError, KeyError):
            raise ValueError(f"{path}, line {line}: {','.join(row)!r} is not a row evaluate writes.") from None
    return found


def read_evaluation(path) -> Dict[str, Scores]:
    """evaluate's summary CSV as ``condition -> method -> benchmark -> (PSNR, SSIM)``, a condition named as its
    table's heading; raises ValueError for another file."""
    found: Dict[str, Scores] = {}
    for heading, (benchmark, method), scores in read_rows(path, SCORE_COLUMNS, "summary CSV"):
        found.setdefault(heading, {}).setdefault(method, {})[benchmark] = scores
    return found


Cells = Dict[str, Tuple[float, float]]  # benchmark -> (PSNR, SSIM)


@dataclass
class Row:
    label: str
    kind: str  # "bicubic" | "model" | "paper"
    scores: Cells
    paper: Optional[Cells] = None  # the paper's figures for this model's row, for the difference


@dataclass
class Table:
    heading: str  # "JPEG quality 10", "LR images from my_lr"
    benchmarks: List[str]
    rows: List[Row]


def side_by_side_tables(evaluations: List[Tuple[str, Dict[str, Scores]]]) -> List[Table]:
    """One table per condition: the bicubic row once, then each (name, evaluation)'s model rows and paper row."""
    headings = list(dict.fromkeys(h for _, evaluation in evaluations for h in evaluation))
    tables = []
    for heading in headings:
        present = [(name, evaluation[heading]) for name, evaluation in evaluations if heading in evaluation]
        names = [b for b in BENCHMARKS if any(b in scores for _, methods in present for scores in methods.values())]
        rows = []
        bicubic = next((methods["bicubic"] for _, methods in present if "bicubic" in methods), None)
        if bicubic is not None:
            rows.append(Row("bicubic", "bicubic", bicubic))
        for name, methods in present:
            for method, scores in methods.items():
                if method.startswith("model"):
                    label = name + (" (x8 ensemble)" if method == "model_x8" else "")
                    rows.append(Row(label, "model", scores, methods.get("paper", {})))
            if "paper" in methods:
                rows.append(Row(f"{name}: paper", "paper", methods["paper"]))
        tables.append(Table(heading, names, rows))
    return tables


def side_by_side(evaluations: List[Tuple[str, Dict[str, Scores]]]) -> str:
    """Markdown: one table per condition, each model's PSNR as ``ours (ours - paper)`` where the paper has it."""
    lines = []
    for table in side_by_side_tables(evaluations):
        lines += [f"\n**{table.heading}** (PSNR / SSIM on Y, crop 4)\n",
                  "| Method | " + " | ".join(table.benchmarks) + " |", "| --- |" + " --- |" * len(table.benchmarks)]
        lines += [_row(row.label, row.scores, table.benchmarks, row.paper) for row in table.rows]
    return "\n".join(lines) + "\n"


def _row(label: str, scores: Cells, names: List[str], paper: Optional[Cells] = None) -> str:
    cells = []
    for name in names:
        if name not in scores:
            cells.append("-")
            continue
        psnr, ssim = scores[name]
        delta = f" ({psnr - paper[name][0]:+.2f})" if paper and name in paper else ""
        cells.append(f"{psnr:.2f}{delta} / {ssim:.4f}")
    return f"| {label} | " + " | ".join(cells) + " |"


_LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"}
_LATEX_SPECIAL.update({"~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"})


def _latex_text(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(c, c) for c in text)


def side_by_side_latex(evaluations: List[Tuple[str, Dict[str, Scores]]]) -> str:
    """LaTeX (booktabs): one ``table`` per condition, cells ``PSNR/SSIM`` as the paper prints them, the best model
    row of each column in bold (PSNR and SSIM apart, ties all bold), bicubic and the paper's rows set apart by rules
    and never bold."""
    blocks = []
    for table in side_by_side_tables(evaluations):
        # Compared as printed, so that two models shown alike are both bold.
        shown = [{b: (f"{psnr:.2f}", f"{ssim:.4f}") for b, (psnr, ssim) in row.scores.items()} for row in table.rows]
        models = [cells for row, cells in zip(table.rows, shown) if row.kind == "model"]
        best = {b: [max((cells[b][i] for cells in models if b in cells), key=float, default=None) for i in (0, 1)]
                for b in table.benchmarks}
        lines = [r"\begin{table}[t]", r"\centering",
                 f"\\caption{{{_latex_text(table.heading)}: PSNR (dB) / SSIM on the Y channel, 4 pixels cropped. "
                 "Best model in bold.}",
                 r"\begin{tabular}{l" + "c" * len(table.benchmarks) + "}", r"\toprule",
                 "Method & " + " & ".join(table.benchmarks) + r" \\", r"\midrule"]
        previous = None
        for row, printed in zip(table.rows, shown):
            if previous is not None and row.kind != previous:
                lines.append(r"\midrule")
            previous = row.kind
            cells = []
            for b in table.benchmarks:
                if b not in printed:
                    cells.append("-")
                    continue
                parts = [f"\\textbf{{{value}}}" if row.kind == "model" and value == best[b][i] else value
                         for i, value in enumerate(printed[b])]
                cells.append("/".join(parts))
            label = "Bicubic" if row.kind == "bicubic" else _latex_text(row.label)
            lines.append(f"{label} & " + " & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


FORMATS = {"markdown": side_by_side, "latex": side_by_side_latex}


def main(argv: Optional[List[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if asks_for_help(args, __doc__):
        return 0
    opts, paths = split_options(args, {"out": None, "format": None})
    if not paths:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        fmt = opts["format"] or ("latex" if opts["out"] and Path(opts["out"]).suffix == ".tex" else "markdown")
        if fmt not in FORMATS:
            raise ValueError(f"format={fmt}: pass format=markdown or format=latex.")
        check_out_is_no_input(opts["out"], paths)
        evaluations = [(name, read_evaluation(p)) for name, p in zip(evaluation_names([Path(p) for p in paths]), paths)]
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return print_and_write(FORMATS[fmt](evaluations), opts["out"])


def check_out_is_no_input(out: Optional[str], paths: List[str]) -> None:
    """Raises ValueError if ``out=`` names one of the CSVs read, which writing the table would replace."""
    if out and any(Path(out).resolve() == Path(p).resolve() for p in paths):
        raise ValueError(f"out={out} is one of the evaluations to read: it would be replaced by the table; pick "
                         "another name (e.g. out=table.md).")


def print_and_write(table: str, out: Optional[str]) -> int:
    """Print ``table`` and write it to ``out`` if given; the exit code (1, saying so, if it cannot be written)."""
    print(table)
    if out:
        try:
            with atomic_path(out) as tmp:
                tmp.write_text(table)
        except OSError as err:
            print(f"error: could not write {out} ({err.strerror or err}); the table above is all of it.",
                  file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
