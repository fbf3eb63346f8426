"""Training-time augmentation: random shifts move pixels as stated and are reproducible per step."""
from __future__ import annotations

import numpy as np
import torch

from facebench.config import TrainerConfig
from facebench.data.transforms import shift_images
from facebench.train import BatchPlan


def test_shift_moves_every_image_by_its_own_offset_and_replicates_edges() -> None:
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, size=(3, 2, 7, 6), dtype=np.uint8))
    shifts = np.array([[2, 0], [0, -3], [-1, 1]])
    out = shift_images(images, shifts)
    assert out.shape == images.shape and out.dtype == images.dtype
    for n, (dy, dx) in enumerate(shifts):
        for i in range(7):
            for j in range(6):
                src = images[n, :, min(max(i - dy, 0), 6), min(max(j - dx, 0), 5)]
                assert torch.equal(out[n, :, i, j], src)


def test_zero_shift_is_the_identity() -> None:
    images = torch.arange(2 * 3 * 4 * 5, dtype=torch.uint8).view(2, 3, 4, 5)
    assert torch.equal(shift_images(images, np.zeros((2, 2), dtype=int)), images)


def test_batch_plan_shifts_are_a_function_of_seed_and_step_and_off_by_default() -> None:
    labels = np.repeat(np.arange(10), 4)
    assert BatchPlan(labels, TrainerConfig(), "plain", seed=0).indices(3)[2] is None
    cfg = TrainerConfig(shift_augment=2, batch_size=8)
    a = BatchPlan(labels, cfg, "plain", seed=0).indices(5)
    b = BatchPlan(labels, cfg, "plain", seed=0).indices(5)
    c = BatchPlan(labels, cfg, "plain", seed=0).indices(6)
    assert np.array_equal(a[2], b[2]) and not np.array_equal(a[2], c[2])
    assert a[2].shape == (8, 2) and np.abs(a[2]).max() <= 2
    # Turning shifts on leaves the images and flips of a step unchanged (results stay comparable).
    plain = BatchPlan(labels, TrainerConfig(batch_size=8), "plain", seed=0).indices(5)
    assert np.array_equal(plain[0], a[0]) and np.array_equal(plain[1], a[1])
