"""tables' LaTeX output: the paper's cell layout, the best model in bold, text escaped, chosen by format= or out=."""

from mambacsr import tables

HEADER = "codec,quality,benchmark,method,psnr,ssim\n"


def write_evaluation(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(f"jpeg,10,{b},{m},{p},{s}\n" for b, m, p, s in rows))
    return path


def two_runs(tmp_path):
    ours = write_evaluation(tmp_path / "runs" / "dis_w8" / "evaluation.csv", [
        ("Set5", "bicubic", 26.871, 0.75123), ("Set5", "model", 29.104, 0.83412), ("Set5", "paper", 29.12, 0.8341),
        ("Urban100", "bicubic", 22.261, 0.60811), ("Urban100", "model", 24.507, 0.74423),
    ])
    baseline = write_evaluation(tmp_path / "runs" / "mambair" / "evaluation.csv", [
        ("Set5", "bicubic", 26.871, 0.75123), ("Set5", "model", 29.011, 0.83408),  # SSIM prints as dis_w8's: a tie
        ("Urban100", "bicubic", 22.261, 0.60811), ("Urban100", "model", 24.612, 0.74101),
    ])
    return [str(ours), str(baseline)]


def test_latex_table_as_a_paper_prints_it(tmp_path, capsys):
    assert tables.main([*two_runs(tmp_path), "format=latex"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[:6] == [
        r"\begin{table}[t]", r"\centering",
        r"\caption{JPEG quality 10: PSNR (dB) / SSIM on the Y channel, 4 pixels cropped. Best model in bold.}",
        r"\begin{tabular}{lcc}", r"\toprule", r"Method & Set5 & Urban100 \\",
    ]
    body = lines[6:]
    # The bicubic row, each run's model, and dis_w8's paper row, in that order, ruled apart; the best PSNR and the
    # best SSIM of each column bold among the models only (the paper's 29.12 is higher, but it is not ours).
    assert body == [
        r"\midrule",
        r"Bicubic & 26.87/0.7512 & 22.26/0.6081 \\",
        r"\midrule",
        r"dis\_w8 & \textbf{29.10}/\textbf{0.8341} & 24.51/\textbf{0.7442} \\",
        r"\midrule",
        r"dis\_w8: paper & 29.12/0.8341 & - \\",
        r"\midrule",
        r"mambair & 29.01/\textbf{0.8341} & \textbf{24.61}/0.7410 \\",
        r"\bottomrule", r"\end{tabular}", r"\end{table}",
    ]


def test_an_out_ending_in_tex_writes_latex_and_markdown_stays_the_default(tmp_path, capsys):
    runs = two_runs(tmp_path)
    assert tables.main([*runs, f"out={tmp_path / 'table.tex'}"]) == 0
    latex = (tmp_path / "table.tex").read_text()
    assert latex.startswith(r"\begin{table}[t]") and latex == capsys.readouterr().out.rstrip("\n") + "\n"
    assert tables.main([*runs, f"out={tmp_path / 'table.md'}"]) == 0
    assert "| dis_w8 | 29.10 (-0.02) / 0.8341 | 24.51 / 0.7442 |" in (tmp_path / "table.md").read_text()
    assert tables.main([*runs, f"out={tmp_path / 'forced.tex'}", "format=markdown"]) == 0
    assert (tmp_path / "forced.tex").read_text().startswith("\n**JPEG quality 10**")
    capsys.readouterr()
    assert tables.main([*runs, "format=html"]) == 1
    assert "error: format=html: pass format=markdown or format=latex." in capsys.readouterr().err


def test_latex_escapes_what_latex_would_read_as_commands():
    assert tables._latex_text("a_b & 50% #1 {x} ~y^2 \\z $") == \
        r"a\_b \& 50\% \#1 \{x\} \textasciitilde{}y\textasciicircum{}2 \textbackslash{}z \$"


def test_runs_named_alike_are_told_apart_by_their_paths(tmp_path, capsys):
    # Two machines' runs of one experiment, both runs/<name>/evaluation.csv: rows named by the run folder alone read
    # the same, so those two are named by their paths.
    a = write_evaluation(tmp_path / "server" / "dis_w8" / "evaluation.csv", [("Set5", "model", 29.104, 0.83412)])
    b = write_evaluation(tmp_path / "laptop" / "dis_w8" / "evaluation.csv", [("Set5", "model", 29.011, 0.83408)])
    c = write_evaluation(tmp_path / "laptop" / "mambair" / "evaluation.csv", [("Set5", "model", 28.9, 0.833)])
    assert tables.main([str(a), str(b), str(c)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "Method" not in line
            and "---" not in line]
    assert rows == [f"| {a} | 29.10 / 0.8341 |", f"| {b} | 29.01 / 0.8341 |", "| mambair | 28.90 / 0.8330 |"]
