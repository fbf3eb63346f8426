"""Greedy forward-backward selection of patches (DeepID2, Sec. 4: 25 of 200 nets).

The paper names the algorithm but not its details. This is sequential floating forward
selection (Pudil et al. 1994), the usual "forward-backward greedy" search:

- forward: add the candidate whose addition scores best;
- backward: then, while some member other than the one just added can be dropped and the
  smaller set scores strictly better than the best set of that size seen so far, drop the
  member whose removal scores best.

The best score per size only increases, so the search ends; it stops at ``k`` members. Ties go
to the lowest candidate index, so the result is deterministic. Scores are cached per set.
"""
from __future__ import annotations

from typing import Callable, Sequence

Score = tuple[float, ...]


def forward_backward_select(score: Callable[[tuple[int, ...]], Score], candidates: Sequence[int], k: int) -> list[int]:
    """The selected candidates, in the order they joined (``score`` of a sorted tuple; higher is better)."""
    if not 1 <= k <= len(candidates):
        raise ValueError(f"cannot select {k} of {len(candidates)} candidates")
    cache: dict[tuple[int, ...], Score] = {}

    def value(members: list[int]) -> Score:
        key = tuple(sorted(members))
        if key not in cache:
            cache[key] = score(key)
        return cache[key]

    selected: list[int] = []
    best_at: dict[int, Score] = {}
    while len(selected) < k:
        options = [c for c in candidates if c not in selected]
        added = max(options, key=lambda c: (value(selected + [c]), -c))
        selected.append(added)
        size = len(selected)
        best_at[size] = max(best_at.get(size, value(selected)), value(selected))
        while len(selected) > 2:
            removable = [r for r in selected if r != added]
            drop = max(removable, key=lambda r: (value([s for s in selected if s != r]), -r))
            smaller = [s for s in selected if s != drop]
            if value(smaller) <= best_at[len(smaller)]:
                break
            selected = smaller
            best_at[len(selected)] = value(selected)
    return selected
