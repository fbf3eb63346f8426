"""Procedurally drawn faces: the offline dataset every new user runs before touching LFW.

Why synthetic: the benchmark must run end to end with no download, yet a toy task (coloured
blobs) would say nothing about losses, because raw pixels would already solve it. So the
faces here mimic what makes LFW hard for pixels and easy for a learned model: each identity
has persistent traits (face shape, skin tone, eye spacing and size, brows, nose, mouth, hair
style and colour, glasses, beard, a mole), and every image buries them under nuisance that
is unrelated to identity (alignment error, yaw, lighting direction and strength, colour cast,
background and clothing, expression, blink, occlusion, blur, sensor noise).

The geometry is that of the 5-point-aligned 112 x 96 LFW crops the project uses (eyes near
row 50, mouth near row 90), so the same preprocessing (resize to 55 x 47) applies unchanged.

Every image is a pure function of ``(seed, identity name, image number, size)``: an
identity's traits and its images' nuisance come from one random stream keyed by
``(seed, name)``, the nuisance drawn one row per image, so image k of a person is the same
whatever else is rendered in the same call and however many images that person gets.

Rendering is vectorised over chunks of images (no Python loop over pixels or images): every
rendered pixel carries its coordinates in a canonical face frame (one affine map per image),
each facial part is a soft mask computed from those coordinates, and small or rare parts are
computed only inside the window where the chunk's poses put them, cut to each image's own box
so that chunking cannot change a pixel. Faces are drawn at 56 x 48 (the resolution the
preprocessing keeps anyway) and resized to the output size before sensor noise is added;
that and the windows make several thousand faces take a few seconds on one core.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F

from facebench.components import FaceData

CANON_H, CANON_W = 112.0, 96.0  # the canonical frame: the project's aligned LFW crops
#: Bump when the generator's output changes, so old cached renders are not reused.
GENERATOR_VERSION = 2
PIVOT = (48.0, 60.0)  # rotation / scale / yaw centre, between the eyes and the nose tip
CHUNK = 64  # images rendered together: large enough to amortise numpy calls, small enough for cache

Params = dict[str, np.ndarray]

# --- random streams ------------------------------------------------------------------------


def seeded_stream(seed: int, *parts: str | int) -> np.random.Generator:
    """A generator keyed by ``seed`` and names; hashed so it never depends on Python's hash salt."""
    digest = hashlib.sha256(repr((int(seed),) + parts).encode()).digest()
    return np.random.default_rng([int(w) for w in np.frombuffer(digest, dtype=np.uint32)])


def _pick(uniform: float, probs: list[float]) -> int:
    """A categorical draw from one uniform, so every trait keeps its own slot of the draw."""
    return int(np.searchsorted(np.cumsum(probs), uniform * np.sum(probs)))


# --- identity traits -----------------------------------------------------------------------

_SKIN_LIGHT = np.array([0.95, 0.80, 0.70])
_SKIN_DARK = np.array([0.36, 0.24, 0.17])
_HAIR = np.array(
    [
        [0.07, 0.06, 0.06],  # black
        [0.20, 0.13, 0.09],  # dark brown
        [0.38, 0.26, 0.16],  # brown
        [0.58, 0.44, 0.30],  # light brown
        [0.84, 0.71, 0.47],  # blond
        [0.55, 0.25, 0.12],  # auburn
        [0.55, 0.54, 0.53],  # grey
        [0.86, 0.85, 0.82],  # white
    ]
)
_HAIR_P = [0.30, 0.20, 0.15, 0.08, 0.08, 0.05, 0.09, 0.05]
_IRIS = np.array(
    [[0.16, 0.10, 0.07], [0.32, 0.20, 0.10], [0.42, 0.36, 0.20], [0.28, 0.40, 0.26], [0.30, 0.42, 0.60]]
)
_IRIS_P = [0.40, 0.25, 0.12, 0.08, 0.15]
# hair styles: (probability, hairline height range, side bend range, volume range, long, bald)
_STYLES = [
    (0.08, (10, 14), (-6, 0), (0, 1), 0, 1),  # bald: the cap is drawn in skin colour
    (0.38, (17, 25), (0, 12), (2, 5), 0, 0),  # short
    (0.12, (3, 9), (7, 15), (1, 3), 0, 0),  # balding on top, hair at the sides
    (0.20, (28, 38), (-2, 6), (3, 7), 0, 0),  # fringe
    (0.22, (17, 30), (4, 16), (4, 8), 1, 0),  # long
]


def _identity_traits(rng: np.random.Generator) -> dict[str, float | np.ndarray]:
    """One person's persistent appearance, in canonical-frame pixels (frame 112 x 96)."""
    u = rng.random(64)  # a fixed-size draw: adding a trait later never shifts the others
    lerp = lambda k, lo, hi: float(lo + (hi - lo) * u[k])  # noqa: E731 - local shorthand
    tone = u[0] ** 1.2
    skin = _SKIN_LIGHT + (_SKIN_DARK - _SKIN_LIGHT) * tone + np.array([0.04, 0.0, -0.04]) * (u[1] - 0.5)
    hair = _HAIR[_pick(u[2], _HAIR_P)] * lerp(3, 0.85, 1.15)
    style = _STYLES[_pick(u[4], [s[0] for s in _STYLES])]
    a, b = lerp(5, 35.0, 43.0), lerp(6, 47.0, 55.0)
    ey, ny = lerp(10, 47.5, 52.5), lerp(18, 67.0, 75.0)
    bald = style[5] == 1
    glasses = u[30] < 0.22
    return {
        "skin": np.clip(skin, 0, 1),
        "lip": np.clip(skin * 0.72 + np.array([0.55, 0.14, 0.16]) * lerp(7, 0.15, 0.45), 0, 1),
        "hair": np.clip(skin * 1.02 if bald else hair, 0, 1),
        "beard_rgb": np.clip(hair, 0, 1),  # bald people keep their hair colour in a beard
        "brow": np.clip(hair * lerp(8, 0.45, 0.85), 0, 1),
        "iris": _IRIS[_pick(u[9], _IRIS_P)],
        "fx": lerp(11, 46.5, 49.5),
        "fy": lerp(12, 56.0, 61.0),
        "fa": a,
        "fb": b,
        "taper": lerp(13, 0.10, 0.45),
        "ey": ey,
        "ex": lerp(14, 15.0, 20.0),
        "ew": lerp(15, 5.2, 7.6),
        "eh": lerp(16, 2.2, 3.5),
        "etilt": lerp(17, -0.12, 0.12),
        "iris_r": lerp(19, 0.85, 1.15),
        "ny": ny,
        "nw": lerp(20, 3.8, 6.8),
        "nostril": lerp(21, 0.25, 0.65),
        "my": min(ny + lerp(22, 14.0, 20.0), 96.0),
        "mw": lerp(23, 8.5, 14.0),
        "lt": lerp(24, 1.3, 3.0),
        "smile0": lerp(25, -0.25, 0.45),
        "brow_off": lerp(26, 6.5, 11.0),
        "brow_len": lerp(27, 7.5, 12.0),
        "brow_th": lerp(28, 1.1, 3.0),
        "brow_arch": lerp(29, -0.5, 3.5),
        "brow_tilt": lerp(31, -0.18, 0.18),
        "hair_y": lerp(32, *style[1]),
        "hair_bend": lerp(33, *style[2]),
        "hair_vol": lerp(34, *style[3]),
        "hair_slant": lerp(35, -6.0, 6.0),
        "hair_long": float(style[4]),
        "ear_y": ey + lerp(36, 5.0, 12.0),
        "ear_h": lerp(37, 6.5, 10.5),
        "ear_w": lerp(38, 3.0, 5.5),
        "ear_x": a * lerp(39, 0.92, 1.02),
        "glasses": float(glasses),
        "sunglasses": float(glasses and u[40] < 0.15),
        "lens_w": lerp(41, 8.0, 11.0),
        "lens_h": lerp(42, 5.5, 8.5),
        "lens_p": lerp(43, 2.0, 5.0),  # superellipse exponent: round (2) to rectangular (5)
        "frame_th": lerp(44, 0.9, 2.2),
        "frame": np.array([0.05, 0.05, 0.05]) + lerp(45, 0.0, 0.6) * (u[46:49] ** 2),
        "beard": float(u[49] < 0.16) * lerp(50, 0.55, 0.95),
        "stubble": float(u[51] < 0.18) * lerp(52, 0.15, 0.35),
        "moustache": float(u[53] < 0.15) * lerp(54, 0.6, 0.95),
        "beard_top": lerp(55, -4.0, 4.0),
        "mole": float(u[56] < 0.35),
        "mole_x": lerp(57, -0.7, 0.7) * a,
        "mole_y": lerp(58, ey + 6.0, ny + 14.0),
        "mole_r": lerp(59, 0.8, 1.6),
    }


# --- per-image nuisance --------------------------------------------------------------------


def _image_params(rng: np.random.Generator, count: int) -> Params:
    """Nuisance for ``count`` images of one person, drawn as one row of uniforms per image.

    One (count, 40) draw keeps image k's row the same whatever ``count`` is (widening it
    changes every image, like any change to the generator).
    """
    u = rng.random((count, 40))
    lerp = lambda k, lo, hi: lo + (hi - lo) * u[:, k]  # noqa: E731 - local shorthand
    tri = lambda k, j, half: (u[:, k] + u[:, j] - 1.0) * half  # noqa: E731 - triangular on [-half, half]
    mouth_open = np.where(u[:, 9] < 0.35, lerp(10, 0.8, 6.0), 0.0)
    blink = np.where(u[:, 11] < 0.10, lerp(12, 0.05, 0.45), lerp(12, 0.8, 1.1))
    occluded = u[:, 22] < 0.22
    light_angle = lerp(14, 0.0, 2.0 * np.pi)
    light_xy = lerp(15, 0.15, 0.95)
    return {
        "rot": tri(0, 1, np.deg2rad(14.0)),
        "yaw": tri(2, 3, 0.55),
        "tx": tri(4, 5, 5.0),
        "ty": tri(6, 7, 5.0),
        "scale": np.exp(lerp(8, -0.09, 0.09)),
        "mouth_open": mouth_open,
        "blink": blink,
        "smile": lerp(13, -0.35, 1.0),
        "lx": light_xy * np.cos(light_angle),
        "ly": light_xy * np.sin(light_angle) * 0.7,
        "diffuse": lerp(16, 0.15, 0.85),
        "gain": lerp(17, 0.55, 1.25),
        "cast_r": lerp(18, -0.10, 0.10),
        "cast_b": lerp(19, -0.10, 0.10),
        "gaze": tri(20, 21, 2.0),
        "occ": occluded.astype(np.float64),
        "occ_x": lerp(23, 5.0, 91.0),
        "occ_y": lerp(24, 30.0, 110.0),
        "occ_w": lerp(25, 8.0, 26.0),
        "occ_h": lerp(26, 8.0, 26.0),
        "occ_v": u[:, 27],
        "bg_v": u[:, 28],
        "bg_angle": lerp(29, 0.0, 2.0 * np.pi),
        "cloth_v": u[:, 30],
        "brow_raise": tri(31, 32, 2.5),
        "blur": lerp(33, 0.0, 1.0),
        "noise": lerp(34, 1.5, 9.0) / 255.0,
        "glasses_on": (u[:, 35] < 0.85).astype(np.float64),
        "hair_jitter": tri(36, 37, 1.5),
        "noise_pick": u[:, 38],
        "noise_shift": u[:, 39],
    }


def _colour(v: np.ndarray, saturation: float) -> np.ndarray:
    """A deterministic (n, 3) colour from one uniform per image (hue walk on a cosine palette)."""
    h = 2.0 * np.pi * v[:, None] * 7.0 + np.array([0.0, 2.1, 4.2])
    lum = 0.2 + 0.6 * ((v * 13.0) % 1.0)[:, None]
    return np.clip(lum + saturation * np.cos(h), 0.02, 0.98)


def _derived(p: Params) -> Params:
    """Per-image colours and part positions that follow from traits and nuisance."""
    sin_yaw = np.sin(p["yaw"])
    out = dict(p)
    # Parts at different depths slide by different amounts when the head turns (parallax).
    for part, depth in (("cx_eye", 5.0), ("cx_nose", 11.0), ("cx_mouth", 6.5), ("cx_head", 2.0)):
        out[part] = p["fx"] + depth * sin_yaw
    out["bg_a"] = _colour(p["bg_v"], 0.12)
    out["bg_b"] = _colour((p["bg_v"] * 3.7) % 1.0, 0.12)
    out["cloth"] = _colour(p["cloth_v"], 0.25)
    out["neck"] = p["skin"] * 0.72
    out["ear"] = p["skin"] * np.array([0.93, 0.85, 0.83])
    hand = p["skin"] * (0.8 + 0.4 * p["occ_v"][:, None])
    out["occ_rgb"] = np.where(p["occ_v"][:, None] < 0.4, hand, _colour(p["occ_v"], 0.3))
    out["sclera"] = np.broadcast_to(np.array([0.86, 0.83, 0.80]), p["skin"].shape)
    lz = np.sqrt(np.clip(1.0 - p["lx"] ** 2 - p["ly"] ** 2, 0.05, 1.0))
    out["lz"] = lz
    out["wearing"] = p["glasses"] * p["glasses_on"]
    out["gain_r"] = p["gain"] * (1.0 + p["cast_r"])
    out["gain_b"] = p["gain"] * (1.0 - p["cast_b"])
    return out


# --- rendering -----------------------------------------------------------------------------

RENDER_H, RENDER_W = 56, 48  # every face is drawn at this resolution, then resized to the output
PX = CANON_W / RENDER_W  # canonical pixels per rendered pixel


def _soft(z: np.ndarray) -> np.ndarray:
    """Coverage of a rendered pixel whose centre lies ``z`` canonical pixels outside an edge."""
    return np.clip(0.5 - z * (1.0 / PX), 0.0, 1.0)


def _ellipse(du: np.ndarray, dv: np.ndarray, a: np.ndarray | float, b: np.ndarray | float, edge: float = 1.0) -> np.ndarray:
    """Soft coverage of an axis-aligned ellipse, anti-aliased over ``edge`` canonical pixels.

    The distance to the rim is estimated as r (r - 1) / |(u / a^2, v / b^2)| with r the
    normalised radius: exact on the axes, and unlike a plain (r - 1) * min(a, b) it keeps
    elongated shapes (lips, eyelids) from fading out far beyond their ends.
    """
    ia2, ib2 = 1.0 / (a * a), 1.0 / (b * b)
    x2, y2 = du * du, dv * dv
    r = np.sqrt(x2 * ia2 + y2 * ib2)
    grad = np.sqrt(x2 * (ia2 * ia2) + y2 * (ib2 * ib2) + 1e-12)
    return np.clip(0.5 - r * (r - 1.0) / grad * (1.0 / (edge * PX)), 0.0, 1.0)


class _Canvas:
    """A chunk of images being painted: canonical coordinates of every pixel, and the RGB buffer.

    Per-image scalars live as float32 (n, 1, 1) so they broadcast against (n, h, w) masks;
    colours as (3, n, 1, 1) against the (3, n, h, w) buffer.
    """

    def __init__(self, p: Params) -> None:
        self.p, self.n = p, len(p["rot"])
        self.q = {k: v.astype(np.float32).reshape(-1, 1, 1) for k, v in p.items() if v.ndim == 1}
        self.c = {k: v.T.astype(np.float32).reshape(3, -1, 1, 1) for k, v in p.items() if v.ndim == 2}
        cos, sin = np.cos(p["rot"]), np.sin(p["rot"])
        s, c = p["scale"], np.cos(p["yaw"])
        self.pose = np.stack([cos, sin, s, c, p["tx"], p["ty"]])  # face -> image, per image
        # Image -> face: undo translation, rotation and scale, then the yaw's horizontal squeeze.
        xs = (np.arange(RENDER_W) + 0.5) * PX - PIVOT[0]
        ys = (np.arange(RENDER_H) + 0.5) * PX - PIVOT[1]
        xc = (xs[None, :] - p["tx"][:, None]).astype(np.float32)[:, None, :]  # (n, 1, w)
        yc = (ys[None, :] - p["ty"][:, None]).astype(np.float32)[:, :, None]  # (n, h, 1)
        col = lambda x: x.astype(np.float32)[:, None, None]  # noqa: E731 - local shorthand
        self.u = col(cos / (s * c)) * xc + (col(sin / (s * c)) * yc + np.float32(PIVOT[0]))
        self.v = col(-sin / s) * xc + (col(cos / s) * yc + np.float32(PIVOT[1]))
        self.img = np.empty((3, self.n, RENDER_H, RENDER_W), dtype=np.float32)

    def region(
        self, x0: np.ndarray, x1: np.ndarray, y0: np.ndarray, y1: np.ndarray, where: np.ndarray | None = None, image_space: bool = False
    ) -> "_Region | None":
        """The images flagged by ``where`` (all if None), cropped to where their boxes land.

        Each image's box ``[x0, x1] x [y0, y1]`` is in face coordinates (moved by its pose)
        unless ``image_space``. Small or rare parts (an eye, glasses on a fifth of the people)
        are computed only there, which is most of what makes rendering fast.
        """
        idx = None if where is None else np.flatnonzero(where)
        if idx is not None and len(idx) == 0:
            return None
        sel = slice(None) if idx is None else idx
        box = np.stack(np.broadcast_arrays(x0, x1, y0, y1))[:, sel]  # (4, m)
        if image_space:
            xs, ys = box[:2] / PX - 0.5, box[2:] / PX - 0.5
        else:
            cos, sin, s, c, tx, ty = self.pose[:, sel]
            dx = (box[:2] - PIVOT[0]) * c  # (2, m): left and right
            dy = box[2:] - PIVOT[1]  # (2, m): top and bottom
            xs = (PIVOT[0] + tx + s * (cos * dx[:, None] - sin * dy[None])) / PX - 0.5  # (2, 2, m) corners
            ys = (PIVOT[1] + ty + s * (sin * dx[:, None] + cos * dy[None])) / PX - 0.5
        r0 = int(np.clip(np.floor(np.min(ys)), 0, RENDER_H))
        r1 = int(np.clip(np.ceil(np.max(ys)) + 1, r0, RENDER_H))
        c0 = int(np.clip(np.floor(np.min(xs)), 0, RENDER_W))
        c1 = int(np.clip(np.ceil(np.max(xs)) + 1, c0, RENDER_W))
        return _Region(self, idx, (slice(r0, r1), slice(c0, c1)), box.astype(np.float32), image_space)


class _Region:
    """A window of some images of a canvas: paint on it, then ``commit`` writes it back.

    The window is shared by the chunk's images, so every mask is cut to each image's own box:
    what an image looks like can then never depend on which images it was rendered with.
    """

    def __init__(self, cv: _Canvas, idx: np.ndarray | None, win: tuple[slice, slice], box: np.ndarray, image_space: bool) -> None:
        self.cv, self.idx, self.win = cv, idx, win
        rows, cols = win
        if idx is None:
            self.u, self.v = cv.u[:, rows, cols], cv.v[:, rows, cols]
            self.img = cv.img[:, :, rows, cols]  # a view: painting writes through
        else:
            self.u, self.v = cv.u[idx, rows, cols], cv.v[idx, rows, cols]
            self.img = cv.img[:, idx, rows, cols]
        if image_space:
            bu = ((np.arange(RENDER_W, dtype=np.float32)[cols] + 0.5) * np.float32(PX))[None, None, :]
            bv = ((np.arange(RENDER_H, dtype=np.float32)[rows] + 0.5) * np.float32(PX))[None, :, None]
        else:
            bu, bv = self.u, self.v
        x0, x1, y0, y1 = (b.reshape(-1, 1, 1) for b in box)
        self.inside = (((bu >= x0) & (bu <= x1)) & ((bv >= y0) & (bv <= y1))).astype(np.float32)

    def k(self, name: str) -> np.ndarray:
        value = self.cv.q[name]
        return value if self.idx is None else value[self.idx]

    def rgb(self, name: str) -> np.ndarray:
        value = self.cv.c[name]
        return value if self.idx is None else value[:, self.idx]

    def crop(self, full: np.ndarray) -> np.ndarray:
        """This region's part of a canvas-sized (n, h, w) array."""
        sel = slice(None) if self.idx is None else self.idx
        return full[sel, self.win[0], self.win[1]]

    def paint(self, mask: np.ndarray, colour: np.ndarray) -> None:
        """Alpha-blend ``colour`` with coverage ``mask``."""
        self.img += (mask * self.inside) * (colour - self.img)

    def darken(self, mask: np.ndarray, amount: np.ndarray | float) -> None:
        """Multiply by ``1 - amount * mask`` (shadows, stubble, lens tint)."""
        self.img *= 1.0 - amount * (mask * self.inside)

    def commit(self) -> None:
        if self.idx is not None:
            self.cv.img[:, self.idx, self.win[0], self.win[1]] = self.img


def _paint_face(cv: _Canvas) -> None:
    """Paint one chunk back to front at the render resolution, lighting included.

    Each part's box (canonical pixels, per image) bounds what that part draws: its shapes'
    extents plus their soft edges. Masks are cut to it, so a box too small clips a part (a
    visible artefact, never a non-deterministic one).
    """
    p, q, n = cv.p, cv.q, cv.n
    fy, fa, fb, ey, ny, my = p["fy"], p["fa"], p["fb"], p["ey"], p["ny"], p["my"]
    head, eyes, nose_x, mouth = p["cx_head"], p["cx_eye"], p["cx_nose"], p["cx_mouth"]
    bottom = np.full(n, CANON_H + 40.0)

    # Background: a two-colour linear gradient in image space, unrelated to identity.
    gx = np.linspace(-0.5, 0.5, RENDER_W, dtype=np.float32) * np.cos(q["bg_angle"])
    gy = np.linspace(-0.5, 0.5, RENDER_H, dtype=np.float32)[:, None] * np.sin(q["bg_angle"])
    np.multiply(cv.c["bg_b"] - cv.c["bg_a"], (0.5 + gx) + gy, out=cv.img)
    cv.img += cv.c["bg_a"]

    # Long hair falls behind the face and onto the shoulders.
    half = fa + p["hair_vol"] + 6
    r = cv.region(head - half, head + half, fy + 14 - fb - 29, bottom, where=p["hair_long"] > 0)
    if r is not None:
        r.paint(_ellipse(r.u - r.k("cx_head"), r.v - r.k("fy") - 14.0, r.k("fa") + r.k("hair_vol") + 3.0, r.k("fb") + 26.0, 1.5), r.rgb("hair"))
        r.commit()

    # Clothing, and the neck below the jaw.
    r = cv.region(head - 70, head + 70, fy + 0.5 * fb - 3, bottom)
    r.paint(_soft((r.k("fy") + 0.95 * r.k("fb") - r.v) * 0.5), r.rgb("cloth"))
    r.paint(_soft(np.abs(r.u - r.k("cx_head")) - 0.55 * r.k("fa")) * _soft(r.k("fy") + 0.5 * r.k("fb") - r.v), r.rgb("neck"))

    # Ears (both at once through |u - centre|), then the face over them.
    half = p["ear_x"] + p["ear_w"] + 2
    r = cv.region(p["fx"] - half, p["fx"] + half, p["ear_y"] - p["ear_h"] - 2, p["ear_y"] + p["ear_h"] + 2)
    r.paint(_ellipse(np.abs(r.u - r.k("fx")) - r.k("ear_x"), r.v - r.k("ear_y"), r.k("ear_w"), r.k("ear_h")), r.rgb("ear"))

    du, dv = cv.u - q["cx_head"], cv.v - q["fy"]
    vv = dv * (1.0 / q["fb"])
    width2 = 1.0 - q["taper"] * np.clip(vv, 0.0, 1.0) ** 2
    width2 *= width2
    face = _soft((du * du / width2 * (1.0 / q["fa"]) + (vv * vv - 1.0) * q["fa"]) * 0.5)
    cv.img += face * (cv.c["skin"] - cv.img)

    # Stubble and beard: the face below a line that rises towards the cheeks.
    top = ny + p["beard_top"] - 14.0 * ((fa + 3.5) / fa) ** 2 - 1
    r = cv.region(head - fa - 2, head + fa + 2, top, fy + fb + 2, where=(p["beard"] + p["stubble"]) > 0)
    if r is not None:
        jdu = (r.u - r.k("cx_mouth")) * (1.0 / r.k("fa"))
        beard = _soft((r.k("ny") + 3.0 + r.k("beard_top") - 14.0 * jdu * jdu - r.v) * 0.7) * r.crop(face)
        r.darken(beard, r.k("stubble") * 0.6)
        r.paint(beard * r.k("beard"), r.rgb("beard_rgb"))
        r.commit()

    # Nose: nostrils and the shadow under the tip (the ridge is shaded with the light below).
    half = 1.2 * p["nw"] + 5
    nose = cv.region(nose_x - half, nose_x + half, ey - 2, ny + 8)
    ndu = nose.u - nose.k("cx_nose")
    ndv = nose.v - nose.k("ny")
    nose.darken(_ellipse(np.abs(ndu) - 0.55 * nose.k("nw"), ndv, 0.45 * nose.k("nw"), 1.3, 0.8), nose.k("nostril"))
    nose.darken(_ellipse(ndu, ndv - 3.0, 1.2 * nose.k("nw"), 2.2, 1.5), 0.18)

    # Mouth: lips bent by the smile and parted by the expression, dark where open.
    bend = (p["smile0"] + p["smile"]) * 3.0
    reach = p["lt"] + p["mouth_open"] + 0.3 * np.abs(bend) + 3
    r = cv.region(mouth - p["mw"] - 6, mouth + p["mw"] + 6, my - np.maximum(bend, 0) - reach, my - np.minimum(bend, 0) + reach)
    mdu = (r.u - r.k("cx_mouth")) * (1.0 / r.k("mw"))
    mline = r.v - r.k("my") + (r.k("smile0") + r.k("smile")) * 3.0 * (1.0 - mdu * mdu)
    mdu *= r.k("mw")
    half_open = 0.5 * r.k("mouth_open")
    r.paint(_ellipse(mdu, mline - half_open * 0.3, r.k("mw"), r.k("lt") + half_open), r.rgb("lip"))
    r.darken(_ellipse(mdu, mline, 0.85 * r.k("mw"), 0.45 + half_open * 0.8, 0.7), 0.75)
    centre, half_y = 0.5 * (ny + my) + 1.0, 0.32 * (my - ny) + 3
    r = cv.region(mouth - p["mw"] - 6, mouth + p["mw"] + 6, centre - half_y, centre + half_y, where=np.maximum(p["moustache"], p["beard"]) > 0)
    if r is not None:
        moustache = _ellipse(r.u - r.k("cx_mouth"), r.v - 0.5 * (r.k("ny") + r.k("my")) - 1.0, r.k("mw") + 2.5, 0.32 * (r.k("my") - r.k("ny")))
        r.paint(moustache * np.maximum(r.k("moustache"), r.k("beard")), r.rgb("beard_rgb"))
        r.commit()

    # Eyes: socket shadow, sclera, iris, pupil, lid line; brows above, raised by expression.
    half = p["ex"] + np.maximum(1.6 * p["ew"], p["brow_len"] + 1) + 6
    brow_up = p["brow_off"] + p["brow_raise"] + 1.25 * np.abs(p["brow_arch"]) + 0.2 * p["brow_len"] + 0.5 * p["brow_th"]
    r = cv.region(eyes - half, eyes + half, ey - brow_up - 6, ey + 2.2 * p["eh"] + 8)
    side = np.sign(r.u - r.k("cx_eye"))
    edu = np.abs(r.u - r.k("cx_eye")) - r.k("ex")
    edv = r.v - r.k("ey") + r.k("etilt") * edu
    ew, eh = r.k("ew"), r.k("eh")
    r.darken(_ellipse(edu, edv + 1.0, ew * 1.6, eh * 2.2, 3.0), 0.16)
    open_h = eh * r.k("blink")
    sclera = _ellipse(edu, edv, ew, open_h, 0.7)
    r.paint(sclera, r.rgb("sclera"))
    idu = edu - r.k("gaze") * side
    iris_r = eh * r.k("iris_r")
    r.paint(_ellipse(idu, edv, iris_r, iris_r) * sclera, r.rgb("iris"))
    r.darken(_ellipse(idu, edv, 0.45 * eh, 0.45 * eh) * sclera, 0.8)
    lid = _soft(np.abs(_ellipse(edu, edv + 0.4, ew * 1.05, open_h + 0.9, 0.8) - 0.5) * 3.0 - 0.5)
    r.darken(lid * _soft(edv), 0.55)
    bdu = edu + 1.0
    bdv = edv + r.k("brow_off") + r.k("brow_raise") + r.k("brow_arch") * (1.0 - bdu * bdu * (1.0 / r.k("brow_len") ** 2)) - r.k("brow_tilt") * bdu
    along = bdu * (1.0 / r.k("brow_len"))
    thickness = (0.5 * r.k("brow_th")) * np.maximum(1.0 - along * along, 0.0)
    r.paint(_soft((np.abs(bdv) - thickness) * 0.8) * _soft(np.abs(bdu) - r.k("brow_len")) * 0.9, r.rgb("brow"))

    # Hair on top: inside a cap round the skull and above the hairline.
    half = fa + p["hair_vol"] + 3
    reach = half / fa
    lowest = p["hair_y"] + p["hair_jitter"] + (2.2 * np.maximum(p["hair_bend"], 0) * reach + np.abs(p["hair_slant"])) * reach + 3
    r = cv.region(head - half, head + half, fy - 3 - fb - p["hair_vol"] - 3, np.minimum(lowest, fy - 3 + fb + p["hair_vol"] + 3))
    hdu = (r.u - r.k("cx_head")) * (1.0 / r.k("fa"))
    cap = _ellipse(r.u - r.k("cx_head"), r.v - r.k("fy") + 3.0, r.k("fa") + r.k("hair_vol"), r.k("fb") + r.k("hair_vol"), 1.2)
    hairline = r.k("hair_y") + r.k("hair_jitter") + (r.k("hair_bend") * 2.2 * hdu + r.k("hair_slant")) * hdu
    r.paint(cap * _soft((r.v - hairline) * 0.8), r.rgb("hair"))

    # Glasses: superellipse rims round both eyes, a bridge, arms to the ears, tinted lenses.
    half_y = p["lens_h"] + p["frame_th"] + 3
    r = cv.region(eyes - fa - 3, eyes + fa + 3, ey + 0.8 - half_y, ey + 0.8 + half_y, where=p["wearing"] > 0)
    if r is not None:
        gdu = np.abs(r.u - r.k("cx_eye")) - r.k("ex")
        gdv = r.v - r.k("ey") - 0.8
        lp, lw, th = r.k("lens_p"), r.k("lens_w"), 0.5 * r.k("frame_th")
        rim = (np.abs(gdu * (1.0 / lw)) ** lp + np.abs(gdv * (1.0 / r.k("lens_h"))) ** lp) ** (1.0 / lp)
        r.darken(_soft((rim - 1.0) * lw), 0.1 + 0.75 * r.k("sunglasses"))
        frame = _soft((np.abs(rim - 1.0) * lw - th) * 1.2)
        bar_v = _soft(np.abs(gdv + 0.25 * r.k("lens_h")) - th)
        bridge = _soft(-gdu - lw) * _soft(gdu + r.k("ex"))
        arm = _soft(lw - gdu) * _soft(gdu - r.k("fa") + r.k("ex"))
        r.paint(np.maximum(frame, (bridge + arm) * bar_v), r.rgb("frame"))
        r.commit()

    # A mole: small, but a persistent identity cue for models that look closely.
    mole_x, half = head + p["mole_x"], p["mole_r"] + 2
    r = cv.region(mole_x - half, mole_x + half, p["mole_y"] - half, p["mole_y"] + half, where=p["mole"] > 0)
    if r is not None:
        mr = r.k("mole_r")
        r.darken(_ellipse(r.u - r.k("cx_head") - r.k("mole_x"), r.v - r.k("mole_y"), mr, mr, 0.6), 0.55)
        r.commit()

    # Lighting: Lambert shading of an ellipsoidal head, plus the nose ridge catching the light.
    nx, ny_ = du * (1.0 / (1.1 * q["fa"])), dv * (1.0 / (1.1 * q["fb"]))
    r2 = nx * nx + ny_ * ny_
    nz = np.sqrt(np.maximum(1.0 - r2, 0.0))
    lam = np.maximum(q["lx"] * nx + q["ly"] * ny_ + q["lz"] * nz, 0.0)
    shade = 1.0 + np.clip((1.0 - r2) * 8.0, 0.0, 1.0) * q["diffuse"] * (lam - 0.75)
    ridge = _soft(np.abs(ndu) - nose.k("nw")) * _soft((nose.k("ey") + 6.0 - nose.v) * 0.3) * _soft((ndv - 1.0) * 0.5)
    side_lit = np.clip(ndu * (1.0 / nose.k("nw")), -1.0, 1.0) * (0.6 * nose.k("diffuse") * nose.k("lx"))
    nose.crop(shade)[:] += (ridge * nose.inside) * side_lit
    cv.img *= shade

    # An occluder (hand, microphone, another head) in image space, over anything.
    ox, oy, ow, oh = p["occ_x"], p["occ_y"], p["occ_w"] + 2, p["occ_h"] + 2
    r = cv.region(ox - ow, ox + ow, oy - oh, oy + oh, where=p["occ"] > 0, image_space=True)
    if r is not None:
        gx = (np.arange(RENDER_W, dtype=np.float32)[r.win[1]] + 0.5) * np.float32(PX)
        gy = (np.arange(RENDER_H, dtype=np.float32)[r.win[0]] + 0.5) * np.float32(PX)
        occ = _soft(np.abs(gx[None, None, :] - r.k("occ_x")) - r.k("occ_w")) * _soft(np.abs(gy[None, :, None] - r.k("occ_y")) - r.k("occ_h"))
        r.paint(occ, r.rgb("occ_rgb"))
        r.commit()


NOISE_BANK, NOISE_PAD = 16, 33  # sensor-noise fields shared by a call, shifted per image


def _noise_bank(seed: int, size: tuple[int, int]) -> np.ndarray:
    """Gaussian fields that images crop at their own offsets: one draw per call, not per image."""
    rng = seeded_stream(seed, "noise", *size)
    return rng.standard_normal((NOISE_BANK, size[0] + NOISE_PAD, size[1] + NOISE_PAD), dtype=np.float32)


def _render_chunk(p: Params, size: tuple[int, int], bank: np.ndarray) -> np.ndarray:
    """Paint one chunk, pass it through the 'camera', and return uint8 (n, h, w, 3)."""
    cv = _Canvas(_derived(p))
    _paint_face(cv)
    q, img, n = cv.q, cv.img, cv.n
    # Camera: exposure and white balance (in 0-255 units from here on), optical blur.
    img[0] *= q["gain_r"] * 255.0
    img[1] *= q["gain"] * 255.0
    img[2] *= q["gain_b"] * 255.0
    blurred = img.copy()
    blurred[:, :, 1:-1, :] += img[:, :, :-2, :] + img[:, :, 2:, :]
    blurred[:, :, :, 1:-1] += blurred[:, :, :, :-2] + blurred[:, :, :, 2:]
    img += q["blur"] * (blurred * (1.0 / 9.0) - img)
    img += 0.5  # rounds on the cast below; resizing keeps constants
    # Resize to the output (torch's bilinear kernel: channels-last in and out, no copies).
    height, width = size
    nhwc = torch.from_numpy(np.ascontiguousarray(img.transpose(1, 2, 3, 0))).permute(0, 3, 1, 2)
    out = F.interpolate(nhwc, size=(height, width), mode="bilinear", align_corners=False).permute(0, 2, 3, 1).numpy()
    # Sensor noise: each image crops the shared bank at its own field and offset.
    windows = np.lib.stride_tricks.sliding_window_view(bank, (height, width), axis=(1, 2))
    pick = p["noise_pick"] * NOISE_BANK
    field, rows, cols = pick.astype(int), ((pick % 1.0) * NOISE_PAD).astype(int), (p["noise_shift"] * NOISE_PAD).astype(int)
    out += windows[field, rows, cols][..., None] * (p["noise"] * 255.0).astype(np.float32).reshape(n, 1, 1, 1)
    return np.clip(out, 0.0, 255.0, out=out).astype(np.uint8)


def _params_for(names: list[str], counts: list[int], seed: int) -> Params:
    """Identity traits repeated per image, side by side with each image's nuisance."""
    traits, nuisance = [], []
    for name, count in zip(names, counts):
        rng = seeded_stream(seed, "identity", name)
        traits.append(_identity_traits(rng))
        nuisance.append(_image_params(rng, count))
    if not traits:
        return {}
    repeat = np.asarray(counts)
    out = {key: np.repeat(np.array([t[key] for t in traits], dtype=np.float64), repeat, axis=0) for key in traits[0]}
    out.update({key: np.concatenate([u[key] for u in nuisance]) for key in nuisance[0]})
    return out


# --- public API ----------------------------------------------------------------------------


def render_faces(names: list[str], counts: list[int], seed: int, size: tuple[int, int] = (112, 96)) -> FaceData:
    """Render ``counts[i]`` images of identity ``names[i]``; labels index ``names``.

    ``size`` (height, width) is the output geometry of the aligned crop (default: the
    project's 112 x 96 LFW crops); the detail is always that of a 56 x 48 drawing. Keys
    follow LFW's layout (``"<name>/<name>_0001"``) so tools that print or cache by key treat
    synthetic and real faces alike.
    """
    if len(names) != len(counts):
        raise ValueError(f"render_faces: {len(names)} names but {len(counts)} counts")
    if len(set(names)) != len(names):
        raise ValueError("render_faces: identity names must be unique")
    if any(c < 0 for c in counts):
        raise ValueError("render_faces: counts must be non-negative")
    height, width = int(size[0]), int(size[1])
    params = _params_for(list(names), [int(c) for c in counts], seed)
    total = int(sum(counts))
    images = np.empty((total, height, width, 3), dtype=np.uint8)
    bank = _noise_bank(seed, (height, width))
    # Images are rendered grouped by in-plane rotation, so a chunk's parts land in tight
    # windows; each image is a function of its own parameters only, so the order is free.
    order = np.argsort(params["rot"], kind="stable") if total else np.zeros(0, dtype=np.int64)
    for start in range(0, total, CHUNK):
        index = order[start : start + CHUNK]
        chunk = {key: value[index] for key, value in params.items()}
        images[index] = _render_chunk(chunk, (height, width), bank)
    labels = np.repeat(np.arange(len(names), dtype=np.int64), counts)
    keys = [f"{name}/{name}_{j + 1:04d}" for name, count in zip(names, counts) for j in range(count)]
    return FaceData(
        images=images,
        labels=labels,
        names=list(names),
        keys=keys,
        info={"source": "synthetic", "seed": int(seed), "size": [height, width]},
    )


def identity_names(prefix: str, n: int) -> list[str]:
    """Names ``<prefix>-00000`` ...; distinct prefixes give identity-disjoint sets."""
    return [f"{prefix}-{i:05d}" for i in range(n)]


def make_training_set(n_identities: int, images_per_identity: int, seed: int, prefix: str = "synth-train") -> FaceData:
    """A balanced training set; its names never collide with a benchmark's (other prefix)."""
    if n_identities < 1 or images_per_identity < 1:
        raise ValueError("make_training_set: need at least one identity and one image each")
    names = identity_names(prefix, n_identities)
    faces = render_faces(names, [images_per_identity] * n_identities, seed)
    faces.info.update({"name": prefix, "n_identities": n_identities, "images_per_identity": images_per_identity})
    return faces
