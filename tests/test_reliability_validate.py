"""Configuration is validated before anything expensive: ``validate_only=true`` builds every
component (the loss and verifier included, whose factories check their own settings) and
checks every data path, then stops without decoding an image or training a step; a sweep with
one bad data path fails in seconds, naming the key.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY
from fake_lfw import make_lfw
from facebench.config import ConfigError, compose
from facebench.errors import DataError
from facebench.run import execute


def validate(tmp_path: Path, *overrides: str) -> dict:
    """``validate_only`` with a cache and results root of its own, which must stay empty."""
    cache, results = tmp_path / "cache", tmp_path / "results"
    try:
        return execute(compose([*overrides, "validate_only=true", f"cache_dir={cache}", f"results_root={results}"]))
    finally:
        assert not cache.exists() or not any(cache.iterdir()), "validate_only decoded images"
        assert not results.exists(), "validate_only created a run directory"


def test_a_valid_config_is_validated_without_decoding(tmp_path: Path) -> None:
    assert validate(tmp_path, "+method=deepid", *TINY) == {"status": "validated", "regime": "unrestricted_labeled_outside"}


def test_every_lfw_path_is_checked_without_decoding(tmp_path: Path) -> None:
    root = make_lfw(tmp_path / "lfw")
    assert validate(tmp_path, "+method=deepid", "data=lfw", f"data.root={root}")["regime"] == "unrestricted_no_outside"
    (root / "lfw-112X96" / "Dan_Delta" / "Dan_Delta_0002.jpg").unlink()  # named by a pair of fold 2
    with pytest.raises(DataError, match=r"pairs.txt:4: image Dan_Delta/Dan_Delta_0002.jpg does not exist"):
        validate(tmp_path, "+method=deepid", "data=lfw", f"data.root={root}")


def test_a_missing_lfw_root_fails_fast_naming_the_key(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    began = time.perf_counter()
    with pytest.raises(DataError, match=f"data.root={missing}: no such directory"):
        validate(tmp_path, "+method=deepid", "data=lfw", f"data.root={missing}")
    assert time.perf_counter() - began < 10  # planning only; decoding LFW alone would take minutes


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["+method=facenet", "loss.mining=hardest_ever"], "loss.mining='hardest_ever'"),
        (["verifier=hamming", "verifier.pca_dim=8"], "verifier.pca_dim=8"),
    ],
    ids=["loss", "verifier"],
)
def test_loss_and_verifier_settings_are_checked_before_any_data(tmp_path: Path, overrides: list[str], message: str) -> None:
    """Their factories refuse these settings; without building them while planning, the error
    would come only after the data is decoded (loss) or the model trained (verifier)."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate(tmp_path, *TINY, *overrides)


def test_a_sweep_with_one_bad_data_root_fails_naming_it(tmp_path: Path) -> None:
    """Through the command line, as a user checks a sweep before launching it."""
    good = make_lfw(tmp_path / "lfw")
    bad = tmp_path / "nowhere"
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, "-m", "facebench", "-m", "+method=deepid", "validate_only=true", "data=lfw",
         f"data.root={good},{bad}", f"results_root={tmp_path / 'results'}"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "FACEBENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode != 0
    assert f"data.root={bad}: no such directory" in proc.stdout + proc.stderr
    assert "configuration valid" in proc.stdout  # the good job was validated
    assert not cache.exists() or not any(cache.iterdir())
    assert not list((tmp_path / "results").rglob("checkpoints"))
