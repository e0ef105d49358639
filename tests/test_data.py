"""The degradation against direct OpenCV / NumPy / Pillow computations, and the datasets' determinism."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from mambacsr.data import degrade, imresize
from mambacsr.data.datasets import ImageSource, IterationBatches, TrainPatches, embedded_images, validation_images
from mambacsr.data.degrade import _opencv_encodes, check_codec
from mambacsr.data.resize import resize_matrix
from mambacsr.metrics import calculate_psnr


@pytest.fixture(scope="module")
def photo():
    return embedded_images(["astronaut"])[0]


def test_bicubic_kernel_rows_by_hand():
    # Upscaling 8 -> 16 without antialias: output pixel 1 sits at input coordinate u = 2/2 + 0.25 = 1.25 (1-based),
    # so it takes the cubic (a = -0.5) weights at distances 1.25, 0.25, 0.75, 1.75 from 1-based pixels 0, 1, 2, 3;
    # pixel 0 mirrors onto pixel 1.  By hand: w(0.25) = 0.8671875, w(0.75) = 0.2265625, w(1.25) = -0.0703125,
    # w(1.75) = -0.0234375.
    m = resize_matrix(8, 16)
    np.testing.assert_allclose(m[1, :4], [0.8671875 - 0.0703125, 0.2265625, -0.0234375, 0.0], atol=1e-12)
    # Every row of a resampling matrix sums to one (constant images stay constant).
    np.testing.assert_allclose(resize_matrix(37, 9).sum(1), 1.0, atol=1e-12)


def test_downsample_matches_pillow_bicubic(photo):
    # Pillow's BICUBIC is antialiased with a = -0.5 too; the two agree to about 50 dB (rounding aside).
    ours = imresize(photo, 128, 128)
    pil = np.asarray(Image.fromarray(photo).resize((128, 128), Image.BICUBIC))
    assert calculate_psnr(ours, pil, 0) > 45
    # cv2's INTER_CUBIC does not antialias: clearly different, which is why we do not call it bicubic.
    cv = cv2.resize(photo, (128, 128), interpolation=cv2.INTER_CUBIC)
    assert calculate_psnr(cv, pil, 0) < calculate_psnr(ours, pil, 0) - 5


def test_degrade_is_crop_resize_then_opencv_jpeg(photo):
    hr = photo[:203, :198]  # not multiples of 4: cropped to 200 x 196
    lr = degrade(hr, scale=4, quality=10)
    assert lr.shape == (50, 49, 3) and lr.dtype == np.uint8
    small = imresize(hr[:200, :196], 50, 49)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 10])
    expected = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(lr, expected)
    # Quality matters: q30 is closer to the clean downsample than q10.
    assert calculate_psnr(degrade(hr, 4, 30), small, 0) > calculate_psnr(lr, small, 0) + 1


@pytest.mark.parametrize("codec,extension,flag", [("webp", ".webp", "IMWRITE_WEBP_QUALITY"),
                                                  ("avif", ".avif", "IMWRITE_AVIF_QUALITY")])
def test_degrade_with_another_codec_is_opencvs_encoder(photo, codec, extension, flag):
    hr = photo[:203, :198]
    lr = degrade(hr, scale=4, quality=10, codec=codec)
    small = imresize(hr[:200, :196], 50, 49)
    ok, buf = cv2.imencode(extension, cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [getattr(cv2, flag), 10])
    np.testing.assert_array_equal(lr, cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))
    assert not np.array_equal(lr, degrade(hr, scale=4, quality=10))  # not JPEG's
    assert calculate_psnr(degrade(hr, 4, 60, codec=codec), small, 0) > calculate_psnr(lr, small, 0) + 1


def test_codec_lists_are_drawn_with_the_rng_after_the_quality(photo):
    hr = photo[:64, :64]
    one = {c: degrade(hr, 4, 20, codec=c) for c in ("jpeg", "webp")}
    drawn = [degrade(hr, 4, 20, np.random.default_rng(s), ["jpeg", "webp"]) for s in range(8)]
    assert all(any(np.array_equal(d, one[c]) for c in one) for d in drawn)
    assert {next(c for c in one if np.array_equal(d, one[c])) for d in drawn} == {"jpeg", "webp"}
    for s in range(3):  # the codec is drawn after the quality, from the same generator
        rng = np.random.default_rng(s)
        quality = int(rng.choice([10, 30]))
        codec = str(rng.choice(["jpeg", "avif"]))
        np.testing.assert_array_equal(degrade(hr, 4, [10, 30], np.random.default_rng(s), ["jpeg", "avif"]),
                                      degrade(hr, 4, quality, codec=codec))
    np.testing.assert_array_equal(degrade(hr, 4, 20, codec=["webp"]), one["webp"])
    with pytest.raises(ValueError, match=r"codec=\['jpeg', 'gif'\]: pass one of jpeg, webp, avif, or a list"):
        degrade(hr, codec=["jpeg", "gif"])


def test_codecs_opencv_lacks_or_does_not_have_are_refused(photo, monkeypatch):
    with pytest.raises(ValueError, match="codec='gif': pass one of jpeg, webp, avif."):
        degrade(photo[:8, :8], codec="gif")
    monkeypatch.delattr(cv2, "IMWRITE_AVIF_QUALITY")  # an OpenCV built without libavif
    _opencv_encodes.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"codec=avif: this OpenCV \(.*\) cannot encode AVIF; install"):
            check_codec("avif")
    finally:
        _opencv_encodes.cache_clear()


def test_image_sources_degrade_with_the_codec_asked_for(photo):
    source = ImageSource([photo[:64, :64]])
    for codec in ("jpeg", "webp"):
        lr, _ = source.pair(0, 4, 20, seed=5, codec=codec)
        np.testing.assert_array_equal(lr, degrade(photo[:64, :64], 4, 20, np.random.default_rng([5, 0]), codec))
    assert not np.array_equal(source.pair(0, 4, 20, 5, "jpeg")[0], source.pair(0, 4, 20, 5, "webp")[0])


def test_quality_lists_are_drawn_with_the_rng(photo):
    hr = photo[:64, :64]
    a = degrade(hr, 4, [10, 30], np.random.default_rng(1))
    b = degrade(hr, 4, [10, 30], np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    drawn = {degrade(hr, 4, [10, 30], np.random.default_rng(s)).tobytes() for s in range(8)}
    assert len(drawn) == 2


@pytest.mark.parametrize("bad, match", [
    (np.zeros((8, 8), np.uint8), "HxWx3 uint8"), (np.zeros((8, 8, 3), np.float32), "HxWx3 uint8"),
    (np.zeros((3, 8, 3), np.uint8), "smaller than the scale"),
])
def test_degrade_rejects_bad_images(bad, match):
    with pytest.raises(ValueError, match=match):
        degrade(bad)
    with pytest.raises(ValueError, match="quality must be an integer in 1..100"):
        degrade(np.zeros((8, 8, 3), np.uint8), quality=[0])


def test_train_patches_are_a_function_of_the_key():
    source = ImageSource(embedded_images(["coffee", "rocket"]), names=["coffee", "rocket"])
    data = TrainPatches(source, 4, [10, 30], patch=16, augment=True, seed=3)
    lr, hr = data[12345]
    assert lr.shape == (3, 16, 16) and hr.shape == (3, 64, 64)
    lr2, hr2 = data[12345]
    assert torch.equal(lr, lr2) and torch.equal(hr, hr2)
    assert not torch.equal(data[12346][0], lr)
    # the LR patch is the degraded HR patch's partner: downsampling the HR patch lands near it
    down = imresize((hr.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), 16, 16)
    assert calculate_psnr((lr.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), down, 0) > 20


def test_iteration_batches_split_ranks_and_resume():
    full = list(IterationBatches(0, 4, 3, rank=1, world=2))
    assert full[0] == [3, 4, 5] and full[1] == [9, 10, 11]
    assert list(IterationBatches(2, 4, 3, rank=1, world=2)) == full[2:]


def test_folders_pair_up_and_missing_folders_are_clear(tmp_path):
    (tmp_path / "hr").mkdir()
    (tmp_path / "lr").mkdir()
    img = embedded_images(["chelsea"])[0][:32, :32]
    cv2.imwrite(str(tmp_path / "hr" / "a.png"), img)
    with pytest.raises(FileNotFoundError, match="holds no images"):
        ImageSource.from_folders(tmp_path / "hr", tmp_path / "lr")
    (tmp_path / "sets" / "DIV2K_train_HR").mkdir(parents=True)  # DF2K's sets copied in as folders
    (tmp_path / "sets" / "Flickr2K_HR").mkdir()
    with pytest.raises(FileNotFoundError, match=r"holds no images \(.*\); images are read from the folder itself, "
                                                r"not from its subfolders \(DIV2K_train_HR, Flickr2K_HR\)"):
        ImageSource.from_folders(tmp_path / "sets")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageSource.from_folders(tmp_path / "nope")
    cv2.imwrite(str(tmp_path / "lr" / "a.png"), img[::4, ::4])
    source = ImageSource.from_folders(tmp_path / "hr", tmp_path / "lr")
    assert [Path(p).name for p in source.lr] == ["a.png"]
    # Pairs go by stem: a second LR image of stem "a", or a second HR one, would pair one image with another's
    # partner.
    cv2.imwrite(str(tmp_path / "lr" / "a.jpg"), img[::4, ::4])
    with pytest.raises(ValueError, match="a.jpg and a.png in .*lr share the name 'a'"):
        ImageSource.from_folders(tmp_path / "hr", tmp_path / "lr")
    (tmp_path / "lr" / "a.jpg").unlink()
    cv2.imwrite(str(tmp_path / "hr" / "a.bmp"), img)
    with pytest.raises(ValueError, match="a.bmp and a.png in .*hr share the name 'a'"):
        ImageSource.from_folders(tmp_path / "hr", tmp_path / "lr")
    assert len(ImageSource.from_folders(tmp_path / "hr")) == 2  # degraded on the fly: nothing pairs by stem


def test_lr_images_named_with_the_scale_pair_up(tmp_path):
    # DIV2K's LR images are named after their HR image and the scale: 0801.png pairs with 0801x4.png.
    img = embedded_images(["chelsea"])[0][:32, :32]
    for folder, name, image in (("hr", "0801", img), ("hr", "0802", img), ("lr", "0801x4", img[::4, ::4]),
                                ("lr", "0802", img[::4, ::4])):
        (tmp_path / folder).mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / folder / f"{name}.png"), image)
    source = ImageSource.from_folders(tmp_path / "hr", tmp_path / "lr")
    assert [Path(p).name for p in source.lr] == ["0801x4.png", "0802.png"]


def test_images_too_small_to_degrade_or_score_are_named(tmp_path):
    img = embedded_images(["chelsea"])[0]
    (tmp_path / "hr").mkdir()
    cv2.imwrite(str(tmp_path / "hr" / "a.png"), img[:40, :40])
    cv2.imwrite(str(tmp_path / "hr" / "b.png"), img[:40, :3])  # narrower than the scale: no LR image exists
    source = ImageSource.from_folders(tmp_path / "hr")
    assert source.pair(0, 4, 10, 0)[1].shape == (40, 40, 3)
    with pytest.raises(ValueError, match=r"HR image .*b\.png is 40x3, smaller than the scale 4"):
        source.pair(1, 4, 10, 0)
    (tmp_path / "train").mkdir()
    cv2.imwrite(str(tmp_path / "train" / "c.png"), img[:40, :12])  # a 10x3 LR image, narrower than the patch
    with pytest.raises(ValueError, match=r"training image .*c\.png gives a 10x3 LR image, smaller than the 4x4"):
        TrainPatches(ImageSource.from_folders(tmp_path / "train"), 4, 10, 4, False, 0)[0]
    # Validation scores with a crop of the scale: 19x19 pixels hold SSIM's 11x11 window, 18x18 do not.  A run checks
    # at its start, before its first validation.
    cv2.imwrite(str(tmp_path / "hr" / "b.png"), img[:20, :18])
    with pytest.raises(ValueError, match=r"validation image .*b\.png, cropped to a multiple of 4, is 20x16, too "
                                         r"small to score: .* at least 19x19"):
        validation_images(ImageSource.from_folders(tmp_path / "hr"), 4, 10, 0)
    cv2.imwrite(str(tmp_path / "hr" / "b.png"), img[:20, :20])
    assert [v.hr.shape for v in validation_images(ImageSource.from_folders(tmp_path / "hr"), 4, 10, 0)] == [
        (40, 40, 3), (20, 20, 3)]
