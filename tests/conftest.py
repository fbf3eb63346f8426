"""Shared test settings: a per-session cache and results root, tiny synthetic sizes, and the
location of the real data (skipped with a reason where it is absent)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

# One thread per process: the suite starts many subprocesses on 2 cores, and oversubscribed
# BLAS/torch threads made a tiny PCA run take minutes instead of seconds.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest
import torch
from threadpoolctl import threadpool_limits

if TYPE_CHECKING:
    from facebench.study.spec import Study

REPO = Path(__file__).resolve().parents[1]

#: A synthetic benchmark small enough that a whole run takes seconds.
TINY = [
    "data.identities=24",
    "data.images_per_identity=6",
    "protocol.people_per_fold=6",
    "protocol.images_min=3",
    "protocol.images_max=5",
    "protocol.pairs_per_class=20",
    "trainer.steps=6",
    "trainer.batch_size=32",
    "trainer.log_every=3",
]


def losses_study(overrides: list[str] = ()) -> Study:
    """The study config (default ``study=losses``) composed with ``overrides``, as
    ``python -m facebench.study`` composes it."""
    from hydra import compose, initialize_config_module

    from facebench.config import register_resolvers
    from facebench.registry import get_registry
    from facebench.study.spec import Study

    register_resolvers()
    with initialize_config_module("facebench.study.conf", version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    return Study(cfg.study, get_registry())


def shared_data() -> Path:
    return Path(os.environ.get("FACEBENCH_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def lfw_root() -> Path:
    root = shared_data() / "lfw"
    if not (root / "pairs.txt").is_file():
        pytest.skip(f"real LFW data not found at {root} (set FACEBENCH_SHARED_DATA to the folder holding lfw/)")
    return root


@pytest.fixture(scope="session", autouse=True)
def isolated_dirs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the user's cache and results untouched; share one cache across the session."""
    os.environ["FACEBENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["FACEBENCH_RESULTS"] = str(tmp_path_factory.mktemp("results"))
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ["FACEBENCH_OFFLINE"] = "1"  # no test may ever start a download


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """torch and BLAS on one thread for a module's in-process runs (use with ``pytestmark``)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)
