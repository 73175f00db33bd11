"""Naive attention maps, scored exactly like a model's, to say what "better than naive" means.

- ``random``: seeded uniform noise; the seed mixes the run seed with the image id, so a
  map does not depend on which images come before it.
- ``centre_gaussian``: photographer's centre bias, an isotropic Gaussian, sigma = max(H, W)/4.
- ``spectral_residual``: bottom-up saliency of Hou & Zhang (CVPR 2007) on the grey image.
- ``sobel``: edge magnitude of the grey image (do maps just follow edges?).

Every map is ``(H, W)`` float32, non-negative, with peak 1 (or all zero).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

BASELINES = ("random", "centre_gaussian", "spectral_residual", "sobel")
SR_SIZE = 64  # spectral residual works on a small image, as in Hou & Zhang
SR_SIGMA = 3.0  # px at SR_SIZE: the Gaussian smoothing of the squared residual
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601


def _grey(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 or float image -> float64 luma (scale does not matter here)."""
    return np.asarray(image, np.float64) @ _LUMA


def _resize(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D array (antialiased when shrinking)."""
    tensor = torch.from_numpy(np.ascontiguousarray(values))[None, None]
    return F.interpolate(tensor, size=size, mode="bilinear", antialias=True)[0, 0].numpy()


def _peak_one(values: np.ndarray) -> np.ndarray:
    top = values.max()
    return (values / top if top > 0 else values).astype(np.float32)


def _random(image: np.ndarray, seed: int, image_id: str) -> np.ndarray:
    """Uniform noise from a random stream of its own for each (seed, image)."""
    digest = hashlib.sha256(image_id.encode()).digest()
    stream = np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])
    return _peak_one(stream.random(image.shape[:2]))


def _centre_gaussian(image: np.ndarray, seed: int, image_id: str) -> np.ndarray:
    height, width = image.shape[:2]
    sigma = max(height, width) / 4
    y = np.exp(-(((np.arange(height) + 0.5 - height / 2) / sigma) ** 2) / 2)
    x = np.exp(-(((np.arange(width) + 0.5 - width / 2) / sigma) ** 2) / 2)
    return _peak_one(np.outer(y, x))


def _spectral_residual(image: np.ndarray, seed: int, image_id: str) -> np.ndarray:
    """Log-amplitude spectrum minus its 3x3 local mean, back with the phase, squared."""
    small = _resize(_grey(image), (SR_SIZE, SR_SIZE))
    spectrum = np.fft.fft2(small)
    amplitude = np.abs(spectrum)
    log_amplitude = np.log(np.maximum(amplitude, 1e-12 * amplitude.max() + 1e-300))
    residual = log_amplitude - ndimage.uniform_filter(log_amplitude, size=3, mode="wrap")
    saliency = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))) ** 2
    smooth = ndimage.gaussian_filter(saliency, SR_SIGMA)
    return _peak_one(np.maximum(_resize(smooth, image.shape[:2]), 0))


def _sobel(image: np.ndarray, seed: int, image_id: str) -> np.ndarray:
    grey = _grey(image)
    return _peak_one(np.hypot(ndimage.sobel(grey, axis=0), ndimage.sobel(grey, axis=1)))


_MAKERS = {maker.__name__[1:]: maker for maker in (_random, _centre_gaussian, _spectral_residual, _sobel)}


def baseline_map(name: str, image: np.ndarray, seed: int, image_id: str) -> np.ndarray:
    """The ``name`` baseline of one ``(H, W, 3)`` image: ``(H, W)`` float32, peak 1."""
    if name not in _MAKERS:
        raise ValueError(f"unknown baseline {name!r}; choose from {list(BASELINES)}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or not min(image.shape[:2]):
        raise ValueError(f"image must be (H, W, 3) RGB, got shape {image.shape}")
    return _MAKERS[name](image, seed, str(image_id))


def baseline_maps(name: str, images: np.ndarray, seed: int, image_ids: Sequence[str]) -> np.ndarray:
    """The ``name`` baseline of each of ``(B, H, W, 3)`` images: ``(B, H, W)`` float32."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"images must be (B, H, W, 3), got shape {images.shape}")
    if len(image_ids) != len(images):
        raise ValueError(f"got {len(images)} images but {len(image_ids)} image_ids")
    maps = [baseline_map(name, image, seed, i) for image, i in zip(images, image_ids, strict=True)]
    return np.stack(maps) if maps else np.zeros((0, *images.shape[1:3]), np.float32)
