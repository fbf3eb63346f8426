"""Locally connected and locally shared 2-D layers (DeepID conv3/conv4, DeepFace L4-L6).

PyTorch has no such layer. This one gathers the input patches once and contracts them with
one batched matmul over kernels, (B, P*N, K) @ (B, K, O) for B kernels each used at P output
positions, so it runs at the speed of the matmul library rather than through the huge
temporaries of the broadcast-multiply formulation (kept only as a benchmark baseline in
:mod:`facebench.bench.naive_local`).

One class covers the whole family through a *sharing grid* over the output map:

- ``regions=None``: fully unshared, a different kernel at every output position;
- ``regions=(rh, rw)``: the output map is cut into an ``rh x rw`` grid of rectangles, one
  kernel per rectangle; ``regions=(1, 1)`` is an ordinary convolution (the test oracle
  against ``nn.Conv2d``);
- ``block=(bh, bw)``: rectangles of ``bh x bw`` output positions each, the last row/column
  of blocks cut short where the map does not divide evenly.

Why not ``F.unfold`` + ``torch.bmm`` under autograd: ``F.unfold`` yields (N, C*kh*kw, L),
and turning that into the (L, N, K) batch the matmul needs, then turning the gradient
back, costs general-permutation copies and ``bmm`` backward on non-contiguous gradients
copies once per position. On CPU that made the layer 2x slower than ``nn.Conv2d``. Here
patches are gathered from a channels-last copy of the input (contiguous runs of kw*C
values), the output is written channels-last (runs of O values), the gradient is made
contiguous once, and the input gradient is added back with one strided add per kernel
offset. A shared kernel's positions are rows of one product (DeepID2's conv3: 20 products
of 512 rows rather than 80 of 128), which also saves copying each kernel to its positions
and summing their gradients back. Each of these choices was measured with
``python -m facebench.bench --only local``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

IntPair = int | tuple[int, int]


def _pair(v: IntPair) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def conv_output_size(in_size: IntPair, kernel_size: IntPair, stride: IntPair = 1, padding: IntPair = 0) -> tuple[int, int]:
    """(height, width) a convolution with these settings produces; <= 0 when the input is too small."""
    (h, w), (kh, kw), (sh, sw), (ph, pw) = _pair(in_size), _pair(kernel_size), _pair(stride), _pair(padding)
    return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1


def split_sizes(length: int, parts: int) -> list[int]:
    """Sizes of ``parts`` contiguous pieces of ``length`` that differ by at most one.

    The larger pieces come first (``torch.tensor_split``'s rule), so 10 rows in 4 regions
    are 3, 3, 2, 2.
    """
    if not 1 <= parts <= length:
        raise ValueError(f"cannot split {length} output positions into {parts} regions")
    base, extra = divmod(length, parts)
    return [base + 1] * extra + [base] * (parts - extra)


def block_sizes(length: int, block: int) -> list[int]:
    """Sizes of consecutive blocks of ``block`` positions, the last one shorter if needed.

    With a 2x2 block and a following 2x2 floor-mode max-pool, every pooling window then
    lies inside one block; an odd last row/column forms a block of its own.
    """
    if block < 1:
        raise ValueError(f"block size must be >= 1, got {block}")
    full, rest = divmod(length, block)
    return [block] * full + ([rest] if rest else [])


def _region_of_positions(row_sizes: list[int], col_sizes: list[int]) -> torch.Tensor:
    """Region index (row-major over the grid) of every output position (row-major over the map)."""
    rows = torch.repeat_interleave(torch.arange(len(row_sizes)), torch.tensor(row_sizes))
    cols = torch.repeat_interleave(torch.arange(len(col_sizes)), torch.tensor(col_sizes))
    return (rows[:, None] * len(col_sizes) + cols[None, :]).reshape(-1)


#: How output positions group into weight blocks: (row blocks, rows per block, column blocks,
#: columns per block). Positions of one block share a kernel and are contracted together.
Layout = tuple[int, int, int, int]


def _add_patch_gradients(grad_patches_t: torch.Tensor, input_shape: torch.Size, kernel: tuple[int, int],
                         stride: tuple[int, int], layout: Layout, groups: int) -> torch.Tensor:
    """The input gradient from the patches' gradient, transposed: (G*B, kh*kw*C, bh*bw*N).

    One strided add per kernel offset (kh*kw adds of the whole map), not a scatter of every
    patch value by index. The buffer is (G, C, H, W, N), so both sides of each add move in
    contiguous runs of N samples (with the patches' own (kh*kw*C)-long rows as the source the
    runs were C values long, and the adds took twice as long: measured at DeepID2's conv3). The
    result is a (G*N, C, H, W) view of it when G is 1.
    """
    (total, c, h, w), (kh, kw), (sh, sw), (rh, bh, rw, bw) = input_shape, kernel, stride, layout
    n, ho, wo = total // groups, rh * bh, rw * bw
    patches = grad_patches_t.view(groups, rh, rw, kh, kw, c, bh, bw, n)
    grad_x = grad_patches_t.new_zeros(groups, c, h, w, n)
    for i in range(kh):
        for j in range(kw):
            window = grad_x[:, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]
            window.unflatten(2, (rh, bh)).unflatten(4, (rw, bw)).permute(0, 2, 4, 1, 3, 5, 6).add_(
                patches[:, :, :, i, j]
            )
    return grad_x.permute(0, 4, 1, 2, 3).reshape(total, c, h, w)


class _LocalMatmul(torch.autograd.Function):
    """y at output block b = patches(x, b) @ weight[b] + bias[b], patches ordered (kh, kw, C).

    ``x`` is already padded and holds ``groups`` independent layers' batches one after another
    (rows [g*N, (g+1)*N) are layer g's); ``weight`` is (G*B, kh*kw*C, O) and ``bias`` (G*B, O)
    or None, one per layer and block of ``layout``. A block's positions and samples form the
    rows of one matmul, so a locally shared layer runs G*B large products rather than a small
    one per output position.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, kernel, stride, layout, groups):
        (kh, kw), (rh, bh, rw, bw) = kernel, layout
        _, c, h, w = x.shape
        n = len(x) // groups
        # Channels-last copy -> windows (G*N, Ho, Wo, C, kh, kw) -> one copy into
        # (G*B, bh*bw*N, kh*kw*C), reading contiguous runs of kw*C values.
        patches = x.permute(0, 2, 3, 1).contiguous().unfold(1, kh, stride[0]).unfold(2, kw, stride[1])
        patches = patches.reshape(groups, n, rh, bh, rw, bw, c, kh, kw).permute(0, 2, 4, 3, 5, 1, 7, 8, 6)
        patches = patches.reshape(groups * rh * rw, bh * bw * n, kh * kw * c)
        out = torch.bmm(patches, weight)
        ctx.save_for_backward(patches, weight)
        ctx.geometry = (x.shape, kernel, stride, layout, groups, bias is not None)
        # A fresh tensor, not a view: callers may modify it in place (ReLU(inplace=True)).
        # Channels-last, so that reordering the product moves runs of O values (into NCHW
        # memory it moved single values and took as long as a third of the matmul, measured
        # at DeepID2's conv3), and a following locally connected layer reads it without a copy.
        # The bias is added in the same pass.
        o = out.shape[2]
        y = torch.empty(groups * n, o, rh * bh, rw * bw, dtype=out.dtype, device=out.device,
                        memory_format=torch.channels_last)
        blocks = y.view(groups, n, o, rh, bh, rw, bw)
        product = out.view(groups, rh, rw, bh, bw, n, o).permute(0, 5, 6, 1, 3, 2, 4)
        if bias is None:
            blocks.copy_(product)
        else:
            torch.add(product, bias.view(groups, 1, rh, 1, rw, 1, o).permute(0, 1, 6, 2, 3, 4, 5), out=blocks)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        patches, weight = ctx.saved_tensors
        input_shape, kernel, stride, (rh, bh, rw, bw), groups, has_bias = ctx.geometry
        n, o = input_shape[0] // groups, grad.shape[1]
        grad = grad.reshape(groups, n, o, rh, bh, rw, bw).permute(0, 3, 5, 4, 6, 1, 2)
        grad = grad.reshape(groups * rh * rw, bh * bw * n, o)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_patches_t = torch.bmm(weight, grad.transpose(1, 2))  # (G*B, kh*kw*C, bh*bw*N)
            grad_x = _add_patch_gradients(grad_patches_t, input_shape, kernel, stride, (rh, bh, rw, bw), groups)
        if ctx.needs_input_grad[1]:
            grad_w = torch.bmm(patches.transpose(1, 2), grad)
        if has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(1)
        return grad_x, grad_w, grad_b, None, None, None, None


def local_matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, kernel: tuple[int, int],
                 stride: tuple[int, int], layout: Layout, groups: int = 1) -> torch.Tensor:
    """``groups`` locally connected layers on their stacked batches (see :class:`_LocalMatmul`).

    ``x`` (G*N, C, H, W), already padded; ``weight`` (G*B, kh*kw*C, O) with rows ordered (kh, kw, C).
    """
    if torch.onnx.is_in_onnx_export():
        return _local_matmul_graph(x, weight, bias, kernel, stride, layout, groups)
    return _LocalMatmul.apply(x, weight, bias, kernel, stride, layout, groups)


def _local_matmul_graph(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, kernel: tuple[int, int],
                        stride: tuple[int, int], layout: Layout, groups: int) -> torch.Tensor:
    """:class:`_LocalMatmul`'s forward as operations exporters can trace into a graph (ONNX):
    the patches by ``F.unfold`` (im2col, rows ordered (C, kh, kw), so the kernels' rows are
    reordered to match), no in-place writes into a preallocated output, the batch size symbolic."""
    (kh, kw), (rh, bh, rw, bw) = kernel, layout
    c = x.shape[1]
    k = kh * kw * c
    patches = F.unfold(x, (kh, kw), stride=stride)  # (G*N, C*kh*kw, Ho*Wo)
    patches = patches.reshape(groups, -1, k, rh, bh, rw, bw).permute(0, 3, 5, 4, 6, 1, 2)
    patches = patches.reshape(groups * rh * rw, bh * bw, -1, k).flatten(1, 2)
    kernels = weight.reshape(-1, kh, kw, c, weight.shape[2]).permute(0, 3, 1, 2, 4).reshape(-1, k, weight.shape[2])
    out = torch.bmm(patches, kernels)
    o = out.shape[2]
    product = out.reshape(groups, rh, rw, bh, bw, -1, o).permute(0, 5, 6, 1, 3, 2, 4)
    if bias is not None:
        product = product + bias.view(groups, 1, rh, 1, rw, 1, o).permute(0, 1, 6, 2, 3, 4, 5)
    return product.reshape(-1, o, rh * bh, rw * bw)


def block_kernels(weight: torch.Tensor, bias: torch.Tensor | None, in_channels: int,
                  region_index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Kernels and biases as :func:`local_matmul` takes them, from stored parameters.

    ``weight`` (..., R, C*kh*kw, O) with rows ordered (C, kh, kw) and ``bias`` (..., R, O), for
    any leading (layer) axes, become (B, kh*kw*C, O) and (B, O) in one copy: rows reordered to
    (kh, kw, C), and, where ``region_index`` is given (uneven regions), one kernel per output
    position.
    """
    *_, fan_in, o = weight.shape
    weight = weight.unflatten(-2, (in_channels, fan_in // in_channels)).transpose(-3, -2)
    if region_index is not None:
        weight = weight.index_select(-4, region_index)
        bias = None if bias is None else bias.index_select(-2, region_index)
    return weight.reshape(-1, fan_in, o), None if bias is None else bias.reshape(-1, o)


class LocallyConnected2d(nn.Module):
    """A 2-D layer whose kernel may differ from one output position (or region) to the next.

    ``weight`` has shape (R, C*kh*kw, O): one (C*kh*kw, O) matrix per region, rows ordered
    like ``nn.Conv2d.weight[o].flatten()`` and ``F.unfold`` (channel, then kernel row, then
    kernel column), so ``conv.weight.reshape(O, -1).T`` is a region's kernel. ``bias`` has
    shape (R, O). R is the number of output positions when unshared. The input size is
    fixed at construction because the number of output positions, and so of kernels,
    depends on it.

    Give at most one of ``regions`` (an ``rh x rw`` grid; uneven splits put the larger
    regions first, see :func:`split_sizes`) and ``block`` (regions of ``bh x bw`` output
    positions, the last ones shorter, see :func:`block_sizes`). For DeepID2's "conv3
    weights locally shared in 2x2 regions", ``block=2`` is the reading where each 2x2 block
    of output positions has its own kernel and ``regions=(2, 2)`` the reading with four
    quadrants.

    When the regions are equal rectangles (``uniform``), each region's positions are the rows
    of one matmul. Uneven regions are expanded to one kernel copy per output position (an
    ``index_select``; autograd sums the gradients back per region).

    Initialisation matches ``nn.Conv2d``: kaiming-uniform with ``a=sqrt(5)`` over fan-in
    C*kh*kw, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases alike.
    Under autocast the layer computes in the autocast dtype. Double backward is not
    supported (it raises).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        in_size: tuple[int, int],
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: IntPair = 0,
        regions: tuple[int, int] | None = None,
        bias: bool = True,
        *,
        block: IntPair | None = None,
    ) -> None:
        super().__init__()
        if regions is not None and block is not None:
            raise ValueError("LocallyConnected2d: give regions or block, not both")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.in_size = _pair(in_size)
        self.kernel_size, self.stride, self.padding = _pair(kernel_size), _pair(stride), _pair(padding)
        self.out_size = conv_output_size(self.in_size, self.kernel_size, self.stride, self.padding)
        ho, wo = self.out_size
        if ho < 1 or wo < 1:
            raise ValueError(
                f"LocallyConnected2d: input {self.in_size} with kernel {self.kernel_size}, stride {self.stride}, "
                f"padding {self.padding} gives an empty output {self.out_size}"
            )
        self.shared = regions is not None or block is not None
        if regions is not None:
            row_sizes, col_sizes = split_sizes(ho, regions[0]), split_sizes(wo, regions[1])
        elif block is not None:
            bh, bw = _pair(block)
            row_sizes, col_sizes = block_sizes(ho, bh), block_sizes(wo, bw)
        else:
            row_sizes, col_sizes = [1] * ho, [1] * wo
        self.grid = (len(row_sizes), len(col_sizes))
        # Equal rectangles: one matmul per region. Uneven ones: one per position, with the
        # region's kernel copied to each of its positions.
        self.uniform = len(set(row_sizes)) == 1 and len(set(col_sizes)) == 1
        self.layout: Layout = (
            (self.grid[0], row_sizes[0], self.grid[1], col_sizes[0]) if self.uniform else (ho, 1, wo, 1)
        )
        # A buffer so it follows .to(device); derived from the config, so not saved in state_dict.
        self.register_buffer("region_index", _region_of_positions(row_sizes, col_sizes), persistent=False)
        fan_in = in_channels * self.kernel_size[0] * self.kernel_size[1]
        self.weight = nn.Parameter(torch.empty(self.grid[0] * self.grid[1], fan_in, out_channels))
        self.bias = nn.Parameter(torch.empty(self.grid[0] * self.grid[1], out_channels)) if bias else None
        self.reset_parameters()

    @property
    def num_regions(self) -> int:
        """Number of distinct kernels."""
        return self.weight.shape[0]

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.weight.shape[1])
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def position_weight(self) -> torch.Tensor:
        """The (L, C*kh*kw, O) kernel of every output position, in ``weight``'s row order."""
        return self.weight.index_select(0, self.region_index) if self.shared else self.weight

    def position_bias(self) -> torch.Tensor | None:
        """The (L, O) bias of every output position, or None."""
        if self.bias is None or not self.shared:
            return self.bias
        return self.bias.index_select(0, self.region_index)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels or tuple(x.shape[-2:]) != self.in_size:
            raise ValueError(
                f"LocallyConnected2d expects (N, {self.in_channels}, {self.in_size[0]}, {self.in_size[1]}), "
                f"got {tuple(x.shape)}"
            )
        region_index = None if self.uniform else self.region_index
        weight, bias = block_kernels(self.weight, self.bias, self.in_channels, region_index)
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        x, weight = x.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
        ph, pw = self.padding
        if ph or pw:
            x = F.pad(x, (pw, pw, ph, ph))
        with torch.autocast(device_type=device, enabled=False):
            return local_matmul(x, weight, bias, self.kernel_size, self.stride, self.layout)

    def extra_repr(self) -> str:
        sharing = f"grid={self.grid}" if self.shared else "unshared"
        return (
            f"{self.in_channels}, {self.out_channels}, in_size={self.in_size}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, {sharing}, bias={self.bias is not None}"
        )
