"""Test-time features: the backbone's feature of each face, optionally with its mirror image."""
from __future__ import annotations

import numpy as np
import torch

from facebench.components import FEATURE, Backbone
from facebench.config import ConfigError
from facebench.data.transforms import to_float_tensor

FLIP_MODES = ("none", "sum", "concat")


@torch.no_grad()
def extract_features(
    backbone: Backbone, images: np.ndarray, flip: str = "concat", batch_size: int = 512, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Features of uint8 (N, H, W, C) ``images`` as float32 (N, D) or (N, 2D) for ``flip=concat``."""
    if flip not in FLIP_MODES:
        raise ConfigError(f"features.flip={flip!r}: use one of {', '.join(FLIP_MODES)}")
    device = torch.device(device)
    backbone.to(device).eval()
    chunks = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.array(images[start : start + batch_size])).permute(0, 3, 1, 2)
        x = to_float_tensor(x.to(device))
        f = backbone(x)[FEATURE].float()
        if flip != "none":
            g = backbone(x.flip(-1))[FEATURE].float()
            f = f + g if flip == "sum" else torch.cat([f, g], dim=1)
        chunks.append(f.cpu().numpy())
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(chunks)
