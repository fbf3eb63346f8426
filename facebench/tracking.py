"""What a tracker receives from a run; the null tracker is the default."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


class Tracker:
    """Receives configs, metrics, tables and curves. Every method is optional to override;
    a tracker must never make a run fail (its failures are reported, the record is kept)."""

    def start(self, config: dict[str, Any], run_dir: Path) -> None:
        """A run begins."""

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Training metrics at ``step``."""

    def summary(self, metrics: dict[str, Any]) -> None:
        """Final metrics of the run."""

    def table(self, name: str, table: pd.DataFrame) -> None:
        """A per-fold or per-trial table."""

    def roc(self, fpr: np.ndarray, tpr: np.ndarray) -> None:
        """The pooled ROC curve."""

    def finish(self, status: str) -> None:
        """The run ended (complete or failed); flush and close."""
