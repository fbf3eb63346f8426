"""Matplotlib for every plot facebench writes: a headless backend, labels printed as written,
and figures saved whole (atomically) and closed."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from facebench.atomic_io import atomic_write_bytes


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def tex_safe(text: str) -> str:
    """A label matplotlib prints as written (a '$' would start mathtext)."""
    return str(text).replace("$", r"\$")


def save_figure(path: Path, fig: Any, dpi: int = 110) -> None:
    """Write a figure as PNG atomically, then close it (an open figure keeps its memory for the
    life of the process)."""
    try:
        atomic_write_bytes(path, lambda fh: fig.savefig(fh, format="png", dpi=dpi), what="plot")
    finally:
        pyplot().close(fig)
