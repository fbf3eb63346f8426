"""``python -m facebench.export RUN_DIR --onnx OUT.onnx``: a finished run's trained backbone as ONNX.

The graph takes a float batch (N, C, H, W) in [-1, 1] (uint8 pixels / 127.5 - 1, RGB or grey,
at the backbone's input size) with a symbolic batch dimension and returns the test-time
feature (N, feature_dim) — before any flip combination or verifier, which are the run's
evaluation settings, written into the model's metadata. The export is checked against
PyTorch with onnxruntime (the ``export`` extra) at two batch sizes; a difference above
``TOLERANCE`` is an error, not a warning.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from omegaconf import OmegaConf

from facebench.components import FEATURE, BuildContext
from facebench.errors import FacebenchError
from facebench.registry import get_registry
from facebench.results import RECORD_FILE, read_record

TOLERANCE = 1e-4
OPSET = 17
CHECK_BATCHES = (1, 7)


class ExportError(FacebenchError):
    """A run that cannot be exported, or an export that does not reproduce PyTorch."""


class FeatureGraph(torch.nn.Module):
    """The backbone with only its test-time feature as output (side outputs are training's)."""

    def __init__(self, backbone: torch.nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)[FEATURE]


def to_onnx(backbone: torch.nn.Module, metadata: Optional[dict[str, str]] = None) -> bytes:
    """The backbone's feature graph as ONNX bytes, batch dimension symbolic."""
    if not getattr(backbone, "exportable", True):
        raise ExportError(f"backbone {type(backbone).__name__} computes its features outside torch's graph; ONNX cannot "
                          "hold it (compute them with facebench instead)")
    graph = FeatureGraph(backbone).eval()
    example = torch.zeros(2, *backbone.input_shape)
    buffer = io.BytesIO()
    # The TorchScript-based exporter (the torch.export-based one cannot trace the locally
    # connected layers' custom autograd function): its deprecation and tracer warnings are noise here.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph, (example,), buffer, input_names=["images"], output_names=["feature"], opset_version=OPSET,
            dynamic_axes={"images": {0: "batch"}, "feature": {0: "batch"}}, dynamo=False,
        )
    if not metadata:
        return buffer.getvalue()
    import onnx

    model = onnx.load_from_string(buffer.getvalue())
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    return model.SerializeToString()


def parity(backbone: torch.nn.Module, model: bytes, batches: tuple[int, ...] = CHECK_BATCHES, seed: int = 0) -> float:
    """The largest absolute difference between onnxruntime's and PyTorch's features on random
    inputs at each batch size."""
    import onnxruntime

    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    graph = FeatureGraph(backbone).eval()
    generator = torch.Generator().manual_seed(seed)
    worst = 0.0
    for n in batches:
        x = torch.rand(n, *backbone.input_shape, generator=generator) * 2 - 1
        with torch.no_grad():
            expected = graph(x).numpy()
        (got,) = session.run(None, {"images": x.numpy()})
        if got.shape != expected.shape:
            raise ExportError(f"ONNX gives features of shape {got.shape} for a batch of {n}, PyTorch {expected.shape}")
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def trained_backbone(run_dir: Path, unit: Optional[str]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The run's backbone with its unit's trained weights, and what the metadata says of it."""
    from facebench.run import checkpoint_key, with_schema_defaults

    record = read_record(run_dir / RECORD_FILE)
    if record["status"] not in ("complete", "partial"):
        raise ExportError(f"{run_dir / RECORD_FILE}: status {record['status']}; only finished runs are exported")
    written = OmegaConf.load(run_dir / "config.yaml")
    cfg = with_schema_defaults(written, get_registry())
    names = [row["name"] for row in record["units"]]
    rows = {row["name"]: row for row in record["units"]}
    one_model = record["regime"] == "unrestricted_labeled_outside"  # trained once, saved as model.pt
    if unit is None:
        if not one_model and len(names) > 1:
            raise ExportError(f"{run_dir} trained one model per unit ({', '.join(names)}): choose one with --unit")
        unit = "model" if one_model else names[0]
    elif not one_model and unit not in rows:
        raise ExportError(f"--unit {unit}: {run_dir} has units {', '.join(names)}")
    row = rows.get(unit) or rows[names[0]]
    ctx = BuildContext(num_classes=int(row.get("train_identities") or 0), seed=int(cfg.seed))
    torch.manual_seed(int(cfg.seed))
    backbone = get_registry().build("backbone", cfg.backbone, ctx)
    if getattr(backbone, "trainable", True):
        checkpoint = Path(cfg.results_root) / "checkpoints" / checkpoint_key(written) / f"{unit}.pt"
        if not checkpoint.is_file():
            raise ExportError(f"{checkpoint}: the run's checkpoint for unit {unit} is not there (checkpoints stay under "
                              "results_root/checkpoints; was it deleted or made on another machine?)")
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        backbone.load_state_dict(state["backbone"])
    metadata = {
        "facebench.method": str(record["method"]),
        "facebench.unit": unit,
        "facebench.input": f"float (N, {', '.join(map(str, backbone.input_shape))}) in [-1, 1]: uint8 / 127.5 - 1",
        "facebench.features_flip": str(cfg.features.flip),
        "facebench.verifier": json.dumps(OmegaConf.to_container(cfg.verifier)),
    }
    return backbone.eval(), metadata


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m facebench.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a finished run's folder (holding metrics.json and config.yaml)")
    parser.add_argument("--onnx", type=Path, required=True, help="where to write the ONNX model")
    parser.add_argument("--unit", help="which unit's model (runs that trained one per test fold)")
    args = parser.parse_args(argv)
    try:
        backbone, metadata = trained_backbone(args.run_dir, args.unit)
        model = to_onnx(backbone, metadata)
        worst = parity(backbone, model)
        if worst > TOLERANCE:
            raise ExportError(f"the ONNX model differs from PyTorch by {worst:.3g} (> {TOLERANCE:g}); not written")
    except (FacebenchError, ImportError) as exc:
        print(f"facebench.export: error: {exc}", file=sys.stderr)
        sys.exit(2)
    from facebench.atomic_io import atomic_write_bytes

    atomic_write_bytes(args.onnx, lambda fh: fh.write(model), what="ONNX model")
    print(f"facebench.export: {args.onnx} ({metadata['facebench.method']}, unit {metadata['facebench.unit']}); "
          f"onnxruntime matches PyTorch to {worst:.2g} at batch sizes {', '.join(map(str, CHECK_BATCHES))}")


if __name__ == "__main__":
    main()
