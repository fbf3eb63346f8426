"""One run over two processes with torch DDP (gloo on the CPU) trains the same weights as one
process on the same global batches, and a torchrun launch leaves one record."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from conftest import TINY
from facebench import distributed
from facebench.components import FaceData
from facebench.config import ConfigError, TrainerConfig
from facebench.train import train
from facebench_plugins.deepid import DeepIDConfig
from facebench_plugins.deepid_net import DeepIDNet
from facebench_plugins.softmax import SoftmaxLoss

SEED = 3
#: SGD with momentum, weight decay, a schedule, flips and logging (a collective) all take part.
TRAINER = TrainerConfig(steps=4, batch_size=16, lr=0.05, schedule="cosine", log_every=2, flip_augment=True)


def faces() -> FaceData:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 8)
    images = rng.integers(0, 256, size=(len(labels), 39, 31, 3), dtype=np.uint8)
    return FaceData(images, labels, [f"p{i}" for i in range(6)], [f"{i}.png" for i in range(len(labels))])


def fit() -> dict[str, torch.Tensor]:
    """A small DeepID net and a softmax head (a loss that owns parameters), trained on CPU."""
    torch.manual_seed(SEED)
    backbone = DeepIDNet(DeepIDConfig(widths=[4, 8, 8, 8], feature_dim=16))
    loss = SoftmaxLoss(backbone.feature_dim, 6)
    train(backbone, loss, faces(), TRAINER, torch.device("cpu"), SEED)
    return {**{f"backbone.{k}": v for k, v in backbone.state_dict().items()}, **{f"loss.{k}": v for k, v in loss.state_dict().items()}}


def rank_main(rank: int, world_size: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    with distributed.process_group("cpu") as launch:
        assert launch is not None and distributed.active()
        state = fit()
    if rank == 0:
        torch.save(state, out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_train_the_single_process_weights(tmp_path: Path) -> None:
    out = tmp_path / "ddp.pt"
    mp.spawn(rank_main, args=(2, free_port(), str(out)), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)
    single = fit()
    assert ddp.keys() == single.keys()
    assert any(k.startswith("loss.head") for k in ddp)
    for key, value in single.items():
        assert torch.allclose(ddp[key], value, atol=1e-5, rtol=0), (key, (ddp[key] - value).abs().max())
    # and training did move the weights: the comparison is not between two initialisations
    torch.manual_seed(SEED)
    initial = DeepIDNet(DeepIDConfig(widths=[4, 8, 8, 8], feature_dim=16)).state_dict()
    assert not torch.allclose(initial["fc.weight"], single["backbone.fc.weight"])


def test_batch_shares_are_equal_and_hold_whole_identities() -> None:
    assert [distributed.batch_part(12, 1, r, 3) for r in range(3)] == [slice(0, 4), slice(4, 8), slice(8, 12)]
    # 4 identities x 3 images over 2 ranks: 2 whole identities each
    assert [distributed.batch_part(12, 3, r, 2) for r in range(2)] == [slice(0, 6), slice(6, 12)]
    with pytest.raises(ConfigError, match="trainer.pk_identities"):
        distributed.batch_part(12, 3, 0, 3)  # 4 identities do not split over 3 ranks
    with pytest.raises(ConfigError, match="trainer.batch_size"):
        distributed.batch_part(10, 1, 0, 4)
    assert distributed.launch_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == distributed.Launch(1, 2, 1)
    assert distributed.launch_from_env({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert distributed.launch_from_env({}) is None


def test_torchrun_launch_writes_one_record(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "facebench", *TINY, "device=cpu", f"results_root={tmp_path}"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record_path,) = tmp_path.glob("*/metrics.json")
    record = json.loads(record_path.read_text())
    assert record["status"] == "complete" and record["units"][0]["train_steps"] == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([record_path.parent.name, "checkpoints"])
    assert proc.stdout.count("facebench: record:") == 1
