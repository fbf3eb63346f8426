"""5-point face alignment to the 96 x 112 template of the aligned LFW crops.

Outside training faces must reach a backbone with the same geometry as the LFW faces it is
tested on, or the benchmark measures the crop mismatch rather than the loss. The LFW copy in
use (lfw-112X96) was aligned by a similarity transform of five landmarks (eye centres, nose
tip, mouth corners) onto :data:`TEMPLATE_112x96`; this module does the same for any set
with landmarks (CelebA's ``list_landmarks_align_celeba.txt``).

The transform is the least-squares similarity (rotation, uniform scale, translation, no
reflection) of Umeyama (1991), computed with numpy; the warp is Pillow's affine transform
with bilinear sampling, followed by the same Pillow resize to the backbone's input that
LFW's crops get (facebench.data.images.load_image).

Coordinates: landmarks and template points are pixel-index coordinates (the centre of the
top-left pixel is (0, 0)), as in CelebA's files. Pillow samples at pixel centres (i + 0.5),
so the half-pixel shift is applied when the transform is handed to Pillow.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

#: (x, y) of left eye, right eye, nose tip, left and right mouth corner in a 96 x 112
#: (width x height) face, the template of the SphereFace/CosFace-era aligned LFW crops.
TEMPLATE_112x96 = np.array(
    [
        [30.2946, 51.6963],
        [65.5318, 51.5014],
        [48.0252, 71.7366],
        [33.5493, 92.3655],
        [62.7299, 92.2041],
    ]
)
TEMPLATE_SIZE = (96, 112)  # (width, height)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2 x 3 matrix [s R | t] minimising sum ||s R src_i + t - dst_i||^2 (Umeyama 1991).

    R is a proper rotation (a reflection would mirror the face), s > 0 a uniform scale.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need matching (n >= 2, 2) point arrays, got {src.shape} and {dst.shape}")
    mu_src, mu_dst = src.mean(0), dst.mean(0)
    a, b = src - mu_src, dst - mu_dst
    var_src = (a**2).sum() / len(src)
    if var_src <= 0:
        raise ValueError("the source points coincide: a similarity transform is undefined")
    u, sing, vt = np.linalg.svd(b.T @ a / len(src))
    sign = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ np.diag(sign) @ vt
    scale = float((sing * sign).sum() / var_src)
    translation = mu_dst - scale * rotation @ mu_src
    return np.hstack([scale * rotation, translation[:, None]])


def _inverse(matrix: np.ndarray) -> np.ndarray:
    full = np.vstack([matrix, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    shape: tuple[int, int, int],
    template: np.ndarray = TEMPLATE_112x96,
    template_size: tuple[int, int] = TEMPLATE_SIZE,
) -> np.ndarray:
    """Warp uint8 (H, W, C) ``image`` so its 5 ``landmarks`` land on ``template``.

    Returns uint8 (h, w, c) for ``shape`` = (c, h, w): the template-sized face resized to it.
    """
    channels, height, width = shape
    forward = similarity_transform(landmarks, template)  # image -> template, index coordinates
    inv = _inverse(forward)  # template -> image
    # Pillow maps output position (x + 0.5, y + 0.5) through the coefficients; shift both ends by half a pixel.
    shift = 0.5 - 0.5 * inv[:, :2].sum(axis=1)
    coeffs = (inv[0, 0], inv[0, 1], inv[0, 2] + shift[0], inv[1, 0], inv[1, 1], inv[1, 2] + shift[1])
    pil = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)
    face = pil.transform(template_size, Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    if face.size != (width, height):
        face = face.resize((width, height), Image.Resampling.BILINEAR)
    face = face.convert("RGB" if channels == 3 else "L")
    arr = np.asarray(face, dtype=np.uint8)
    return arr if arr.ndim == 3 else arr[:, :, None]
