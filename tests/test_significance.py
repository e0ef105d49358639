"""Paired tests between two evaluations, against figures worked out by hand."""

import math

import pytest

from mambacsr import significance
from mambacsr.evaluate import MADE_COLUMNS, PER_IMAGE_COLUMNS, SetScores, per_image_rows, write_csv
from mambacsr.significance import compare


def per_image_csv(path, psnr_by_set, ssim=0.8, quality=10):
    """A per-image CSV written by evaluate's own writer: ``{benchmark: {image: psnr}}``, bicubic 1 dB below."""
    per_set = {}
    for name, images in psnr_by_set.items():
        scores = SetScores(images=list(images))
        scores.psnr = {"model": list(images.values()), "bicubic": [p - 1 for p in images.values()]}
        scores.ssim = {"model": [ssim] * len(images), "bicubic": [ssim - 0.1] * len(images)}
        per_set[name] = scores
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = per_image_rows({quality: per_set}, {quality: ["jpeg", quality]}, {"bicubic": "bicubic", "model": "model"})
    write_csv(path, MADE_COLUMNS + PER_IMAGE_COLUMNS, rows)
    return path


def test_three_images_worked_by_hand():
    # Differences 0.1, 0.2, 0.3: mean 0.2, standard deviation 0.1, t = 0.2 / (0.1 / sqrt 3) = 2 sqrt 3 with 2 degrees
    # of freedom, where Student's t has the closed form F(t) = 1/2 + t / (2 sqrt(t^2 + 2)): p = 1 - t / sqrt(t^2 + 2),
    # and the 97.5% quantile is 0.95 sqrt(2 / (1 - 0.95^2)).  Wilcoxon's exact test, three positive differences:
    # the largest rank sum, 2 of 2^3 sign patterns as extreme, p = 0.25.
    first = {"a": (30.0, 0.80), "b": (31.0, 0.81), "c": (29.0, 0.79)}
    second = {"c": (29.3, 0.80), "a": (30.1, 0.80), "b": (31.2, 0.83)}
    c = compare(first, second)
    t = 2 * math.sqrt(3)
    half = 0.95 * math.sqrt(2 / (1 - 0.95 ** 2)) * 0.1 / math.sqrt(3)
    assert c.images == 3 and c.better == 3
    assert c.difference == pytest.approx(0.2) and c.ssim_difference == pytest.approx(0.01)
    assert c.p_t == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-9)
    assert c.interval == pytest.approx((0.2 - half, 0.2 + half), rel=1e-9)
    assert c.p_wilcoxon == pytest.approx(0.25)


def test_identical_runs_and_a_single_image():
    same = {"a": (30.0, 0.8), "b": (31.0, 0.8)}
    c = compare(same, same)
    assert (c.difference, c.interval, c.p_t, c.p_wilcoxon, c.better) == (0.0, (0.0, 0.0), 1.0, None, 0)
    one = compare({"a": (30.0, 0.8)}, {"a": (30.5, 0.8)})
    assert (one.images, one.difference, one.interval, one.p_t, one.better) == (1, 0.5, None, None, 1)


def test_the_tool_pairs_images_by_name_and_says_what_it_left_out(tmp_path, capsys):
    urban = {f"img{i:03d}": 25.0 + 0.1 * i for i in range(10)}
    first = per_image_csv(tmp_path / "runs" / "dis_w8_noxs" / "evaluation_per_image.csv",
                          {"Set5": {"baby": 30.0, "bird": 31.0}, "Urban100": urban})
    better = {name: p + 0.05 + 0.01 * (i % 3) for i, (name, p) in enumerate(urban.items()) if name != "img009"}
    second = per_image_csv(tmp_path / "runs" / "dis_w8" / "evaluation_per_image.csv",
                           {"Urban100": better, "Manga109": {"x": 29.0}})
    assert significance.main([str(first), str(second), f"out={tmp_path / 'cmp.md'}"]) == 0
    out = capsys.readouterr()
    assert "note: JPEG quality 10, Set5: only in the first run" in out.err
    assert "note: JPEG quality 10, Manga109: only in the second run" in out.err
    assert "note: JPEG quality 10, Urban100: 1 image(s) in one run only (first: img009); compared on the others" \
        in out.err
    table = (tmp_path / "cmp.md").read_text()
    assert "**JPEG quality 10**: dis_w8 against dis_w8_noxs" in table  # named after the run folders
    row = next(line for line in table.splitlines() if line.startswith("| Urban100 |"))
    c = compare({n: (p, 0.8) for n, p in urban.items()}, {n: (p, 0.8) for n, p in better.items()})
    assert row.startswith(f"| Urban100 | 9 | {c.first:.3f} | {c.second:.3f} | {c.difference:+.3f} (")
    assert c.p_t < 0.001 and "| < 0.001 |" in row and "| 9 of 9 |" in row
    assert "Set5" not in table and "Manga109" not in table


def test_files_it_cannot_compare_are_clear_errors(tmp_path, capsys):
    summary = tmp_path / "evaluation.csv"
    summary.write_text("codec,quality,benchmark,method,psnr,ssim\njpeg,10,Set5,model,30.0,0.8\n")
    a = per_image_csv(tmp_path / "a_per_image.csv", {"Set5": {"baby": 30.0}})
    b = per_image_csv(tmp_path / "b_per_image.csv", {"Set5": {"baby": 30.0}}, quality=30)
    renamed = per_image_csv(tmp_path / "renamed_per_image.csv", {"Set5": {"baby_x4": 30.0}})
    broken = tmp_path / "broken_per_image.csv"
    broken.write_text(a.read_text().replace("30.0000", "n/a", 1))
    image = tmp_path / "baby.png"  # an image passed where a CSV belongs
    image.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    for args, says in (([summary, a], "is not a per-image CSV of python -m mambacsr.evaluate"),
                       ([a, broken], "broken_per_image.csv, line 3: 'jpeg,10,Set5,baby,model,n/a,0.800000' is not a "
                                     "row evaluate writes"),
                       ([a, tmp_path / "none.csv"], "none.csv does not exist"),
                       ([a, image], "baby.png is not a text file, so not a per-image CSV"),
                       ([a, b], "the two runs share no image of one LR condition and benchmark"),
                       ([a, renamed], "the two runs share no image of one LR condition and benchmark")):
        assert significance.main([str(p) for p in args]) == 1
        assert says in capsys.readouterr().err
    before = b.read_text()
    assert significance.main([str(a), str(b), f"out={b}"]) == 1
    assert f"out={b} is one of the evaluations to read" in capsys.readouterr().err and b.read_text() == before
    assert significance.main([str(a)]) == 2  # two files or the usage
