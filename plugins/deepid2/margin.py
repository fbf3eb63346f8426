"""DeepID2's verification margin m, and the exact threshold rule that resets it.

The paper (Sun et al. 2014, Sec. 3) does not learn m by gradient descent — doing so drives it to
0, where the term on different-identity pairs vanishes. It holds m fixed and, every N training
pairs (N = 200,000), resets it to the distance threshold that minimises the verification error
on those N pairs. Three modes, one module:

- ``adaptive`` (the paper's): a buffer of the last N pair distances (one row per ConvNet of an
  ensemble) and their same/different labels; when N pairs have been seen, m := the exact best
  threshold of the window and the window starts again. Everything lives in module buffers, so a
  checkpoint carries a half-filled window and a resumed run updates m at the same pair as an
  uninterrupted one.
- ``fixed``: m stays at its initial value (ablation).
- ``learned``: m is an ``nn.Parameter`` trained with the network (ablation that shows the
  collapse toward 0).

The initial m is not given by the paper. ``initial=None`` (default) sets it, before the first
loss is computed, to the exact best threshold of the first batch's pairs, so m starts on the
scale the untrained features happen to have; a number fixes it.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from facebench.config import ConfigError

MODES = ("adaptive", "fixed", "learned")


def best_threshold(distance: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Thresholds t minimising the verification error of "same iff distance < t", exactly.

    ``distance`` is (R, n) (one row per net), ``same`` (n,) bool shared by the rows. For each
    row the pairs are sorted once; the error of a threshold placed just above the k smallest
    distances is (#different among them) + (#same among the rest), a cumulative sum. Only cuts
    between distinct distances are candidates; t is the midpoint of the first optimal cut
    (when every pair is called "different": smallest - 0.5; when every pair is called "same":
    largest + 0.5). Returns (R,).
    """
    d, order = torch.sort(distance.detach().float(), dim=1)
    s = same[order].float()
    n = d.shape[1]
    # errors[:, k] = error with the k smallest distances called "same", k = 0..n.
    diff_below = torch.cumsum(1.0 - s, dim=1)
    same_above = s.sum(1, keepdim=True) - torch.cumsum(s, dim=1)
    errors = torch.cat([s.sum(1, keepdim=True), diff_below + same_above], dim=1)
    # A cut between equal distances cannot be realised by any threshold.
    tied = torch.zeros_like(errors, dtype=torch.bool)
    tied[:, 1:n] = d[:, 1:] == d[:, :-1]
    errors = errors.masked_fill(tied, float("inf"))
    k = torch.argmin(errors, dim=1)  # first minimiser
    below = torch.cat([d[:, :1] - 1.0, d], dim=1)  # value just below cut k: below[:, k]
    above = torch.cat([d, d[:, -1:] + 1.0], dim=1)  # value just above cut k: above[:, k]
    rows = torch.arange(len(d), device=d.device)
    return 0.5 * (below[rows, k] + above[rows, k])


class Margin(nn.Module):
    """The margin of ``nets`` verification signals (one per ConvNet), in one of ``MODES``.

    ``value`` is the (nets,) margin used by the loss. ``observe(distance, same)`` records a
    batch's pairs ((nets, n) distances, (n,) labels) and, in adaptive mode, resets m each time
    ``every`` pairs have been recorded.
    """

    def __init__(self, nets: int, mode: str = "adaptive", initial: Optional[float] = None, every: int = 200_000) -> None:
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"loss.margin.mode={mode!r}: use one of {', '.join(MODES)}")
        if every < 2:
            raise ConfigError(f"loss.margin.every={every}: the window needs at least 2 pairs")
        self.mode = mode
        self.every = every
        start = torch.full((nets,), 0.0 if initial is None else float(initial))
        if mode == "learned":
            self.learned = nn.Parameter(start)
        else:
            self.register_buffer("fixed_value", start)
        self.register_buffer("initialised", torch.tensor(initial is not None))
        if mode == "adaptive":
            self.register_buffer("window", torch.zeros(nets, every))
            self.register_buffer("window_same", torch.zeros(every, dtype=torch.bool))
            self.register_buffer("filled", torch.zeros((), dtype=torch.long))
            self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @property
    def value(self) -> torch.Tensor:
        return self.learned if self.mode == "learned" else self.fixed_value

    @torch.no_grad()
    def _set(self, m: torch.Tensor) -> None:
        self.value.copy_(m)

    @torch.no_grad()
    def observe(self, distance: torch.Tensor, same: torch.Tensor) -> None:
        """Record pairs; call before computing the loss so an uninitialised m gets its first value."""
        distance = distance.detach().float()
        if not bool(self.initialised):
            self._set(best_threshold(distance, same))
            self.initialised.fill_(True)
        if self.mode != "adaptive":
            return
        start = 0
        while start < distance.shape[1]:
            filled = int(self.filled)
            take = min(self.every - filled, distance.shape[1] - start)
            self.window[:, filled : filled + take] = distance[:, start : start + take]
            self.window_same[filled : filled + take] = same[start : start + take]
            self.filled += take
            start += take
            if int(self.filled) == self.every:
                self._set(best_threshold(self.window, self.window_same))
                self.filled.zero_()
                self.updates += 1
