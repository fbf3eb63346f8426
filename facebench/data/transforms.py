"""Array-level preprocessing shared by every source: one resize path, so synthetic, LFW and
image-folder faces reach a backbone identically."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def to_shape(images: np.ndarray, shape: tuple[int, int, int], chunk: int = 4096) -> np.ndarray:
    """Resize uint8 (N, H, W, C) faces to (N, h, w, c) with antialiased bilinear resampling;
    RGB -> grey uses ITU-R 601 luma, as Pillow's 'L' conversion does."""
    channels, height, width = shape
    n, h, w, c = images.shape
    if (h, w, c) == (height, width, channels):
        return np.ascontiguousarray(images)
    out = np.empty((n, height, width, channels), dtype=np.uint8)
    for start in range(0, n, chunk):
        x = torch.from_numpy(np.ascontiguousarray(images[start : start + chunk])).permute(0, 3, 1, 2).float()
        if channels == 1 and c == 3:
            x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        elif channels == 3 and c == 1:
            x = x.expand(-1, 3, -1, -1)
        if (h, w) != (height, width):
            x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
        out[start : start + chunk] = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def to_float_tensor(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, C) or (N, C, H, W)-permuted batch -> float in [-1, 1]."""
    return images.float().mul_(1.0 / 127.5).sub_(1.0)


def shift_images(images: torch.Tensor, shifts: np.ndarray) -> torch.Tensor:
    """Translate every (C, H, W) image of a batch by its own (dy, dx), replicating edge pixels.

    One gather for the whole batch: output pixel (i, j) of image n is input pixel
    (clip(i - dy_n), clip(j - dx_n)).
    """
    n, _, h, w = images.shape
    offsets = torch.from_numpy(np.asarray(shifts, dtype=np.int64))
    rows = (torch.arange(h)[None, :] - offsets[:, :1]).clamp_(0, h - 1)
    cols = (torch.arange(w)[None, :] - offsets[:, 1:]).clamp_(0, w - 1)
    batch = torch.arange(n)[:, None, None]
    return images.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()
