"""PSNR/SSIM with BasicSR's definitions against independent implementations (scikit-image) on real images."""

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mambacsr.data import degrade, imresize
from mambacsr.data.datasets import embedded_images
from mambacsr.metrics import calculate_psnr, calculate_ssim, rgb_to_y


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
