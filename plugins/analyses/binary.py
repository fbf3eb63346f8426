"""Binary codes (DeepID2+, Sec. 5): keep only which neurons are active (> 0) and little is lost —
99.47% with Joint Bayesian on real values, 99.12% with Joint Bayesian on the binary code and
97.47% by Hamming distance in the paper. Scored here under the run's own protocol and folds."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from facebench.components import Analysis, AnalysisResult, Finding
from facebench.plots import pyplot, tex_safe


def binary_codes(features: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    return (np.asarray(features) > threshold).astype(np.float32)


@dataclass
class BinaryConfig:
    """pca_dim: PCA size before Joint Bayesian, on real features and codes alike (null: the
    run's verifier.pca_dim when it has one, else no PCA).
    max_drop_joint_bayesian, max_drop_hamming: accuracy points the codes may lose against the
    real-valued features under Joint Bayesian for the finding to hold (the paper loses 0.35 with
    Joint Bayesian on the codes and 2.0 by Hamming distance)."""

    name: str = "binary"
    pca_dim: Optional[int] = None
    max_drop_joint_bayesian: float = 1.0
    max_drop_hamming: float = 3.0


class BinaryAnalysis(Analysis):
    def __init__(self, cfg: BinaryConfig) -> None:
        self.cfg = cfg

    def analyse(self, run) -> AnalysisResult:  # type: ignore[no-untyped-def]
        pca = self.cfg.pca_dim if self.cfg.pca_dim is not None else run.cfg.verifier.get("pca_dim")
        jb = run.verifier_config("joint_bayesian", pca_dim=pca)
        hamming = run.verifier_config("hamming", pca_dim=None, pca_whiten=False)
        real = {m.name: m.features for m in run.units}
        codes = {m.name: binary_codes(m.features) for m in run.units}
        scored = {
            "real_run_verifier": run.evaluate(real),
            "real_joint_bayesian": run.evaluate(real, jb),
            "binary_joint_bayesian": run.evaluate(codes, jb),
            "binary_hamming": run.evaluate(codes, hamming),
        }
        acc = {k: v["mean_accuracy"] for k, v in scored.items()}
        recorded = {row["name"]: row.get("accuracy") for row in run.record["units"]}
        rescored = scored["real_run_verifier"]["fold_accuracies"]
        drop_jb = 100 * (acc["real_joint_bayesian"] - acc["binary_joint_bayesian"])
        drop_hamming = 100 * (acc["real_joint_bayesian"] - acc["binary_hamming"])
        summary = {
            "joint_bayesian_pca_dim": pca,
            "run_verifier": str(run.cfg.verifier.name),
            "reproduces_record": all(recorded.get(unit) is not None and abs(value - recorded[unit]) < 1e-6
                                     for unit, value in rescored.items()),
            "share_active": float(np.mean([c.mean() for c in codes.values()])),
            **{k: {"mean_accuracy": v["mean_accuracy"], "se_accuracy": v.get("se_accuracy"),
                   "fold_accuracies": v["fold_accuracies"]} for k, v in scored.items()},
            "drop_joint_bayesian_points": drop_jb,
            "drop_hamming_points": drop_hamming,
        }
        finding = Finding(
            "binary activation patterns lose little (paper: JB 99.47% real, 99.12% binary; Hamming 97.47%)",
            drop_jb <= self.cfg.max_drop_joint_bayesian and drop_hamming <= self.cfg.max_drop_hamming,
            f"JB real {100 * acc['real_joint_bayesian']:.2f}%, JB binary {100 * acc['binary_joint_bayesian']:.2f}% "
            f"({-drop_jb:+.2f}), Hamming {100 * acc['binary_hamming']:.2f}% ({-drop_hamming:+.2f}); allowed "
            f"-{self.cfg.max_drop_joint_bayesian:g} / -{self.cfg.max_drop_hamming:g} points",
        )
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5.5, 2.8), dpi=110)
        names = list(acc)
        ax.barh(range(len(names)), [100 * acc[k] for k in names], color=["#4477aa", "#4477aa", "#cc6677", "#cc6677"])
        ax.set_yticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=8)
        lo = min(100 * min(acc.values()) - 5, 95)
        ax.set_xlim(max(lo, 0), 100)
        ax.set_xlabel("mean accuracy over the run's folds (%)")
        ax.set_title(tex_safe(f"{run.label}: real-valued vs binary features"), fontsize=9)
        fig.tight_layout()
        return AnalysisResult(summary, {"accuracy": fig}, [finding])
