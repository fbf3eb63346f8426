"""ONNX export: every built-in backbone, the locally connected layers included, reproduces
PyTorch's features in onnxruntime at batch sizes 1 and 7; a finished run exports from the CLI."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY
from facebench.components import BuildContext
from facebench.config import compose
from facebench.export import TOLERANCE, parity, to_onnx
from facebench.registry import get_registry
from facebench.run import execute
from facebench.testing import built_config

pytest.importorskip("onnxruntime", reason="ONNX export is checked with onnxruntime (the `export` extra)")

REGISTRY = get_registry()


def _backbone(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return REGISTRY.build("backbone", built_config("backbone", name), BuildContext(num_classes=5)).eval()


@pytest.mark.parametrize("name", [n for n in REGISTRY.names("backbone") if _backbone(n).exportable])
def test_every_exportable_backbone_exports_with_a_dynamic_batch(name: str) -> None:
    backbone = _backbone(name)
    model = to_onnx(backbone)
    assert parity(backbone, model, batches=(1, 7)) < TOLERANCE


def test_a_backbone_computed_outside_torch_is_refused_by_name() -> None:
    from facebench.export import ExportError

    with pytest.raises(ExportError, match="LbpBackbone computes its features outside torch's graph"):
        to_onnx(_backbone("lbp"))


def test_a_finished_run_exports_from_the_command_line(tmp_path: Path) -> None:
    import onnx

    record = execute(compose(["+method=deepid2", *TINY, f"results_root={tmp_path}"]), tmp_path / "run")
    out = tmp_path / "model.onnx"
    proc = subprocess.run([sys.executable, "-m", "facebench.export", str(tmp_path / "run"), "--onnx", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "onnxruntime matches PyTorch" in proc.stdout
    model = onnx.load(out)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["facebench.method"] == record["method"] and meta["facebench.unit"] == "model"
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_a_run_with_a_model_per_fold_asks_which(tmp_path: Path) -> None:
    from facebench.export import ExportError, trained_backbone
    from fake_lfw import make_lfw

    root = make_lfw(tmp_path / "lfw")
    execute(compose(["+method=deepid", "data=lfw", f"data.root={root}", "trainer.steps=2", "trainer.pk_identities=2",
                     "trainer.pk_images=2", "verifier.pca_dim=null", f"results_root={tmp_path}"]), tmp_path / "run")
    with pytest.raises(ExportError, match=r"one model per unit \(fold1, fold2\): choose one with --unit"):
        trained_backbone(tmp_path / "run", None)
    backbone, meta = trained_backbone(tmp_path / "run", "fold2")
    assert meta["facebench.unit"] == "fold2" and backbone.feature_dim == 160
