"""DeepID2's multi-patch system: one ConvNet per face patch, trained together, features concatenated.

The paper (Sec. 4) crops 400 patches (20 regions x 5 scales x {RGB, grey}) around 21 landmarks,
trains one ConvNet per patch and concatenates the selected nets' features. Here a patch is a box
on the aligned 112 x 96 face (the project's 5-point-aligned crops fix the landmarks, so a box is
a fixed region), the net input size it is resized to, and RGB or grey. The backbone takes the
full aligned face — its ``input_shape`` is (3, 112, 96) — and crops and resizes the patches
itself, in torch, so the whole system is one backbone for the trainer and the feature
extractor.

One net per patch, as the paper has; nets of the same input geometry (channels, height, width)
are one :class:`StackedDeepIDNet` (stacked parameters, one batched computation), so all nets
train in one process and one optimiser step. The feature is the nets' features concatenated in
patch order, (N, P * feature_dim); the DeepID2 loss with ``net_dim = feature_dim`` gives every
net its own identification and verification signals.

Flips: the paper pairs every patch with its "horizontally flipped counterpart" and one net serves
both. DeepID spells out that the flipped counterpart of a patch around the left eye is the flipped
patch around the right eye, i.e. the same box cut from the mirrored face. That is exactly what
the framework's whole-face flips give: ``trainer.flip_augment`` trains each net on its box of
faces and of mirrored faces, and ``features.flip=concat`` appends the features of the mirrored
face, so patch p's test-time feature is its block in the first half plus its block in the second.

Resizing is bilinear with antialiasing (what facebench.data.transforms.to_shape does to whole
faces); grey is ITU-R 601 luma of the RGB face.
"""
from __future__ import annotations

import functools

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from facebench.components import FEATURE, Backbone, BuildContext
from facebench.config import ConfigError
from facebench_plugins.deepid_net import SHARING, DeepIDNet, DeepIDNetConfig
from facebench_plugins.deepid2.stacked import StackedDeepIDNet

LUMA = (0.299, 0.587, 0.114)


@dataclass
class PatchConfig:
    """One face patch.

    name: a label for records. box: [left, top, right, bottom] in pixels of the aligned face
    (112 x 96 by default; eyes near (30, 52) and (66, 52), nose tip (48, 72), mouth corners
    (33, 92) and (63, 92)). height, width: the net's input size (the paper: 55 x 47 rectangles
    or 47 x 47 squares). channels: 3 (RGB) or 1 (grey).
    """

    name: str = "face"
    box: list[int] = field(default_factory=lambda: [0, 0, 96, 112])
    height: int = 55
    width: int = 47
    channels: int = 3


def default_patches() -> list[PatchConfig]:
    """Eight patches covering the paper's kinds: regions, scales, RGB and grey, both geometries."""
    return [
        PatchConfig("face", [0, 0, 96, 112], 55, 47, 3),
        PatchConfig("face_grey", [0, 0, 96, 112], 55, 47, 1),
        PatchConfig("inner_face", [10, 12, 86, 101], 55, 47, 3),
        PatchConfig("upper_face", [8, 14, 88, 94], 47, 47, 3),
        PatchConfig("eye_left", [6, 28, 54, 76], 47, 47, 3),
        PatchConfig("eye_right", [42, 28, 90, 76], 47, 47, 3),
        PatchConfig("nose", [24, 48, 72, 96], 47, 47, 3),
        PatchConfig("mouth", [24, 64, 72, 112], 47, 47, 1),
    ]


@dataclass
class DeepID2EnsembleConfig:
    """Multi-patch DeepID2 (one ConvNet per patch).

    face_height, face_width: the aligned face the boxes refer to (the project's 112 x 96 crops).
    patches: the patch list (default: 8 patches, see ``default_patches``; the paper: 400
      patches, 200 nets, of which greedy selection keeps 25).
    widths, kernels, feature_dim, conv3_sharing, batchnorm: every net's DeepIDNetConfig fields
      (DeepID2's defaults); feature_dim is per net, the ensemble's feature is
      len(patches) * feature_dim.
    """

    name: str = "deepid2_ensemble"
    face_height: int = 112
    face_width: int = 96
    patches: list[PatchConfig] = field(default_factory=default_patches)
    widths: list[int] = field(default_factory=lambda: [20, 40, 60, 80])
    kernels: list[int] = field(default_factory=lambda: [4, 3, 3, 2])
    feature_dim: int = 160
    conv3_sharing: str = "blocks"
    batchnorm: bool = False


def crop_patch(faces: torch.Tensor, patch: PatchConfig) -> torch.Tensor:
    """Patch ``patch`` of (N, 3, H, W) faces: box cut, grey if asked, resized to the net input."""
    left, top, right, bottom = patch.box
    x = faces[:, :, top:bottom, left:right]
    if patch.channels == 1:
        x = torch.einsum("nchw,c->nhw", x, x.new_tensor(LUMA)).unsqueeze(1)
    if tuple(x.shape[-2:]) != (patch.height, patch.width):
        if torch.onnx.is_in_onnx_export():
            return resample_as_products(x, patch.height, patch.width)
        x = F.interpolate(x, size=(patch.height, patch.width), mode="bilinear", antialias=True, align_corners=False)
    return x


def resampling_matrix(size_in: int, size_out: int) -> torch.Tensor:
    """(size_out, size_in): antialiased bilinear resizing of one axis as a matrix, read off
    ``F.interpolate`` applied to the unit vectors (the resize is separable, one axis at a time)."""
    # Channel c holds unit vector c along H, twice along W (a width of 1 takes another code path
    # in torch, whose weights differ from the 2-D resize's).
    unit = torch.eye(size_in).reshape(1, size_in, size_in, 1).expand(1, size_in, size_in, 2).contiguous()
    out = F.interpolate(unit, size=(size_out, 2), mode="bilinear", antialias=True, align_corners=False)
    return out[0, :, :, 0].T


@functools.lru_cache(maxsize=None)
def resampling_pair(box_height: int, box_width: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The row and column resampling matrices of one patch size, computed once (outside any
    graph being traced: a traced ``F.interpolate`` would be exported)."""
    return resampling_matrix(box_height, height), resampling_matrix(box_width, width)


def resample_as_products(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``crop_patch``'s antialiased resize as two matrix products, which graph exporters (ONNX
    opsets without antialiased Resize) can express; equal to it up to float rounding."""
    rows, cols = resampling_pair(int(x.shape[-2]), int(x.shape[-1]), height, width)
    return rows.to(x) @ x @ cols.to(x).T


class DeepID2Ensemble(Backbone):
    """P patch ConvNets as stacked groups; ``forward`` returns their features concatenated."""

    def __init__(self, cfg: DeepID2EnsembleConfig) -> None:
        super().__init__()
        self.patches = [PatchConfig(p.name, list(p.box), p.height, p.width, p.channels) for p in cfg.patches]
        if not self.patches:
            raise ConfigError("backbone.patches is empty: give at least one patch")
        if cfg.conv3_sharing not in SHARING:
            raise ConfigError(f"backbone.conv3_sharing={cfg.conv3_sharing!r}: use one of {', '.join(SHARING)}")
        for p in self.patches:
            left, top, right, bottom = p.box
            resampling_pair(bottom - top, right - left, p.height, p.width)  # computed now, not inside an export
            if not (0 <= left < right <= cfg.face_width and 0 <= top < bottom <= cfg.face_height):
                raise ConfigError(
                    f"backbone.patches[{p.name}].box={p.box}: needs 0 <= left < right <= {cfg.face_width} and "
                    f"0 <= top < bottom <= {cfg.face_height} ([left, top, right, bottom] on the aligned face)"
                )
            if p.channels not in (1, 3):
                raise ConfigError(f"backbone.patches[{p.name}].channels={p.channels}: use 3 (RGB) or 1 (grey)")
        self.input_shape = (3, cfg.face_height, cfg.face_width)
        self.net_dim = cfg.feature_dim
        self.feature_dim = len(self.patches) * cfg.feature_dim
        geometries: dict[tuple[int, int, int], list[int]] = {}
        for i, p in enumerate(self.patches):
            geometries.setdefault((p.channels, p.height, p.width), []).append(i)
        self.members = list(geometries.values())
        self.groups = nn.ModuleList(
            StackedDeepIDNet(
                DeepIDNetConfig(
                    name="deepid2",
                    channels=c,
                    height=h,
                    width=w,
                    widths=list(cfg.widths),
                    kernels=list(cfg.kernels),
                    feature_dim=cfg.feature_dim,
                    conv3_sharing=cfg.conv3_sharing,
                    batchnorm=cfg.batchnorm,
                ),
                len(members),
            )
            for (c, h, w), members in geometries.items()
        )

    def patch_net(self, i: int) -> DeepIDNet:
        """A standalone copy of patch i's ConvNet (for inspection and tests)."""
        for group, members in zip(self.groups, self.members):
            if i in members:
                return group.net(members.index(i))
        raise IndexError(f"no patch {i}: the ensemble has {len(self.patches)}")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        per_patch: list[torch.Tensor] = [x.new_empty(0)] * len(self.patches)
        for group, members in zip(self.groups, self.members):
            inputs = torch.cat([crop_patch(x, self.patches[i]) for i in members])  # net-major
            features = group(inputs)
            for k, i in enumerate(members):
                per_patch[i] = features[:, k]
        return {FEATURE: torch.cat(per_patch, dim=1)}


def build_ensemble(cfg: DeepID2EnsembleConfig, ctx: BuildContext) -> DeepID2Ensemble:
    return DeepID2Ensemble(cfg)
