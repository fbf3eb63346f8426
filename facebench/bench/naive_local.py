"""The broadcast-multiply locally connected layer, kept only as the slow baseline.

This is the formulation that circulates in forum posts: unfold, multiply every patch by
every position's kernel through broadcasting, sum over the patch axis. It materialises an
(N, L, C*kh*kw, O) temporary and is one to two orders of magnitude slower than
:class:`facebench.nn.local.LocallyConnected2d`. It exists so the benchmark suite can show
that gap and the tests can cross-check the fast layer; never use it to train.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def broadcast_locally_connected(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    out_size: tuple[int, int],
) -> torch.Tensor:
    """Locally connected layer by broadcast multiply-and-sum.

    ``weight`` is (L, C*kh*kw, O) per output position and ``bias`` (L, O), the layout of
    ``LocallyConnected2d.position_weight()`` / ``position_bias()``; a leading size of 1
    broadcasts (one shared kernel). Returns (N, O, *out_size).
    """
    cols = F.unfold(x, kernel_size, padding=padding, stride=stride)  # (N, CK, L)
    out = (cols.transpose(1, 2).unsqueeze(-1) * weight).sum(dim=2)  # (N, L, CK, O) -> (N, L, O)
    if bias is not None:
        out = out + bias
    return out.transpose(1, 2).reshape(x.shape[0], weight.shape[-1], *out_size)
