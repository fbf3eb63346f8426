"""The DeepID-family ConvNet (DeepID, DeepID2, DeepID2+): one class, sized by config.

conv1 -> pool -> conv2 -> pool -> conv3 (weights locally shared) -> pool3 -> conv4 (locally
connected) -> feature layer fully connected to BOTH pool3 and conv4 (the papers' multi-scale
bottleneck: conv4 alone is too small). ReLU throughout, 2x2 max-pooling.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from facebench.components import FEATURE, Backbone
from facebench.nn.local import LocallyConnected2d, conv_output_size
from facebench.nn.pool import MaxPool2x2

SHARING = ("blocks", "quadrants", "none")


@dataclass
class DeepIDNetConfig:
    """DeepID-family net; defaults are DeepID2's (Sun et al. 2014) for a 55x47 input.

    channels: 3 (RGB) or 1 (grey) — the papers use both.
    height, width: input size (DeepID2: 55x47; DeepID: 39x31 or 31x31 patches).
    widths: feature maps of conv1..conv4 (DeepID/DeepID2: 20, 40, 60, 80; DeepID2+: 128 each).
    kernels: kernel sizes of conv1..conv4 (4, 3, 3, 2).
    feature_dim: units of the DeepID layer (160; DeepID2+: 512).
    conv3_sharing: how "conv3 weights locally shared in 2x2 regions" is read —
      "blocks" (default): every 2x2 block of conv3 output positions has its own kernel; this
      lines up with the 2x2 max-pool that follows, so each pooled unit sees exactly one kernel.
      "quadrants": the output map split into 2x2 = 4 regions, one kernel each.
      "none": an ordinary shared convolution (ablation).
    batchnorm: a documented non-paper variant: BatchNorm after every conv/LC layer and the
      feature layer, which lets plain SGD run at a high learning rate.
    feature_relu: the papers' DeepID layer is ReLU'd (default), so the feature lies in the positive
      orthant. false leaves it linear (BatchNorm'd when batchnorm is on), the embedding of
      metric-learning benchmarks (Musgrave et al. 2020) and of the margin losses' reference nets:
      losses that work on angles (NormFace, CosFace, ArcFace) lose points to a ReLU'd feature
      (docs/STUDY.md has the measurement).
    side_dim: DeepID2+: when > 0, a side_dim FC branch (+ ReLU) after each of the first three
      conv/pool stages, returned as outputs "stage1".."stage3" for early supervision; only
      "feature" is used at test time.
    """

    name: str = "deepid2"
    channels: int = 3
    height: int = 55
    width: int = 47
    widths: list[int] = field(default_factory=lambda: [20, 40, 60, 80])
    kernels: list[int] = field(default_factory=lambda: [4, 3, 3, 2])
    feature_dim: int = 160
    conv3_sharing: str = "blocks"
    batchnorm: bool = False
    feature_relu: bool = True
    side_dim: int = 0


def _norm(channels: int, on: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if on else nn.Identity()


def _he_init(module: nn.Module) -> None:
    """He (fan-in, ReLU) initialisation: PyTorch's default conv init shrinks activations layer by
    layer, and without BatchNorm the identification signal then never gets going."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        nn.init.zeros_(module.bias)
    elif isinstance(module, LocallyConnected2d):
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / module.weight.shape[1]))
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class DeepIDNet(Backbone):
    #: The layers DeepID2+'s sparsification prunes (the locally connected conv4 and the feature
    #: layer: most of the net's connections), for ``analysis=[sparsification]``.
    top_layers = ("conv4.0", "fc")

    def __init__(self, cfg: DeepIDNetConfig) -> None:
        super().__init__()
        if len(cfg.widths) != 4 or len(cfg.kernels) != 4:
            raise ValueError("backbone.widths and backbone.kernels need 4 entries each (conv1..conv4)")
        if cfg.conv3_sharing not in SHARING:
            raise ValueError(f"backbone.conv3_sharing={cfg.conv3_sharing!r}: use one of {', '.join(SHARING)}")
        self.input_shape = (cfg.channels, cfg.height, cfg.width)
        self.feature_dim = cfg.feature_dim
        w, k = list(cfg.widths), list(cfg.kernels)
        size = (cfg.height, cfg.width)
        sizes = []
        for i in range(3):
            conv = conv_output_size(size, k[i])
            size = (conv[0] // 2, conv[1] // 2)
            if min(conv) < 1 or min(size) < 1:
                raise ValueError(
                    f"backbone input {cfg.height}x{cfg.width} is too small: stage {i + 1} (kernel {k[i]}, then 2x2 "
                    "pooling) leaves no positions. Raise backbone.height/backbone.width or lower backbone.kernels."
                )
            sizes.append((conv, size))
        conv4 = conv_output_size(size, k[3])
        if min(conv4) < 1:
            raise ValueError(
                f"backbone input {cfg.height}x{cfg.width} is too small for conv4 (kernel {k[3]} on {size[0]}x{size[1]}). "
                "Raise backbone.height/backbone.width."
            )
        bn = cfg.batchnorm
        self.stage1 = nn.Sequential(nn.Conv2d(cfg.channels, w[0], k[0]), _norm(w[0], bn), nn.ReLU(), MaxPool2x2())
        self.stage2 = nn.Sequential(nn.Conv2d(w[0], w[1], k[1]), _norm(w[1], bn), nn.ReLU(), MaxPool2x2())
        pool2 = sizes[1][1]
        if cfg.conv3_sharing == "none":
            conv3: nn.Module = nn.Conv2d(w[1], w[2], k[2])
        elif cfg.conv3_sharing == "quadrants":
            conv3 = LocallyConnected2d(w[1], w[2], pool2, k[2], regions=(2, 2))
        else:
            conv3 = LocallyConnected2d(w[1], w[2], pool2, k[2], block=2)
        self.stage3 = nn.Sequential(conv3, _norm(w[2], bn), nn.ReLU(), MaxPool2x2())
        self.conv4 = nn.Sequential(LocallyConnected2d(w[2], w[3], size, k[3]), _norm(w[3], bn), nn.ReLU())
        self.fc_in = w[2] * size[0] * size[1] + w[3] * conv4[0] * conv4[1]
        self.fc = nn.Linear(self.fc_in, cfg.feature_dim)
        self.fc_norm = nn.BatchNorm1d(cfg.feature_dim) if bn else nn.Identity()
        self.fc_act = nn.ReLU() if cfg.feature_relu else nn.Identity()
        self.side = nn.ModuleList()
        if cfg.side_dim > 0:
            for i in range(3):
                channels, (h, wd) = w[i], sizes[i][1]
                self.side.append(nn.Sequential(nn.Flatten(), nn.Linear(channels * h * wd, cfg.side_dim), nn.ReLU()))
        self.apply(_he_init)

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """The input channels-last on a CPU. The locally connected layers work channels-last
        already (facebench.nn.local), so stages 1-2 in NCHW paid a conversion at conv3 besides
        their slower NCHW kernels: channels-last from the input on, oneDNN's convolutions, the
        BatchNorms and the poolings ran a training step of the study's net at batch 128 about
        1.3x as fast on this 2-core AVX-512 CPU (``python -m facebench.bench --only layout``).
        The values are those of NCHW up to float rounding (the convolutions sum in another
        order). A GPU keeps the layout it is given: no GPU measured it here."""
        return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        s1 = self.stage1(self.layout(x))
        s2 = self.stage2(s1)
        pool3 = self.stage3(s2)
        c4 = self.conv4(pool3)
        feature = self.fc_act(self.fc_norm(self.fc(torch.cat([pool3.flatten(1), c4.flatten(1)], dim=1))))
        out = {FEATURE: feature}
        for i, (branch, stage) in enumerate(zip(self.side, (s1, s2, pool3))):
            out[f"stage{i + 1}"] = branch(stage)
        return out
