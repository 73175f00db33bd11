"""Naive baselines: planted images, determinism, the contract every map meets."""

import numpy as np
import pytest

from sightline import baselines, config, metrics


def blob_image(height=120, width=160, centre=(40, 110), radius=8):
    """Uniform grey with one bright disc; returns the image and the disc's mask."""
    yy, xx = np.mgrid[:height, :width]
    disc = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius**2
    image = np.full((height, width, 3), 90, np.uint8)
    image[disc] = 240
    return image, disc


def test_names_are_the_ones_the_params_allow():
    assert baselines.BASELINES == config.BASELINE_NAMES


@pytest.mark.parametrize("name", baselines.BASELINES)
def test_every_baseline_is_a_nonnegative_peak_one_float32_map(name):
    image = np.random.default_rng(0).integers(0, 256, (30, 41, 3), dtype=np.uint8)
    got = baselines.baseline_map(name, image, seed=3, image_id="Q1_wd0.jpg")
    assert got.shape == (30, 41) and got.dtype == np.float32
    assert got.min() >= 0 and got.max() == pytest.approx(1.0)
    again = baselines.baseline_map(name, image, seed=3, image_id="Q1_wd0.jpg")
    np.testing.assert_array_equal(got, again)
    scaled = baselines.baseline_map(name, image / 255.0, seed=3, image_id="Q1_wd0.jpg")
    np.testing.assert_allclose(scaled, got, atol=1e-5)  # uint8 or float images alike


def test_random_depends_on_seed_and_image_but_not_on_order():
    images = np.zeros((2, 8, 8, 3), np.uint8)
    ab = baselines.baseline_maps("random", images, 0, ["a", "b"])
    ba = baselines.baseline_maps("random", images, 0, ["b", "a"])
    np.testing.assert_array_equal(ab, ba[::-1])
    assert not np.array_equal(ab[0], ab[1])
    other_seed = baselines.baseline_maps("random", images, 1, ["a", "b"])
    assert not np.array_equal(ab, other_seed)


def test_centre_gaussian_is_centred_with_sigma_a_quarter_of_the_long_side():
    got = baselines.baseline_map("centre_gaussian", np.zeros((40, 80, 3)), 0, "x")
    np.testing.assert_allclose(got, got[::-1, ::-1], rtol=1e-6)  # symmetric about the centre
    sigma = 80 / 4
    # columns 39 and 59 have centres 39.5 and 59.5: 0.5 and 19.5 px from the centre (40)
    ratio = got[19, 59] / got[19, 39]
    assert ratio == pytest.approx(np.exp(-(19.5**2 - 0.5**2) / (2 * sigma**2)), rel=1e-5)


def test_spectral_residual_finds_a_planted_blob():
    image, disc = blob_image()
    got = baselines.baseline_map("spectral_residual", image, 0, "x")
    assert disc[np.unravel_index(got.argmax(), got.shape)]
    assert got[disc].mean() > 10 * got[~disc].mean()


def test_sobel_marks_edges_and_nothing_on_flat_regions():
    image = np.zeros((20, 20, 3), np.uint8)
    image[:, 10:] = 200  # a vertical step between columns 9 and 10
    got = baselines.baseline_map("sobel", image, 0, "x")
    assert set(np.flatnonzero(got.max(axis=0))) == {9, 10}
    assert (got[:, 9] == 1).all()


def test_baseline_maps_score_like_any_map():
    image, disc = blob_image(64, 64, centre=(20, 40))
    maps = np.stack([baselines.baseline_map(n, image, 0, "x") for n in baselines.BASELINES])
    scores = metrics.iou(maps, np.repeat(disc[None], len(maps), axis=0), [90])
    assert np.isfinite(scores).all()


def test_bad_names_and_shapes_are_clear_errors():
    with pytest.raises(ValueError, match=r"unknown baseline 'saliency'.*'random'.*'sobel'"):
        baselines.baseline_map("saliency", np.zeros((4, 4, 3)), 0, "x")
    with pytest.raises(ValueError, match=r"image must be \(H, W, 3\) RGB, got shape \(4, 4\)"):
        baselines.baseline_map("sobel", np.zeros((4, 4)), 0, "x")
    with pytest.raises(ValueError, match="2 images but 1 image_ids"):
        baselines.baseline_maps("sobel", np.zeros((2, 4, 4, 3)), 0, ["x"])
    with pytest.raises(ValueError, match=r"images must be \(B, H, W, 3\)"):
        baselines.baseline_maps("sobel", np.zeros((4, 4, 3)), 0, ["x"])
