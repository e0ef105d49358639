"""PSNR/SSIM with BasicSR's definitions against independent implementations (scikit-image) on real images."""

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mambacsr.data import degrade, imresize
from mambacsr.data.datasets import embedded_images
from mambacsr.metrics import calculate_psnr, calculate_ssim, check_measurable, rgb_to_y


@pytest.fixture(scope="module")
def pair():
    hr = embedded_images(["coffee"])[0][:200, :300]
    lr = degrade(hr, 4, 10)
    return imresize(lr, 200, 300), hr


def test_y_matches_the_bt601_formula():
    px = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 0, 0]]], np.uint8)
    np.testing.assert_allclose(rgb_to_y(px)[0], [16 + 65.481, 16 + 128.553, 16 + 24.966, 16], atol=1e-9)


def test_psnr_matches_scikit_image(pair):
    out, hr = pair
    ref = peak_signal_noise_ratio(rgb_to_y(hr)[4:-4, 4:-4], rgb_to_y(out)[4:-4, 4:-4], data_range=255)
    assert calculate_psnr(out, hr, 4, True) == pytest.approx(ref, abs=1e-9)
    ref_rgb = peak_signal_noise_ratio(hr.astype(float), out.astype(float), data_range=255)
    assert calculate_psnr(out, hr, 0, False) == pytest.approx(ref_rgb, abs=1e-9)
    assert 18 < calculate_psnr(out, hr, 4, True) < 30  # a JPEG q10 + bicubic image: plausible, not a constant


def test_ssim_matches_scikit_image_gaussian(pair):
    out, hr = pair
    y_out, y_hr = rgb_to_y(out)[4:-4, 4:-4], rgb_to_y(hr)[4:-4, 4:-4]
    ref = structural_similarity(y_out, y_hr, data_range=255, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    assert calculate_ssim(out, hr, 4, True) == pytest.approx(ref, abs=2e-4)
    assert 0.3 < calculate_ssim(out, hr, 4, True) < 0.95


def test_identical_images_and_shape_errors(pair):
    _, hr = pair
    assert calculate_psnr(hr, hr, 4, True) == float("inf")
    assert calculate_ssim(hr, hr, 4, True) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shapes differ"):
        calculate_psnr(hr, hr[:-1], 4)


def test_images_too_small_for_a_metric_are_refused_with_the_size_needed(pair):
    out, hr = pair
    # With a crop of 4, PSNR needs one pixel left (9x9) and SSIM one whole 11x11 window (19x19).
    assert np.isfinite(calculate_psnr(out[:9, :9], hr[:9, :9], 4, True))
    with pytest.raises(ValueError, match="is 8x9, too small to score: .* at least 9x9; drop it"):
        calculate_psnr(out[:8, :9], hr[:8, :9], 4, True)
    assert 0 < calculate_ssim(out[:19, :19], hr[:19, :19], 4, True) < 1
    with pytest.raises(ValueError, match=r"is 19x18, too small .* at least 19x19, SSIM's 11x11 window inside"):
        calculate_ssim(out[:19, :18], hr[:19, :18], 4, True)
    with pytest.raises(ValueError, match="Set5: baby.png is 12x12"):
        check_measurable((12, 12, 3), 4, "Set5: baby.png")
