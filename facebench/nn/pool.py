"""2x2, stride-2 max pooling whose inference runs at the speed of elementwise maxima.

Why: on this project's CPUs (2-core AMD EPYC, torch 2.14, NCHW float32) ``max_pool2d``'s
kernel is the slowest part of a DeepID forward pass: 18-19 ms for DeepID2's first stage at
batch 128 (128 x 20 x 52 x 44), against 2.6-2.9 ms for three ``torch.maximum`` of strided
views, so feature extraction ran at about twice training's throughput instead of three
times (``python -m facebench.bench --only study_job``, its extraction row). The maxima give the same values
bit for bit (a maximum is exact, NaN propagates in both). Training keeps ``max_pool2d``: its
backward needs the argmax, and computing that from the views cost about as much as the
kernel saves (measured: 13 ms against 18 ms forward, before any backward).

Odd sizes drop the last row or column, as ``max_pool2d``'s floor mode does. Without autograd
the forward is plain tensor ops, which trace and export to ONNX as Slice and Max nodes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)`` computed as the maximum of the four strided window views."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    top = torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2])
    bottom = torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2])
    return torch.maximum(top, bottom)


class MaxPool2x2(nn.Module):
    """Drop-in for ``nn.MaxPool2d(2)`` (kernel 2, stride 2, no padding, floor mode)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return F.max_pool2d(x, 2)
        return max_pool_2x2(x)

    def extra_repr(self) -> str:
        return "kernel_size=2, stride=2"
