"""Every DeepID2-family preset, end to end in process on TINY synthetic settings."""
from __future__ import annotations

import pytest

from conftest import TINY
from facebench.config import compose
from facebench.run import execute

# Joint Bayesian needs fewer PCA dims than TINY's within-person degrees of freedom.
SMALL_PCA = ["verifier.pca_dim=16"]
PRESETS = {
    "deepid2": SMALL_PCA,
    "deepid2_bn": SMALL_PCA,
    "deepid2_lambda": SMALL_PCA,
    "deepid2_verification": SMALL_PCA,
    "deepid2_verifiers": SMALL_PCA,
    "deepid2plus": SMALL_PCA + ["trainer.steps=2", "backbone.widths=[16,16,16,16]"],
    "deepid2plus_hamming": ["trainer.steps=2", "backbone.widths=[16,16,16,16]"],
    "deepid2_ensemble": SMALL_PCA + ["verifier.select=1", "protocol.folds=[1,2]"],
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_runs_on_tiny_data(preset, tmp_path):
    cfg = compose([f"+method={preset}", *TINY, *PRESETS[preset], f"results_root={tmp_path}"])
    record = execute(cfg, run_dir=tmp_path / "run")
    assert record["status"] in ("complete", "partial")
    assert record["metrics"]["mean_accuracy"] > 0.0
    metrics = record["units"][0]["final_train_metrics"]
    if preset.startswith("deepid2plus"):
        assert "top_verification" in metrics and record["feature_report"]["neurons"] == 512
    else:
        assert {"identification", "verification", "margin", "train_pair_accuracy"} <= set(metrics)
    if preset == "deepid2_ensemble":  # every fold's row says what the selection saw on held-out training pairs
        reports = [unit["verifier_report"] for unit in record["units"]]
        assert len(reports) == 2 and all(len(r["single_patches"]) == 8 and len(r["selected_sets"]) == 2 for r in reports)


def test_verification_only_and_deepid_readings_compose():
    only = compose(["+method=deepid2", "loss.lambda_=inf"])
    assert only.loss.lambda_ == float("inf")
    assert compose(["+method=deepid2_bn"]).backbone.batchnorm is True
