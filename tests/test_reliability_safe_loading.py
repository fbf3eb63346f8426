"""Safe loading: files facebench reads back are data, never code, and configs name registered
components, never code to instantiate.

- checkpoints load with ``torch.load(weights_only=True)``: a crafted pickle is refused unread;
- cached arrays and verifier (and PCA) state load with ``np.load(allow_pickle=False)``;
- no module calls eval/exec, an unrestricted unpickler or Hydra's instantiate (checked on the
  source, so a new call anywhere fails this test);
- ``_target_`` in a config, top-level or nested in a list, is refused before anything runs.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import REPO, TINY
from facebench.components import BuildContext
from facebench.config import ConfigError, compose
from facebench.data.cache import cache_key, cached_images
from facebench.registry import get_registry
from facebench.run import checkpoint_key, execute
from facebench.train import CheckpointError

SOURCES = sorted((REPO / "facebench").rglob("*.py")) + sorted((REPO / "plugins").rglob("*.py"))


class Payload:
    """Unpickling this creates ``marker``: proof that a loader ran code from a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


pytestmark = pytest.mark.usefixtures("one_thread")


# --- checkpoints ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["malicious", "torn"])
def test_resuming_from_a_crafted_or_torn_checkpoint_is_refused_unread(tmp_path: Path, kind: str) -> None:
    overrides = ["+method=deepid", *TINY, "device=cpu", "trainer.steps=2", "trainer.batch_size=8", f"results_root={tmp_path}"]
    checkpoint = tmp_path / "checkpoints" / checkpoint_key(compose(overrides)) / "model.pt"
    checkpoint.parent.mkdir(parents=True)
    marker = tmp_path / "code-ran"
    if kind == "malicious":
        torch.save({"step": 1, "backbone": Payload(marker), "loss": {}, "optimizer": {}}, checkpoint)
    else:
        torch.save({"step": 1, "backbone": {"w": torch.zeros(1000)}}, checkpoint)
        checkpoint.write_bytes(checkpoint.read_bytes()[:300])
    with pytest.raises(CheckpointError) as refused:
        execute(compose([*overrides, "trainer.resume=true"]), tmp_path / "run")
    assert not marker.exists()
    message = str(refused.value)
    assert f"checkpoint {checkpoint} cannot be read" in message and "trainer.resume=false" in message
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "failed" and record["error"].startswith("CheckpointError")


# --- numpy files ---------------------------------------------------------------------------


def test_a_planted_object_array_in_the_image_cache_is_refused(tmp_path: Path) -> None:
    """Refused unread (never unpickled), deleted, and rebuilt from the source."""
    parts = {"what": "planted"}
    key = cache_key(parts)
    marker = tmp_path / "code-ran"
    planted = np.empty(1, dtype=object)
    planted[0] = Payload(marker)
    with open(tmp_path / f"{key}.npy", "wb") as fh:
        np.save(fh, planted, allow_pickle=True)
    (tmp_path / f"{key}.json").write_text(json.dumps({"shape": [1], "crc32": [0]}))
    fresh = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    images, _ = cached_images(tmp_path, parts, lambda: (fresh, {}), "planted")
    assert not marker.exists() and np.array_equal(images, fresh)


#: Settings that fit the test features: 320-d = 10 patch blocks of 16 in two flip halves.
VERIFIER_SETTINGS = {
    "hamming": {},  # compares active units; refuses a PCA
    "deepid2_ensemble": {"pca_dim": 8, "block_dim": 16, "select": 2, "sets": 2, "pairs": 200},
}


@pytest.mark.parametrize("name", get_registry().names("verifier"))
def test_every_verifier_state_round_trips_through_npz_without_pickle(tmp_path: Path, name: str) -> None:
    """A verifier whose state held an object (a dict, a list of arrays) could only be saved by
    pickling; ``np.load(allow_pickle=False)`` would refuse it. Every registered verifier, with
    the PCA in front where it takes one, on non-negative features (ReLU outputs)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(12), 8)
    features = np.maximum(rng.normal(size=(96, 320)) + rng.normal(size=(12, 320))[labels] * 2, 0.0)
    registry = get_registry()
    schema = registry.get("verifier", name).schema
    default = {"pca_dim": 8} if "pca_dim" in schema.__dataclass_fields__ else {}
    cfg = OmegaConf.structured(schema(name=name, **VERIFIER_SETTINGS.get(name, default)))
    try:
        fitted = registry.build("verifier", cfg, BuildContext(seed=0)).fit(features, labels)
    except ConfigError as exc:  # a new verifier that needs features shaped for it: add its settings above
        pytest.skip(f"verifier {name} needs its own settings in VERIFIER_SETTINGS: {exc}")
    np.savez(tmp_path / "state.npz", **fitted.state())
    with np.load(tmp_path / "state.npz", allow_pickle=False) as saved:
        loaded = registry.build("verifier", cfg, BuildContext(seed=0)).load_state(dict(saved))
    np.testing.assert_array_equal(loaded.score_matrix(features[:7], features[7:]), fitted.score_matrix(features[:7], features[7:]))


# --- the source never loads code -----------------------------------------------------------


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _keyword(call: ast.Call, name: str) -> object:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "<not a constant>"
    return "<missing>"


FORBIDDEN_CALLS = {
    "eval", "exec", "compile", "__import__", "pickle.load", "pickle.loads", "pickle.Unpickler", "marshal.loads",
    "dill.load", "dill.loads", "joblib.load", "pd.read_pickle", "pandas.read_pickle", "yaml.load", "yaml.unsafe_load",
    "shelve.open", "instantiate", "hydra.utils.instantiate", "hydra.utils.call",
}


def unsafe_calls(source: str) -> list[str]:
    """What in ``source`` could run code from a file or a config value."""
    found = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            names = [a.name for a in node.names]
            if module in ("hydra.utils", "pickle", "dill", "marshal") or {"pickle", "dill", "marshal"} & set(names):
                found.append(f"line {node.lineno}: import from {module or names}")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name in FORBIDDEN_CALLS:
            found.append(f"line {node.lineno}: {name}()")
        elif name == "torch.load" and _keyword(node, "weights_only") is not True:
            found.append(f"line {node.lineno}: torch.load without weights_only=True")
        elif name in ("np.load", "numpy.load") and _keyword(node, "allow_pickle") is not False:
            found.append(f"line {node.lineno}: np.load without allow_pickle=False")
        elif _keyword(node, "allow_pickle") is True:
            found.append(f"line {node.lineno}: {name}(allow_pickle=True)")
    return found


def test_the_scan_finds_what_it_forbids() -> None:
    bad = (
        "import pickle\nfrom hydra.utils import instantiate\ntorch.load(p)\ntorch.load(p, weights_only=False)\n"
        "np.load(p)\nnp.save(p, a, allow_pickle=True)\neval(s)\ninstantiate(c)\nyaml.load(s)\n"
    )
    assert len(unsafe_calls(bad)) == 9
    assert unsafe_calls("torch.load(p, weights_only=True)\nnp.load(p, allow_pickle=False)\nyaml.safe_load(s)\n") == []


#: Reviewed uses of pickle: the verification .bin reader imports it to subclass the Unpickler
#: with a find_class that resolves numpy's array reconstruction only, after an opcode scan
#: (tests/test_formats.py: hostile files are refused and create nothing).
REVIEWED_PICKLE = {"facebench/protocols/bin_file.py": ["line 15: import from ['pickle']"]}


def test_no_module_loads_code_from_files_or_configs() -> None:
    """Plugin modules are loaded through entry points (importlib.metadata), never by a name
    taken from a config."""
    found = {str(p.relative_to(REPO)): unsafe_calls(p.read_text()) for p in SOURCES}
    assert {k: v for k, v in found.items() if v and REVIEWED_PICKLE.get(k) != v} == {}
    reader = (REPO / "facebench" / "protocols" / "bin_file.py").read_text()
    assert "def find_class" in reader and "ALLOWED_GLOBALS" in reader and "pickle.load(" not in reader


# --- configs -------------------------------------------------------------------------------


def test_code_targets_are_refused_by_the_command_line_before_anything_runs(tmp_path: Path) -> None:
    """Both commands run side by side; each must stop at the check, with the key named, before
    Hydra creates a run directory (so nothing at all appears under the results root)."""
    marker = tmp_path / "code-ran"
    attempts = {
        "loss._target_": ["+loss._target_=os.system", f"+loss._args_=[touch {marker}]"],
        "extra[1]._target_": [f"+extra=[{{name:fine}},{{_target_:os.system,_args_:[touch {marker}]}}]"],
    }
    procs = {
        key: subprocess.Popen(
            [sys.executable, "-m", "facebench", "+method=deepid", *TINY, *args, f"results_root={tmp_path / str(i)}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        for i, (key, args) in enumerate(attempts.items())
    }
    for i, (key, proc) in enumerate(procs.items()):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, err[-3000:]
        assert f"facebench: error: config key '{key}" in err and "never instantiates arbitrary code" in err
        assert "Traceback" not in out + err
        assert not (tmp_path / str(i)).exists()
    assert not marker.exists()
