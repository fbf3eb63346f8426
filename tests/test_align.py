"""The 5-point similarity aligner: it recovers known transforms and puts landmarks on the template."""
from __future__ import annotations

import numpy as np
import pytest

from facebench.data.align import TEMPLATE_112x96, align_face, similarity_transform


def _similarity(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[scale * c, -scale * s, tx], [scale * s, scale * c, ty]])


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


@pytest.mark.parametrize("seed", range(5))
def test_recovers_a_known_similarity(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = _similarity(rng.uniform(0.5, 2.5), rng.uniform(-np.pi, np.pi), *rng.uniform(-80, 80, size=2))
    src = rng.uniform(0, 200, size=(5, 2))
    np.testing.assert_allclose(similarity_transform(src, _apply(truth, src)), truth, atol=1e-9)


def test_least_squares_with_noise_and_no_reflection() -> None:
    rng = np.random.default_rng(0)
    truth = _similarity(1.3, 0.2, 10.0, -5.0)
    dst = _apply(truth, TEMPLATE_112x96) + rng.normal(0, 0.5, size=(5, 2))
    m = similarity_transform(TEMPLATE_112x96, dst)
    np.testing.assert_allclose(m, truth, atol=0.2 * np.abs(truth).max())
    mirrored = TEMPLATE_112x96 * [-1, 1]  # the best fit would be a reflection; a rotation is returned
    assert np.linalg.det(similarity_transform(TEMPLATE_112x96, mirrored)[:, :2]) > 0


def test_coincident_points_are_refused() -> None:
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(np.zeros((5, 2)), TEMPLATE_112x96)


def test_warp_puts_the_landmarks_on_the_template() -> None:
    """Bright dots drawn at the landmarks of a rotated, scaled face end up at the template points."""
    truth = _similarity(1.4, 0.3, 40.0, 30.0)  # template -> image
    landmarks = _apply(truth, TEMPLATE_112x96)
    yy, xx = np.mgrid[0:218, 0:178]
    image = np.zeros((218, 178), dtype=np.float64)
    for x, y in landmarks:
        image += 255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2))
    rgb = np.repeat(np.clip(image, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
    face = align_face(rgb, landmarks, (3, 112, 96))[:, :, 0].astype(np.float64)
    assert face.shape == (112, 96)
    fy, fx = np.mgrid[0:112, 0:96]
    for x, y in TEMPLATE_112x96:
        window = (np.abs(fx - x) < 5) & (np.abs(fy - y) < 5)
        w = face * window
        centre = np.array([(w * fx).sum(), (w * fy).sum()]) / w.sum()
        np.testing.assert_allclose(centre, [x, y], atol=0.05)  # half-pixel convention included
    grey = align_face(rgb, landmarks, (1, 55, 47))
    assert grey.shape == (55, 47, 1) and grey.dtype == np.uint8
