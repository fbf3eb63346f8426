"""Multi-scale uniform LBP histograms on a grid (Ahonen, Hadid, Pietikainen, TPAMI 2006; the
multi-scale form that DeepID-era papers compare against): the classic face descriptor with no
learning, computed by scikit-image. With Joint Bayesian and outside training data the literature
reports 92-95% on LFW for high-dimensional LBP (many more scales and landmark-centred cells than
this one aligned crop allows); it is the floor a learned feature's selectivity and robustness are
measured against (``python -m facebench.analyze``).

Per radius r in ``radii``: each pixel's 8-neighbour pattern on the circle of radius r, mapped to
the 10 rotation-invariant uniform codes (``method="uniform"``); a histogram of codes per grid
cell, normalised to sum 1 and square-rooted (the Hellinger map, so that the Euclidean geometry
PCA and Joint Bayesian assume matches a histogram distance). Concatenated over cells and radii.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from facebench.components import FEATURE, Backbone, BuildContext
from facebench.hookspecs import hookimpl

POINTS = 8
CODES = POINTS + 2  # "uniform": P + 1 uniform patterns and one bin for all the others


@dataclass
class LbpConfig:
    """height, width: the grey face the patterns are computed on (the benchmark decodes its images
    at this size: 112x96 is the crop LFW is stored at). radii: LBP scales. grid: cells (rows, cols).
    sqrt: the Hellinger map on each cell's normalised histogram (false: the histograms as they are)."""

    name: str = "lbp"
    height: int = 112
    width: int = 96
    radii: list[int] = field(default_factory=lambda: [1, 2, 3])
    grid: list[int] = field(default_factory=lambda: [8, 7])
    sqrt: bool = True


def cell_histograms(codes: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(H, W) codes in 0..CODES-1 -> (rows * cols * CODES,) histograms, each cell's summing to 1."""
    h, w = codes.shape
    rows = np.minimum(np.arange(h) * grid[0] // h, grid[0] - 1)
    cols = np.minimum(np.arange(w) * grid[1] // w, grid[1] - 1)
    cell = rows[:, None] * grid[1] + cols[None, :]
    counts = np.bincount((cell * CODES + codes.astype(np.int64)).ravel(), minlength=grid[0] * grid[1] * CODES)
    counts = counts.reshape(-1, CODES).astype(np.float32)
    return (counts / counts.sum(axis=1, keepdims=True)).ravel()


class LbpBackbone(Backbone):
    trainable = False
    exportable = False  # scikit-image computes the patterns

    def __init__(self, cfg: LbpConfig) -> None:
        super().__init__()
        if not cfg.radii or min(cfg.radii) < 1:
            raise ValueError(f"backbone.radii={list(cfg.radii)}: give radii >= 1")
        if len(cfg.grid) != 2 or min(cfg.grid) < 1 or cfg.grid[0] > cfg.height or cfg.grid[1] > cfg.width:
            raise ValueError(f"backbone.grid={list(cfg.grid)}: give [rows, cols], each >= 1 and within the image")
        self.radii = [int(r) for r in cfg.radii]
        self.grid = (int(cfg.grid[0]), int(cfg.grid[1]))
        self.sqrt = bool(cfg.sqrt)
        self.input_shape = (3, cfg.height, cfg.width)
        self.feature_dim = len(self.radii) * self.grid[0] * self.grid[1] * CODES

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        from skimage.feature import local_binary_pattern

        # Inputs are in [-1, 1]; LBP compares grey levels, so any increasing map of them will do.
        grey = ((x.detach().float().mean(dim=1) + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        out = np.empty((len(grey), self.feature_dim), dtype=np.float32)
        for i, image in enumerate(grey):
            out[i] = np.concatenate([
                cell_histograms(local_binary_pattern(image, POINTS, r, method="uniform"), self.grid) for r in self.radii
            ])
        if self.sqrt:
            np.sqrt(out, out=out)
        return {FEATURE: torch.from_numpy(out).to(x.device)}


def build_lbp(cfg: LbpConfig, ctx: BuildContext) -> LbpBackbone:
    return LbpBackbone(cfg)


@hookimpl
def facebench_register(registry) -> None:  # type: ignore[no-untyped-def]
    registry.add_presets(f"{__name__}.presets")
    registry.add("backbone", "lbp", build_lbp, LbpConfig)
