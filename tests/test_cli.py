"""The command-line tools on real files: inference (gray, RGBA, 16-bit, bad files, resume), prepare, evaluate,
tables."""

import os
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from mambacsr import complexity, evaluate, infer, prepare, receptive_field, significance, tables
from mambacsr.checkpoints import load_weights
from mambacsr.config import build_model, load_config
from mambacsr.data.datasets import embedded_images
from mambacsr.data.degrade import crop_to_scale, degrade
from mambacsr.data.io import read_image_any
from mambacsr.data.resize import imresize
from mambacsr.metrics import calculate_psnr
from mambacsr.released_protocol import restore_as_released
from mambacsr.training.validation import to_uint8

TINY = ["+experiment=demo_cpu", "model.embed_dim=8", "model.depths=[1]", "model.d_state=4",
        "model.cross_scale.low_depth=1"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    model = build_model(load_config(TINY))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def photo():
    return embedded_images(["chelsea"])[0][:40, :52]


def one_image_benchmark(root, name, photo):
    """A benchmark folder ``root/name`` holding ``photo`` (RGB) as its one image."""
    (root / name).mkdir(parents=True)
    cv2.imwrite(str(root / name / "img.png"), photo[:, :, ::-1])


def test_infer_handles_rgb_gray_rgba_and_16_bit(tmp_path, weights, photo):
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "rgb.png"), photo[:, :, ::-1])
    cv2.imwrite(str(src / "gray.png"), photo[:, :, 0])
    rgba = np.dstack([photo, np.full(photo.shape[:2], 128, np.uint8)])
    cv2.imwrite(str(src / "rgba.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    cv2.imwrite(str(src / "deep.png"), (photo[:, :, ::-1].astype(np.uint16) * 257))
    out = tmp_path / "out"
    assert infer.main([*TINY, f"checkpoint={weights}", f"input={src}", f"output={out}", "tile=24"]) == 0
    rgb, gray, alpha, deep = (read_image_any(out / f"{n}.png") for n in ("rgb", "gray", "rgba", "deep"))
    assert rgb.shape == (160, 208, 3) and rgb.dtype == np.uint8
    assert gray.shape == (160, 208)
    assert alpha.shape == (160, 208, 4) and abs(int(alpha[..., 3].mean()) - 128) <= 1
    assert deep.shape == (160, 208, 3) and deep.dtype == np.uint16
    assert abs(deep.astype(float) / 257 - rgb).mean() < 1.0  # the same image at 16 bits


def jpeg_taken_sideways(path, rgb):
    """``rgb`` stored as a JPEG with EXIF orientation 6: viewers turn it 90 degrees clockwise, as a phone's photo."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(path, exif=exif.tobytes(), quality=95)


def test_infer_restores_a_sideways_photo_upright(tmp_path, weights, photo):
    # It was read as stored (OpenCV's IMREAD_UNCHANGED ignores EXIF) and restored lying on its side.
    src = tmp_path / "in"
    src.mkdir()
    jpeg_taken_sideways(src / "phone.jpg", photo)
    jpeg_taken_sideways(src / "gray.jpg", photo[:, :, 1])
    stored = cv2.cvtColor(cv2.imread(str(src / "phone.jpg"), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(read_image_any(src / "phone.jpg"), np.rot90(stored, -1))
    assert read_image_any(src / "gray.jpg").shape == (52, 40)
    assert infer.main([*TINY, f"checkpoint={weights}", f"input={src}", f"output={tmp_path / 'out'}"]) == 0
    assert read_image_any(tmp_path / "out" / "phone.png").shape == (208, 160, 3)
    assert read_image_any(tmp_path / "out" / "gray.png").shape == (208, 160)


def test_infer_reports_bad_files_and_resumes(tmp_path, weights, photo, capsys):
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "good.png"), photo)
    (src / "empty.png").write_bytes(b"")
    good_bytes = (src / "good.png").read_bytes()
    (src / "truncated.png").write_bytes(good_bytes[: len(good_bytes) // 3])
    out = tmp_path / "out"
    assert infer.main([*TINY, f"checkpoint={weights}", f"input={src}", f"output={out}"]) == 1
    err = capsys.readouterr().err
    assert "empty.png: the file is empty" in err and "truncated.png" in err
    assert f"2 of 3 image(s) failed; restored 1 image(s) to {out}." in err
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]  # nothing half-written
    stamp = (out / "good.png").stat().st_mtime_ns
    assert infer.main([*TINY, f"checkpoint={weights}", f"input={src / 'good.png'}", f"output={out}"]) == 0
    assert (out / "good.png").stat().st_mtime_ns == stamp  # finished files are not redone
    assert capsys.readouterr().out.strip() == f"restored 0 image(s) to {out}, 1 already there"


def test_infer_and_prepare_refuse_two_inputs_with_one_output_name(tmp_path, weights, photo, capsys):
    # photo.jpg and photo.png would both become photo.png: the second skipped as done, or written over the first.
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "photo.png"), photo)
    cv2.imwrite(str(src / "photo.jpg"), photo)
    out = tmp_path / "out"
    assert infer.main([*TINY, f"checkpoint={weights}", f"input={src}", f"output={out}"]) == 1
    assert "photo.jpg and photo.png in" in capsys.readouterr().err
    assert not out.exists()  # refused before anything was written
    assert prepare.main(["lr", str(src), str(out)]) == 1
    assert "share the name 'photo'" in capsys.readouterr().err and not out.exists()


def test_infer_refuses_weights_of_another_architecture(tmp_path, weights, photo):
    cv2.imwrite(str(tmp_path / "a.png"), photo)
    assert infer.main(["+experiment=mambair", "model.embed_dim=8", "model.depths=[1]", f"checkpoint={weights}",
                       f"input={tmp_path / 'a.png'}", f"output={tmp_path / 'out'}"]) == 1
    assert infer.main([*TINY, f"checkpoint={weights}", f"input={tmp_path / 'missing'}",
                       f"output={tmp_path / 'out'}"]) == 1


def test_prepare_writes_subimages_and_lr_and_resumes(tmp_path, photo):
    hr = tmp_path / "hr"
    hr.mkdir()
    big = embedded_images(["coffee"])[0]  # 400 x 600
    cv2.imwrite(str(hr / "coffee.png"), big[:, :, ::-1])
    assert prepare.main(["subimages", str(hr), str(tmp_path / "sub"), "size=240", "step=120"]) == 0
    subs = sorted((tmp_path / "sub").iterdir())
    assert len(subs) == 3 * 4  # rows at 0, 120, 160; columns at 0, 120, 240, 360
    np.testing.assert_array_equal(read_image_any(subs[0]), big[:240, :240])
    assert prepare.main(["lr", str(tmp_path / "sub"), str(tmp_path / "lr"), "quality=20"]) == 0
    lrs = sorted((tmp_path / "lr").iterdir())
    assert len(lrs) == 12 and read_image_any(lrs[0]).shape == (60, 60, 3)
    stamps = [p.stat().st_mtime_ns for p in lrs]
    (lrs[0]).unlink()
    assert prepare.main(["lr", str(tmp_path / "sub"), str(tmp_path / "lr"), "quality=20"]) == 0
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "lr").iterdir())][1:] == stamps[1:]
    assert prepare.main(["lr", str(tmp_path / "nope"), str(tmp_path / "x")]) == 1
    # Another codec: the on-the-fly degradation's LR image for each file (seeded by its place in the folder).
    assert prepare.main(["lr", str(tmp_path / "sub"), str(tmp_path / "lr_webp"), "quality=20", "codec=webp"]) == 0
    webp = sorted((tmp_path / "lr_webp").iterdir())
    np.testing.assert_array_equal(read_image_any(webp[1]),
                                  degrade(read_image_any(subs[1]), 4, 20, np.random.default_rng([0, 1]), "webp"))
    assert not np.array_equal(read_image_any(webp[1]), read_image_any(lrs[1]))


def test_prepare_stops_on_ctrl_c_with_whole_files_and_the_same_command_makes_the_rest(tmp_path):
    # Ctrl-C signals the whole process group, the pool's workers included: no traceback, exit 130, and every file
    # written is whole (each goes through a temporary name), so a second run makes exactly the missing ones.
    (tmp_path / "hr").mkdir()
    rng = np.random.default_rng(0)
    for i in range(40):
        cv2.imwrite(str(tmp_path / "hr" / f"{i:02d}.png"), rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    cmd = [sys.executable, "-m", "mambacsr.prepare", "subimages", str(tmp_path / "hr"), str(tmp_path / "sub"),
           "size=120", "step=60"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while len(list((tmp_path / "sub").glob("*"))) < 20 and time.time() < deadline:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    made = sorted(p.name for p in (tmp_path / "sub").iterdir())
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert f"interrupted; each file in {tmp_path / 'sub'} is written whole" in err
    assert all(name.endswith(".png") for name in made) and len(made) < 40 * 7 * 10, "it finished before Ctrl-C"
    assert prepare.main(["subimages", str(tmp_path / "hr"), str(tmp_path / "sub"), "size=120", "step=60"]) == 0
    assert len(list((tmp_path / "sub").iterdir())) == 40 * 7 * 10  # rows at 0, 60, ..., 360; columns to 520
    boxes = prepare.subimage_boxes(480, 640, 120, 60)
    for name in made[:3] + made[-3:]:  # files of the interrupted run are whole, each its crop
        y, x = boxes[int(name[4:7]) - 1]
        hr = cv2.imread(str(tmp_path / "hr" / f"{name[:2]}.png"))[y:y + 120, x:x + 120]
        np.testing.assert_array_equal(cv2.imread(str(tmp_path / "sub" / name)), hr)


def test_prepare_lr_names_an_image_smaller_than_the_scale_and_makes_the_rest(tmp_path, photo, capsys):
    (tmp_path / "hr").mkdir()
    cv2.imwrite(str(tmp_path / "hr" / "a.png"), photo[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "hr" / "b.png"), photo[:2, :30, ::-1])
    cv2.imwrite(str(tmp_path / "hr" / "c.png"), photo[:, :, ::-1])
    assert prepare.main(["lr", str(tmp_path / "hr"), str(tmp_path / "lr")]) == 1
    assert (f"error: {tmp_path / 'hr' / 'b.png'} is 2x30, smaller than the scale 4: it has no LR image"
            in capsys.readouterr().err)
    assert sorted(p.name for p in (tmp_path / "lr").iterdir()) == ["a.png", "c.png"]


def test_infer_stops_at_an_output_it_cannot_write_or_at_ctrl_c_and_resumes(tmp_path, weights, photo, capsys,
                                                                          monkeypatch):
    src = tmp_path / "in"
    for name in ("a", "b", "c"):
        write_rgb(src / f"{name}.png", photo)
    out = tmp_path / "out"
    write = infer.write_image

    def disk_full_at_b(target, img):
        if target.name == "b.png":
            raise OSError(28, "No space left on device")
        write(target, img)

    monkeypatch.setattr(infer, "write_image", disk_full_at_b)
    assert infer.main([*TINY, f"checkpoint={weights}", f"input={src}", f"output={out}"]) == 1
    assert (f"error: could not write {out / 'b.png'} (No space left on device); each image is written whole, so "
            "those restored so far are complete") in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]  # it stopped: c would not fit either

    def ctrl_c_at_c(target, img):  # Ctrl-C while an image is restored or written
        if target.name == "c.png":
            raise KeyboardInterrupt
        write(target, img)

    monkeypatch.setattr(infer, "write_image", ctrl_c_at_c)
    assert infer.main([*TINY, f"checkpoint={weights}", f"input={src}", f"output={out}"]) == 130
    assert (f"interrupted after 1 image(s); each is written whole, so those in {out} are complete: run the same "
            "command to restore the rest.") in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    monkeypatch.setattr(infer, "write_image", write)
    assert infer.main([*TINY, f"checkpoint={weights}", f"input={src}", f"output={out}"]) == 0
    assert "restored 1 image(s) to" in capsys.readouterr().out and len(list(out.iterdir())) == 3


def test_evaluate_names_an_image_too_small_to_score_before_restoring_it(tmp_path, weights, photo, capsys,
                                                                       monkeypatch):
    one_image_benchmark(tmp_path / "bench", "Set5", photo)
    cv2.imwrite(str(tmp_path / "bench" / "Set5" / "a_thumb.png"), photo[:17, :30, ::-1])  # 16x28 once cropped; first
    monkeypatch.setattr(evaluate, "restore_by_protocol", lambda *a: pytest.fail("restored an image it cannot score"))
    assert evaluate.main([*TINY, f"checkpoint={weights}", f"data_root={tmp_path / 'bench'}",
                          f"out={tmp_path / 'table'}"]) == 1
    err = capsys.readouterr().err
    thumb = tmp_path / "bench" / "Set5" / "a_thumb.png"
    assert f"error: Set5 q10: {thumb}, cropped to a multiple of 4, is 16x28" in err
    assert "at least 19x19" in err and not list(tmp_path.glob("table*"))


def test_evaluate_refuses_an_out_it_cannot_write_before_restoring(tmp_path, weights, photo, capsys, monkeypatch):
    one_image_benchmark(tmp_path / "bench", "Set5", photo)
    (tmp_path / "file").write_text("")  # a file where out= wants a folder
    common = [*TINY, f"checkpoint={weights}", f"data_root={tmp_path / 'bench'}"]
    monkeypatch.setattr(evaluate, "restore_by_protocol", lambda *a: pytest.fail("restored before checking out="))
    assert evaluate.main([*common, f"out={tmp_path / 'file' / 'table'}"]) == 1
    assert f"error: out={tmp_path / 'file' / 'table'}: cannot write in {tmp_path / 'file'}" in capsys.readouterr().err

    monkeypatch.undo()

    def full_disk(path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(evaluate, "atomic_path", full_disk)
    assert evaluate.main([*common, f"out={tmp_path / 'table'}"]) == 1
    captured = capsys.readouterr()
    assert "| JPEG + bicubic |" in captured.out  # the results reach the user all the same
    assert "error: could not write the results beside" in captured.err and "the table above holds them" in captured.err

    def ctrl_c(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "restore_by_protocol", ctrl_c)
    assert evaluate.main([*common, f"out={tmp_path / 'stopped'}"]) == 130
    assert "interrupted; nothing was written" in capsys.readouterr().err and not list(tmp_path.glob("stopped*"))


def test_prepare_stops_at_an_output_it_cannot_write(tmp_path, photo, capsys, monkeypatch):
    write_rgb(tmp_path / "hr" / "a.png", photo)
    (tmp_path / "hr" / "bad.png").write_bytes(b"not an image")
    (tmp_path / "file").write_text("")
    # A worker reports an input it cannot read and goes on, but raises where its output cannot be written.
    assert "not a readable image" in prepare._lr((1, tmp_path / "hr" / "bad.png"), tmp_path / "lr", 4, 10, 0, "jpeg")
    with pytest.raises(OSError):
        prepare._lr((0, tmp_path / "hr" / "a.png"), tmp_path / "file" / "lr", 4, 10, 0, "jpeg")
    assert prepare.main(["lr", str(tmp_path / "hr"), str(tmp_path / "file" / "lr")]) == 1
    assert f"error: cannot write in {tmp_path / 'file' / 'lr'}" in capsys.readouterr().err

    def disk_full(jobs, fn, desc):
        raise OSError(28, "No space left on device", str(tmp_path / "lr" / "a.png"))

    monkeypatch.setattr(prepare, "run", disk_full)
    assert prepare.main(["lr", str(tmp_path / "hr"), str(tmp_path / "lr")]) == 1
    assert (f"error: could not write {tmp_path / 'lr' / 'a.png'} (No space left on device); each file is written "
            "whole, so those there are complete") in capsys.readouterr().err


def test_the_self_ensemble_is_asked_for_and_marked(tmp_path, weights, photo, capsys):
    one_image_benchmark(tmp_path / "bench", "Set5", photo)
    common = [*TINY, f"checkpoint={weights}", f"data_root={tmp_path / 'bench'}"]
    assert evaluate.main([*common, f"out={tmp_path / 'plain'}"]) == 0
    assert evaluate.main([*common, f"out={tmp_path / 'x8'}", "ensemble=true"]) == 0
    _, plain = csv_rows(tmp_path / "plain.csv")
    _, x8 = csv_rows(tmp_path / "x8.csv")
    assert set(x8) == {("jpeg", "10", "Set5", m) for m in ("bicubic", "model_x8")}
    assert x8[("jpeg", "10", "Set5", "model_x8")] != plain[("jpeg", "10", "Set5", "model")]
    assert x8[("jpeg", "10", "Set5", "bicubic")] == plain[("jpeg", "10", "Set5", "bicubic")]
    assert "| demo_cpu (x8 ensemble) |" in (tmp_path / "x8.md").read_text()
    infer_args = [*TINY, f"checkpoint={weights}", f"input={tmp_path / 'bench' / 'Set5'}"]
    assert infer.main([*infer_args, f"output={tmp_path / 'plain_out'}"]) == 0
    assert infer.main([*infer_args, f"output={tmp_path / 'x8_out'}", "ensemble=true"]) == 0
    a, b = (read_image_any(tmp_path / d / "img.png") for d in ("plain_out", "x8_out"))
    assert a.shape == b.shape == (160, 208, 3) and not np.array_equal(a, b)
    assert infer.main([*infer_args, f"output={tmp_path / 'no'}", "ensemble=maybe"]) == 1
    assert "ensemble=maybe: pass ensemble=true or ensemble=false." in capsys.readouterr().err


def test_tables_sets_evaluations_side_by_side(tmp_path, weights, photo, capsys):
    one_image_benchmark(tmp_path / "bench", "Urban100", photo)
    common = [*TINY, f"checkpoint={weights}", f"data_root={tmp_path / 'bench'}"]
    paper = "paper={table: 'Table 9', results: {10: {Urban100: [22.26, 0.6081]}}}"
    assert evaluate.main([*common, paper, f"out={tmp_path / 'runs' / 'a' / 'evaluation'}"]) == 0
    assert evaluate.main([*common, "qualities=[10,30]", "ensemble=true", f"out={tmp_path / 'b_x8'}"]) == 0
    _, a = csv_rows(tmp_path / "runs" / "a" / "evaluation.csv")
    _, b = csv_rows(tmp_path / "b_x8.csv")
    capsys.readouterr()
    assert tables.main([str(tmp_path / "runs" / "a" / "evaluation.csv"), str(tmp_path / "b_x8.csv"),
                        f"out={tmp_path / 'side.md'}"]) == 0
    table = (tmp_path / "side.md").read_text()
    assert table == capsys.readouterr().out.rstrip("\n") + "\n"
    q10, q30 = table.split("**JPEG quality 30**")
    psnr, ssim = a[("jpeg", "10", "Urban100", "model")]
    assert "| Method | Urban100 |" in q10 and q10.count("| bicubic |") == 1
    assert f"| a | {psnr:.2f} ({psnr - 22.26:+.2f}) / {ssim:.4f} |" in q10  # named after its run folder
    assert "| a: paper | 22.26 / 0.6081 |" in q10
    x8 = b[("jpeg", "10", "Urban100", "model_x8")]
    assert f"| b_x8 (x8 ensemble) | {x8[0]:.2f} / {x8[1]:.4f} |" in q10
    assert "| a |" not in q30 and "| b_x8 (x8 ensemble) |" in q30  # a was evaluated at quality 10 only
    before = (tmp_path / "b_x8.csv").read_text()
    assert tables.main([str(tmp_path / "b_x8.csv"), f"out={tmp_path / 'b_x8.csv'}"]) == 1
    assert f"out={tmp_path / 'b_x8.csv'} is one of the evaluations to read" in capsys.readouterr().err
    assert (tmp_path / "b_x8.csv").read_text() == before
    (tmp_path / "other.csv").write_text("name,value\nx,1\n")
    assert tables.main([str(tmp_path / "other.csv")]) == 1
    assert "other.csv is not a summary CSV of python -m mambacsr.evaluate" in capsys.readouterr().err


@pytest.mark.parametrize("tool", ["infer", "evaluate"])
def test_the_device_is_chosen_and_one_the_machine_lacks_is_refused(tmp_path, weights, photo, capsys, tool):
    one_image_benchmark(tmp_path / "bench", "Set5", photo)
    args = {"infer": [f"input={tmp_path / 'bench' / 'Set5'}", f"output={tmp_path / 'out'}"],
            "evaluate": [f"data_root={tmp_path / 'bench'}", f"out={tmp_path / 'table'}"]}[tool]
    main = {"infer": infer.main, "evaluate": evaluate.main}[tool]
    assert main([*TINY, f"checkpoint={weights}", *args, "device=cpu"]) == 0
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU, on any machine
    for value, says in ((missing, f"device={missing}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                                  "visible; pass device=auto, cpu"),
                        ("tpu", "device=tpu: pass device=auto, cpu, cuda or cuda:N.")):
        capsys.readouterr()
        assert main([*TINY, f"checkpoint={weights}", *args, f"device={value}"]) == 1
        assert f"error: {says}" in capsys.readouterr().err


def test_evaluate_restores_by_the_released_protocol_when_asked(tmp_path, weights, photo, capsys):
    one_image_benchmark(tmp_path / "bench", "Set5", photo)
    common = [*TINY, f"checkpoint={weights}", f"data_root={tmp_path / 'bench'}"]
    assert evaluate.main([*common, f"out={tmp_path / 'tiles'}", "save_images=true"]) == 0
    assert evaluate.main([*common, f"out={tmp_path / 'released'}", "save_images=true", "protocol=released"]) == 0
    tiles, released = (read_image_any(tmp_path / f"{run}_images" / "jpeg_q10" / "Set5" / "img.png")
                       for run in ("tiles", "released"))
    # The 10 x 13 LR image runs whole in one tile, but mirrored to 20 x 26 by the released protocol.
    lr = degrade(crop_to_scale(photo, 4), 4, 10, np.random.default_rng([0, 0]))
    model = load_weights(build_model(load_config(TINY)), weights).eval()
    with torch.no_grad():
        expected = restore_as_released(model, torch.from_numpy(lr.transpose(2, 0, 1) / 255.0).float()[None], 4)
    np.testing.assert_array_equal(released, to_uint8(expected))
    assert not np.array_equal(tiles, released)
    assert evaluate.main([*common, f"out={tmp_path / 'x'}", "protocol=basicsr"]) == 1
    assert "protocol=basicsr: pass protocol=tiles (ours, the default) or protocol=released" in capsys.readouterr().err


def test_the_released_protocol_places_cross_scale_outputs_as_the_released_code(tmp_path, weights):
    # A 32 x 16 LR image is mirrored to 64 x 32, a map of whole 8-pixel windows that is not square: there the
    # released cross-scale block misplaces its column-first outputs, and protocol=released does the same.
    one_image_benchmark(tmp_path / "bench", "Set5", embedded_images(["chelsea"])[0][:128, :64])
    common = [*TINY, f"checkpoint={weights}", f"data_root={tmp_path / 'bench'}", "save_images=true",
              "protocol=released"]
    assert evaluate.main([*common, f"out={tmp_path / 'as_released'}"]) == 0
    assert evaluate.main([*common, f"out={tmp_path / 'ours'}", "model.cross_scale.released_layout=false"]) == 0
    lr = degrade(crop_to_scale(embedded_images(["chelsea"])[0][:128, :64], 4), 4, 10, np.random.default_rng([0, 0]))
    for run, layout in (("as_released", "true"), ("ours", "false")):
        model = load_weights(build_model(load_config([*TINY, f"model.cross_scale.released_layout={layout}"])),
                             weights).eval()
        expected = restore_as_released(model, torch.from_numpy(lr.transpose(2, 0, 1) / 255.0).float()[None], 4)
        saved = read_image_any(tmp_path / f"{run}_images" / "jpeg_q10" / "Set5" / "img.png")
        np.testing.assert_array_equal(saved, to_uint8(expected))
    assert not np.array_equal(*(read_image_any(tmp_path / f"{run}_images" / "jpeg_q10" / "Set5" / "img.png")
                                for run in ("as_released", "ours")))


def test_infer_restores_by_the_released_protocol_when_asked(tmp_path, weights, capsys):
    # For outputs that match the authors' own (a baseline in a comparison): their partitions and their placement.
    lr = embedded_images(["chelsea"])[0][:32, :16]
    cv2.imwrite(str(tmp_path / "lr.png"), lr[:, :, ::-1])
    common = [*TINY, f"checkpoint={weights}", f"input={tmp_path / 'lr.png'}"]
    assert infer.main([*common, f"output={tmp_path / 'released.png'}", "protocol=released"]) == 0
    model = load_weights(build_model(load_config([*TINY, "model.cross_scale.released_layout=true"])), weights).eval()
    expected = restore_as_released(model, torch.from_numpy(lr.transpose(2, 0, 1) / 255.0).float()[None], 4)
    np.testing.assert_array_equal(read_image_any(tmp_path / "released.png"), to_uint8(expected))
    assert infer.main([*common, f"output={tmp_path / 'tiles.png'}"]) == 0
    assert not np.array_equal(read_image_any(tmp_path / "tiles.png"), read_image_any(tmp_path / "released.png"))
    capsys.readouterr()
    assert infer.main([*common, f"output={tmp_path / 'x.png'}", "protocol=basicsr"]) == 1
    assert "protocol=basicsr: pass protocol=tiles (ours, the default) or protocol=released" in capsys.readouterr().err


def test_evaluate_writes_the_paper_table(tmp_path, weights, photo):
    for name in ("Set5", "Urban100"):
        (tmp_path / "bench" / name / "HR").mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "bench" / name / "HR" / "img.png"), photo[:, :, ::-1])
    out = tmp_path / "table"
    assert evaluate.main([*TINY, f"checkpoint={weights}", f"data_root={tmp_path / 'bench'}", "qualities=[10,30]",
                          f"out={out}"]) == 0
    table = out.with_suffix(".md").read_text()
    assert "| Method | Set5 | Urban100 |" in table and "JPEG + bicubic" in table and "quality 30" in table
    rows = out.with_suffix(".csv").read_text().splitlines()
    assert rows[0] == "codec,quality,benchmark,method,psnr,ssim" and len(rows) == 1 + 2 * 2 * 2
    assert evaluate.main([*TINY, f"checkpoint={weights}", f"data_root={tmp_path / 'none'}"]) == 1


def test_evaluate_writes_each_images_scores_and_the_restored_images(tmp_path, weights, photo):
    one_image_benchmark(tmp_path / "bench", "Set5", photo)
    write_rgb(tmp_path / "bench" / "Set5" / "second.png", photo[::-1, ::-1])
    out = tmp_path / "table"
    assert evaluate.main([*TINY, f"checkpoint={weights}", f"data_root={tmp_path / 'bench'}", "qualities=[10,30]",
                          f"out={out}", "save_images=true"]) == 0
    header, means = csv_rows(tmp_path / "table.csv")
    header, each = csv_rows(tmp_path / "table_per_image.csv")
    assert header == ["codec", "quality", "benchmark", "image", "method", "psnr", "ssim"]
    assert len(each) == 2 * 2 * 2  # qualities, images, methods
    for quality in ("10", "30"):
        for method in ("bicubic", "model"):
            scores = [each[("jpeg", quality, "Set5", image, method)] for image in ("img", "second")]
            assert abs(np.mean([p for p, _ in scores]) - means[("jpeg", quality, "Set5", method)][0]) < 1e-3
    # The images saved are the ones scored.
    for image, hr in (("img", photo), ("second", photo[::-1, ::-1])):
        saved = read_image_any(tmp_path / "table_images" / "jpeg_q30" / "Set5" / f"{image}.png")
        assert saved.shape == (40, 52, 3)
        assert abs(calculate_psnr(saved, hr, 4, True) - each[("jpeg", "30", "Set5", image, "model")][0]) < 1e-3
    assert evaluate.main([*TINY, f"checkpoint={weights}", f"data_root={tmp_path / 'bench'}", f"out={out}",
                          "save_images=maybe"]) == 1


def test_evaluate_sets_the_papers_figures_beside_ours(tmp_path, weights, photo):
    one_image_benchmark(tmp_path / "bench", "Urban100", photo)
    out = tmp_path / "table"
    paper = "paper={table: 'Table 9', results: {10: {Urban100: [22.26, 0.6081], Set5: [25.2, 0.7209]}}}"
    assert evaluate.main([*TINY, paper, f"checkpoint={weights}", f"data_root={tmp_path / 'bench'}",
                          "qualities=[10,30]", f"out={out}"]) == 0
    _, rows = csv_rows(out.with_suffix(".csv"))
    ours = rows[("jpeg", "10", "Urban100", "model")]
    assert rows[("jpeg", "10", "Urban100", "paper")] == (22.26, 0.6081)
    assert ("jpeg", "30", "Urban100", "paper") not in rows and ("jpeg", "10", "Set5", "paper") not in rows
    table = out.with_suffix(".md").read_text()
    quality10, quality30 = table.split("**JPEG quality 30**")
    assert "| paper: Table 9 | 22.26 / 0.6081 |" in quality10
    assert f"| ours - paper | {ours[0] - 22.26:+.2f} / {ours[1] - 0.6081:+.4f} |" in quality10
    assert "paper" not in quality30


def write_rgb(path, img):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img[:, :, ::-1])


def csv_rows(path):
    """evaluate's CSV: its header, and ``(LR condition's columns..., benchmark, method) -> (psnr, ssim)``."""
    header, *lines = [line.split(",") for line in path.read_text().split()]
    return header, {tuple(r[:-2]): tuple(float(v) for v in r[-2:]) for r in lines}


def test_evaluate_on_given_lr_images(tmp_path, weights, photo, capsys):
    one_image_benchmark(tmp_path / "bench", "Set5", photo)
    one_image_benchmark(tmp_path / "bench", "Urban100", photo)  # no LR folder for it: skipped
    hr = crop_to_scale(photo, 4)
    # The LR image evaluate itself makes at quality 10 (seeded by the set's image index), stored losslessly.
    write_rgb(tmp_path / "same" / "Set5" / "img.png", degrade(hr, 4, 10, np.random.default_rng([0, 0])))
    write_rgb(tmp_path / "clean" / "Set5" / "LR" / "img.png", imresize(hr, hr.shape[0] // 4, hr.shape[1] // 4))
    common = [*TINY, f"checkpoint={weights}", f"data_root={tmp_path / 'bench'}"]
    assert evaluate.main([*common, "qualities=[10]", f"out={tmp_path / 'q10'}"]) == 0
    assert evaluate.main([*common, f"lr_root={tmp_path / 'same'}", f"out={tmp_path / 'same'}"]) == 0
    assert f"note: Urban100 skipped, no LR folder for it under {tmp_path / 'same'}" in capsys.readouterr().err
    assert evaluate.main([*common, f"lr_root={tmp_path / 'clean'}", f"out={tmp_path / 'clean'}"]) == 0
    _, jpeg = csv_rows(tmp_path / "q10.csv")
    header, same = csv_rows(tmp_path / "same.csv")
    _, clean = csv_rows(tmp_path / "clean.csv")
    assert header == ["lr_root", "benchmark", "method", "psnr", "ssim"]
    assert set(same) == {(str(tmp_path / "same"), "Set5", m) for m in ("bicubic", "model")}
    for method in ("bicubic", "model"):  # the same LR image gives the same figures
        assert same[(str(tmp_path / "same"), "Set5", method)] == jpeg[("jpeg", "10", "Set5", method)]
    # Without JPEG's blocks the bicubic upsampling comes closer to the ground truth: the given images were read.
    assert clean[(str(tmp_path / "clean"), "Set5", "bicubic")][0] > jpeg[("jpeg", "10", "Set5", "bicubic")][0] + 1.0
    table = (tmp_path / "clean.md").read_text()
    assert f"**LR images from {tmp_path / 'clean'}**" in table and "| LR + bicubic |" in table
    assert "Urban100" not in table and "JPEG" not in table


def test_evaluate_with_another_codec(tmp_path, weights, photo):
    one_image_benchmark(tmp_path / "bench", "Urban100", photo)
    common = [*TINY, "paper={table: 'Table 1', results: {10: {Urban100: [22.26, 0.6081]}}}", f"checkpoint={weights}",
              f"data_root={tmp_path / 'bench'}"]
    assert evaluate.main([*common, "codec=webp", f"out={tmp_path / 'webp'}"]) == 0
    assert evaluate.main([*common, f"out={tmp_path / 'jpeg'}"]) == 0
    header, webp = csv_rows(tmp_path / "webp.csv")
    _, jpeg = csv_rows(tmp_path / "jpeg.csv")
    assert header[:2] == ["codec", "quality"]
    assert set(webp) == {("webp", "10", "Urban100", m) for m in ("bicubic", "model")}
    assert webp[("webp", "10", "Urban100", "bicubic")] != jpeg[("jpeg", "10", "Urban100", "bicubic")]
    table = (tmp_path / "webp.md").read_text()
    assert "**WebP quality 10**" in table and "| WebP + bicubic |" in table
    assert "paper" not in table  # the paper's figures are JPEG's
    assert ("jpeg", "10", "Urban100", "paper") in jpeg
    assert evaluate.main([*common, "codec=gif", f"out={tmp_path / 'gif'}"]) == 1


def test_evaluate_reads_the_released_test_sets_layout(tmp_path, weights, photo):
    # Testsets/<set>/{HR,LR_q10}, DIV2K's LR images named 0801x4.png: lr_root names the LR folder with {set}.
    write_rgb(tmp_path / "Testsets" / "DIV2K" / "HR" / "0801.png", photo)
    lr = degrade(crop_to_scale(photo, 4), 4, 10, np.random.default_rng([0, 0]))
    write_rgb(tmp_path / "Testsets" / "DIV2K" / "LR_q10" / "0801x4.png", lr)
    common = [*TINY, f"checkpoint={weights}", f"data_root={tmp_path / 'Testsets'}"]
    assert evaluate.main([*common, f"out={tmp_path / 'q10'}"]) == 0
    assert evaluate.main([*common, f"lr_root={tmp_path / 'Testsets'}/{{set}}/LR_q10", f"out={tmp_path / 'given'}"]) == 0
    _, made = csv_rows(tmp_path / "q10.csv")
    _, given = csv_rows(tmp_path / "given.csv")
    template = f"{tmp_path / 'Testsets'}/{{set}}/LR_q10"
    assert given[(template, "DIV2K", "model")] == made[("jpeg", "10", "DIV2K", "model")]


@pytest.mark.parametrize("case,says", [
    ("qualities=[10]", "qualities= and codec= make LR images from the HR images, and lr_root= gives the LR images"),
    ("codec=jpeg", "qualities= and codec= make LR images from the HR images, and lr_root= gives the LR images"),
    ("missing", "1 HR images have no LR partner in"),
    ("size", "is 12x13, expected 10x13 for its HR image at scale 4"),
    ("no folder", "holds no LR folder for the benchmarks found in data_root (Set5); name each after its set"),
])
def test_evaluate_refuses_lr_images_it_cannot_pair(tmp_path, weights, photo, capsys, case, says):
    one_image_benchmark(tmp_path / "bench", "Set5", photo)
    lr_image = {"missing": ("Set5/other.png", 10, 13), "size": ("Set5/img.png", 12, 13),
                "no folder": ("Set14/img.png", 10, 13)}.get(case, ("Set5/img.png", 10, 13))
    write_rgb(tmp_path / "lr" / lr_image[0], photo[:lr_image[1], :lr_image[2]])
    extra = [case] if "=" in case else []
    assert evaluate.main([*TINY, f"checkpoint={weights}", f"data_root={tmp_path / 'bench'}",
                          f"lr_root={tmp_path / 'lr'}", *extra, f"out={tmp_path / 'table'}"]) == 1
    assert says in capsys.readouterr().err and not (tmp_path / "table.md").exists()


@pytest.mark.parametrize("option,says", [
    ("tile=abc", "tile=abc: pass the tile's side"), ("tile=-3", "tile=-3: pass the tile's side"),
    ("overlap=-1", "overlap=-1: pass the pixels neighbouring tiles share, a whole number from 0 and less than the "
                   "tile (128)"),  # tile=auto on the CPU
    ("overlap=128", "overlap=128: pass"), ("overlap=1.5", "overlap=1.5: pass"), ("tile=automatic", "tile=automatic")])
def test_infer_refuses_bad_tiling_before_restoring(tmp_path, weights, photo, capsys, option, says):
    # The 40 x 52 photo fits one tile, so a bad overlap would otherwise pass unnoticed until a larger image.
    cv2.imwrite(str(tmp_path / "a.png"), photo)
    out = tmp_path / "out"
    assert infer.main([*TINY, f"checkpoint={weights}", f"input={tmp_path / 'a.png'}", f"output={out}", option]) == 1
    assert says in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("option,tile", [(None, 128), ("tile=auto", 128), ("tile=256", 256), ("tile=null", None)])
def test_infer_restores_the_cpu_in_128_pixel_tiles_by_default(tmp_path, weights, photo, monkeypatch, option, tile):
    # A 256-pixel tile of the paper's network takes several GB of a CPU's memory, which a laptop may not have.
    cv2.imwrite(str(tmp_path / "a.png"), photo)
    seen = []
    real = infer.restore_by_protocol
    monkeypatch.setattr(infer, "restore_by_protocol", lambda model, x, scale, protocol, tile, overlap:
                        seen.append(tile) or real(model, x, scale, protocol, tile, overlap))
    args = [*TINY, f"checkpoint={weights}", f"input={tmp_path / 'a.png'}", f"output={tmp_path / 'out.png'}",
            "device=cpu"]
    assert infer.main(args + ([option] if option else [])) == 0
    assert seen == [tile] and (tmp_path / "out.png").is_file()


def test_infer_takes_any_overlap_without_tiles(tmp_path, weights, photo):
    cv2.imwrite(str(tmp_path / "a.png"), photo)
    assert infer.main([*TINY, f"checkpoint={weights}", f"input={tmp_path / 'a.png'}", f"output={tmp_path / 'out'}",
                       "tile=null", "overlap=500"]) == 0
    assert read_image_any(tmp_path / "out" / "a.png").shape == (160, 208, 3)


def test_evaluate_checks_tiling_before_restoring(tmp_path, weights, photo, capsys):
    # Its overlap was fixed at 16, so tile=8 failed only at the first image larger than a tile.
    one_image_benchmark(tmp_path / "bench", "Set5", photo)
    common = [*TINY, f"checkpoint={weights}", f"data_root={tmp_path / 'bench'}", f"out={tmp_path / 'table'}"]
    assert evaluate.main([*common, "tile=8"]) == 1
    assert "overlap=16: pass the pixels neighbouring tiles share, a whole number from 0 and less than the tile (8)" \
        in capsys.readouterr().err
    assert evaluate.main([*common, "tile=8", "overlap=2"]) == 0


@pytest.mark.parametrize("qualities", ["[10,abc]", "[0]", "[10,101]", "[]"])
def test_evaluate_refuses_bad_qualities_before_restoring(tmp_path, weights, photo, capsys, qualities):
    one_image_benchmark(tmp_path / "bench", "Set5", photo)
    assert evaluate.main([*TINY, f"checkpoint={weights}", f"data_root={tmp_path / 'bench'}",
                          f"qualities={qualities}", f"out={tmp_path / 'table'}"]) == 1
    assert f"qualities={qualities}: pass qualities from 1 to 100" in capsys.readouterr().err
    assert not (tmp_path / "table.md").exists()


@pytest.mark.parametrize("mode,option,says", [
    ("lr", "quality=abc", "quality=abc: pass a whole number from 1 to 100."),
    ("lr", "quality=101", "quality=101: pass a whole number from 1 to 100."),
    ("lr", "scale=0", "scale=0: pass a whole number, at least 1."),  # was: modulo by zero in each worker
    ("lr", "seed=-1", "seed=-1: pass a whole number, at least 0."),
    ("lr", "size=240", "size=240: lr takes quality=, scale=, seed=, codec="),  # an option of the other mode
    ("lr", "codec=jpg", "codec='jpg': pass one of jpeg, webp, avif."),
    ("subimages", "step=0", "step=0: pass a whole number, at least 1."),
    ("subimages", "size=0", "size=0: pass a whole number, at least 1."),  # was: an OpenCV assertion
    ("subimages", "quality=10", "quality=10: subimages takes size=, step="),
])
def test_prepare_refuses_bad_options_before_writing(tmp_path, photo, capsys, mode, option, says):
    (tmp_path / "hr").mkdir()
    cv2.imwrite(str(tmp_path / "hr" / "a.png"), photo)
    out = tmp_path / "out"
    assert prepare.main([mode, str(tmp_path / "hr"), str(out), option]) == 1
    assert f"error: {says}" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("mode", ["lr", "subimages"])
def test_prepare_refuses_the_input_folder_as_its_output(tmp_path, photo, capsys, mode):
    (tmp_path / "hr").mkdir()
    cv2.imwrite(str(tmp_path / "hr" / "a.jpg"), photo)
    assert prepare.main([mode, str(tmp_path / "hr"), str(tmp_path / "hr" / ".")]) == 1
    assert (f"error: {tmp_path / 'hr' / '.'} is the input folder: its outputs would be skipped as made"
            in capsys.readouterr().err)
    assert [p.name for p in (tmp_path / "hr").iterdir()] == ["a.jpg"]


def test_a_misspelt_option_names_the_tools_options(tmp_path, weights, photo, capsys):
    # tiles= is not infer's option, so it reaches Hydra as an override of a key the config lacks.
    cv2.imwrite(str(tmp_path / "a.png"), photo)
    assert infer.main([*TINY, f"checkpoint={weights}", f"input={tmp_path / 'a.png'}", f"output={tmp_path / 'out'}",
                       "tiles=128"]) == 1
    err = capsys.readouterr().err
    assert "error: Could not override 'tiles'." in err
    assert "This tool's own options: checkpoint=, input=, output=, tile=, overlap=, overwrite=, ensemble=, " \
           "device=, protocol=." in err
    assert complexity.main(["+experiment=demo_cpu", "size=abc"]) == 1
    assert "error: size=abc: pass a whole number, at least 1." in capsys.readouterr().err
    assert complexity.main(["+experiment=demo_cpu", "model.embed_dims=8"]) == 1
    assert "This tool's own options: size=." in capsys.readouterr().err


def test_infer_writes_one_input_to_a_named_image(tmp_path, weights, photo, capsys):
    cv2.imwrite(str(tmp_path / "a.png"), photo)
    target = tmp_path / "restored" / "a_x4.png"
    assert infer.main([*TINY, f"checkpoint={weights}", f"input={tmp_path / 'a.png'}", f"output={target}"]) == 0
    assert read_image_any(target).shape == (160, 208, 3) and target.is_file()
    assert capsys.readouterr().out.strip() == f"restored 1 image(s) to {target}"


@pytest.mark.parametrize("output,folder_input,says", [
    ("taken.txt", False, "is a file: pass a folder for the restored images, or, for one input file, the image"),
    ("x4.png", True, "names an image, but input is a folder: pass a folder"),  # was: a folder named x4.png
])
def test_infer_refuses_an_output_it_cannot_write_to(tmp_path, weights, photo, capsys, output, folder_input, says):
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), photo)
    (tmp_path / "taken.txt").write_text("keep me")
    source = tmp_path / "in" if folder_input else tmp_path / "in" / "a.png"
    assert infer.main([*TINY, f"checkpoint={weights}", f"input={source}", f"output={tmp_path / output}"]) == 1
    assert f"output={tmp_path / output} {says}" in capsys.readouterr().err
    assert (tmp_path / "taken.txt").read_text() == "keep me" and not (tmp_path / "x4.png").exists()


def test_infer_refuses_to_write_over_its_inputs(tmp_path, weights, photo, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), photo)
    cv2.imwrite(str(folder / "b.jpg"), photo)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    common = [*TINY, f"checkpoint={weights}", "overwrite=true"]
    assert infer.main([*common, f"input={folder}", f"output={tmp_path / 'x' / '..' / 'photos'}"]) == 1
    assert "is the input folder: a later run would take the restored images for inputs" in capsys.readouterr().err
    for output in (folder, folder / "a.png"):
        assert infer.main([*common, f"input={folder / 'a.png'}", f"output={output}"]) == 1
        assert (f"output={output} would overwrite the input {folder / 'a.png'} with its restoration: pick another "
                f"image name or folder (e.g. output={folder / 'a_x4.png'})") in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    # One JPEG restored beside itself is another file: allowed.
    assert infer.main([*common, f"input={folder / 'b.jpg'}", f"output={folder}"]) == 0
    assert read_image_any(folder / "b.png").shape == (160, 208, 3)


def test_infer_refuses_an_overwrite_flag_it_cannot_read(tmp_path, weights, photo, capsys):
    cv2.imwrite(str(tmp_path / "a.png"), photo)
    assert infer.main([*TINY, f"checkpoint={weights}", f"input={tmp_path / 'a.png'}", f"output={tmp_path / 'o'}",
                       "overwrite=maybe"]) == 1
    assert "overwrite=maybe: pass overwrite=true or overwrite=false." in capsys.readouterr().err


@pytest.mark.parametrize("tool,usage", [
    (infer, "python -m mambacsr.infer +experiment=dis_w8 checkpoint=W input=IN output=OUT"),
    (evaluate, "checkpoint=runs/dis_w8/model_ema.safetensors \\\n        data_root=datasets/benchmarks"),
    (complexity, "python -m mambacsr.complexity +experiment=dis_w8 [size=64]"),
    (tables, "python -m mambacsr.tables runs/dis_w4/evaluation.csv"),
    (significance, "python -m mambacsr.significance runs/dis_w8_noxs/evaluation_per_image.csv"),
    (receptive_field, "python -m mambacsr.receptive_field +experiment=mambair checkpoint=W")])
def test_help_prints_the_usage(capsys, tool, usage):
    assert tool.main(["--help"]) == 0  # was an error: --help went to Hydra as an override
    assert usage in capsys.readouterr().out


@pytest.mark.parametrize("img,says", [
    (np.full((8, 8, 3), 0.5),
     "restore_array takes uint8 or uint16 images, as read_image_any returns them, got float64"),
    (np.zeros((8, 8, 2), np.uint8), r"\(H, W, 4\) RGBA images, got shape \(8, 8, 2\)"),
    (np.zeros((2, 8, 8, 3), np.uint8), r"got shape \(2, 8, 8, 3\)"),
])
def test_restore_array_refuses_images_it_would_misread(img, says):
    # A float image in [0, 1] was divided by 255 like an 8-bit one and came back dark, without a word.
    model = build_model(load_config(TINY)).eval()
    with pytest.raises(ValueError, match=says):
        infer.restore_array(model, img, 4, "cpu", None, 0)


def test_unreadable_checkpoints_are_clear_errors(tmp_path, weights, photo, capsys):
    cv2.imwrite(str(tmp_path / "a.png"), photo)
    (tmp_path / "cut.safetensors").write_bytes(weights.read_bytes()[:5000])  # was a SafetensorError traceback
    (tmp_path / "junk.pt").write_text("junk")
    for name, says in (("cut.safetensors", "it is truncated, or not a .safetensors file."),
                       ("junk.pt", "it is truncated, or not a PyTorch checkpoint")):
        assert infer.main([*TINY, f"checkpoint={tmp_path / name}", f"input={tmp_path / 'a.png'}",
                           f"output={tmp_path / 'out'}"]) == 1
        assert f"error: could not read checkpoint {tmp_path / name} (" in (err := capsys.readouterr().err), err
        assert says in err
    # A run folder passed as the checkpoint: its exported weights are named, else its newest training checkpoint.
    run = tmp_path / "runs" / "demo"
    (run / "checkpoints").mkdir(parents=True)
    for name in ("iter_00000002.pt", "iter_00000010.pt", "model_ema.safetensors"):
        target = run / name if name.endswith(".safetensors") else run / "checkpoints" / name
        target.write_bytes(weights.read_bytes())
        assert infer.main([*TINY, f"checkpoint={run}", f"input={tmp_path / 'a.png'}",
                           f"output={tmp_path / 'out'}"]) == 1
        err = capsys.readouterr().err
        assert f"error: checkpoint {run} is a folder: pass the weights in it, e.g. checkpoint={target}." in err
    assert not (tmp_path / "out").exists()


def test_running_out_of_memory_advises_a_smaller_tile(tmp_path, weights, photo, capsys, monkeypatch):
    # A GPU's out-of-memory error (raised here by the network) names the tile and a smaller one for that image, and
    # the other images are still restored.
    (tmp_path / "in").mkdir()
    for name in ("a", "b"):
        cv2.imwrite(str(tmp_path / "in" / f"{name}.png"), photo)
    real, calls = infer.restore_by_protocol, []

    def restore_or_run_out(model, x, *args):  # the first image runs out of memory
        calls.append(x.shape)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, x, *args)

    monkeypatch.setattr(infer, "restore_by_protocol", restore_or_run_out)
    assert infer.main([*TINY, f"checkpoint={weights}", f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}",
                       "tile=64"]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'in' / 'a.png'}: out of memory restoring tile=64: pass a smaller tile, e.g. tile=32" in err
    assert "1 of 2 image(s) failed; restored 1 image(s)" in err


def test_evaluate_out_of_memory_advises_a_smaller_tile(tmp_path, weights, photo, capsys, monkeypatch):
    one_image_benchmark(tmp_path / "bench", "Set5", photo)

    def run_out(*args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(evaluate, "restore_by_protocol", run_out)
    assert evaluate.main([*TINY, f"checkpoint={weights}", f"data_root={tmp_path / 'bench'}", "tile=null",
                          f"out={tmp_path / 'table'}"]) == 1
    assert ("error: out of memory restoring whole images (tile=null): pass a smaller tile, e.g. tile=128"
            in capsys.readouterr().err)
    assert not (tmp_path / "table.md").exists()
