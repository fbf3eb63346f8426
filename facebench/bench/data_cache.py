"""Workload ``cache``: loading LFW a second time, from the decoded-image cache.

Both sides are :func:`facebench.data.lfw.load_people` at DeepID2's input (3 x 55 x 47)
followed by reading the images into RAM (``np.array``; the cache hands back a memory map, and
a load is only done when the pixels are in memory). The first load decodes every JPEG into
a fresh temporary cache directory; the second finds the cache complete and maps it. Target:
the second load at least 20x faster.

Images: the shared LFW folder (``$FACEBENCH_SHARED_DATA`` or ../shared/data, variant
lfw-112X96 first) when present, all 13,233 images; else generated 96 x 112 JPEGs in LFW's
layout. ``--quick`` loads the first 2,000 images only (both sides, so the ratio stays a
like-for-like comparison) and decodes once. The JPEG files themselves may sit in the OS
page cache after the first pass; decoding is CPU-bound either way.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from facebench.bench.report import Row, Target, time_ratio
from facebench.bench.runner import BenchContext
from facebench.bench.timing import measure, watch_load
from facebench.data.layouts import LfwLayout, detect_layout
from facebench.data.lfw import load_people
from facebench.protocols.lfw_files import read_people

SHAPE = (3, 55, 47)
LFW_IMAGES = 13233
QUICK_IMAGES = 2000
#: Generated stand-in: LFW's image count over people of 1-8 images.
GENERATED_PEOPLE_MAX = 8


def shared_people(root: Path) -> tuple[LfwLayout, list[tuple[str, int]]]:
    """The shared LFW layout and its people (name, images) from people.txt."""
    layout = detect_layout(root)
    people = sorted({(r.name, r.n_images) for fold in read_people(layout.protocol_file("people.txt")) for r in fold})
    return layout, people


def generated_people(root: Path, n_images: int, seed: int) -> tuple[LfwLayout, list[tuple[str, int]]]:
    """``n_images`` smooth 96 x 112 JPEGs (a colour gradient plus mild noise, so they compress
    like photographs rather than like noise) in LFW's Name/Name_NNNN.jpg layout."""
    rng = np.random.default_rng(seed)
    images = root / "lfw-112X96"
    people, made = [], 0
    ramp = np.linspace(0.0, 1.0, 112)[:, None, None] * np.linspace(0.5, 1.0, 96)[None, :, None]
    while made < n_images:
        name = f"Person_{len(people):05d}"
        count = min(int(rng.integers(1, GENERATED_PEOPLE_MAX + 1)), n_images - made)
        (images / name).mkdir(parents=True)
        for n in range(1, count + 1):
            colour = rng.uniform(40, 215, size=3)
            pixels = colour * (0.6 + 0.4 * ramp) + rng.normal(0, 6, size=(112, 96, 3))
            image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
            image.save(images / name / f"{name}_{n:04d}.jpg", quality=90)
        people.append((name, count))
        made += count
    return detect_layout(root), people


def first_images(people: list[tuple[str, int]], n_images: int) -> list[tuple[str, int]]:
    """The leading people whose images add up to ``n_images`` (the last one cut short)."""
    out, total = [], 0
    for name, count in people:
        if total >= n_images:
            break
        take = min(count, n_images - total)
        out.append((name, take))
        total += take
    return out


def run(ctx: BenchContext) -> list[Row]:
    shared = ctx.shared_data()
    lfw = shared / "lfw" if shared else None
    n_images = ctx.pick(LFW_IMAGES, QUICK_IMAGES)
    with tempfile.TemporaryDirectory(prefix="facebench-bench-cache-") as tmp:
        tmp_path = Path(tmp)
        if lfw and (lfw / "people.txt").is_file():
            layout, people = shared_people(lfw)
            source, kind = str(layout.images_dir), "LFW"
        else:
            layout, people = generated_people(tmp_path / "lfw", n_images, ctx.seed)
            source, kind = f"{n_images} generated JPEGs (no shared LFW found)", "generated"
        people = first_images(people, n_images)
        decoded: list[Path] = []

        def load(cache_dir: Path) -> np.ndarray:
            return np.array(load_people(layout, people, SHAPE, str(cache_dir)).images)

        def first() -> None:
            decoded.append(tmp_path / f"cache{len(decoded)}")
            load(decoded[-1])

        load_people(layout, first_images(people, 64), SHAPE, str(tmp_path / "warmup"))  # imports, thread pool
        with watch_load() as load_both:
            t_first = measure({"first": first}, ctx.pick(3, 1), 0)["first"]
            t_second = measure({"second": lambda: load(decoded[-1])}, ctx.pick(10, 3), 1)["second"]
    images = sum(c for _, c in people)
    row = Row("cache", f"{images} {kind} images at 55x47: second load", t_second, t_first,
              "first load: decode every JPEG into an empty cache", time_ratio(t_second, t_first),
              "first / second load time", Target(">=", 20), load_both,
              details={"source": source, "images": images, "shape": list(SHAPE)})
    if ctx.quick:
        row.notes.append(f"--quick: the first {n_images} images only, decoded once")
    return [row]
