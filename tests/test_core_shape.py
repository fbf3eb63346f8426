"""The core's shape: it imports no plugin, presets come from plugins, runs are named by what
they ran, plugin errors are config errors, and the contracts hold for the built-in protocols."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO, TINY
from facebench.components import Dataset, Protocol
from facebench.config import ConfigError, compose
from facebench.labels import method_label
from facebench.registry import Registry, RegistryError, get_registry
from facebench.run import execute, plan_run


def test_no_core_module_imports_a_plugin() -> None:
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "facebench").rglob("*.py")
                 if re.search(r"\bfacebench_plugins\b", p.read_text())]
    assert not offenders, f"core modules that name the plugin package: {offenders}"


def test_presets_live_beside_their_plugins() -> None:
    assert not (REPO / "conf" / "method").exists()
    registry = get_registry()
    providers = {p.package: p.provider for p in registry.preset_packages}
    assert providers["facebench_plugins.deepid2.presets"] == "facebench:deepid2"
    cfg = compose(["+method=arcface"])
    assert (cfg.loss.name, cfg.trainer.steps, cfg.trainer.optimizer) == ("arcface", 200, "adam")  # trainer=short
    assert compose(["+method=deepid2plus"]).trainer.steps == 60  # a preset's own key after the shared budget


def test_two_plugins_shipping_one_preset_is_an_error() -> None:
    registry = Registry()
    with registry.providing("first"):
        registry.add_presets("facebench_plugins.deepid2.presets")
    with registry.providing("second"), pytest.raises(RegistryError, match=r"two plugins ship the preset method/deepid2"):
        registry.add_presets("facebench_plugins.deepid2.presets")


def test_the_label_names_components_chosen_on_top_of_the_preset(tmp_path: Path) -> None:
    assert method_label("deepid2", ["+method=deepid2", "loss=arcface", "loss.margin=0.3", "seed=1"]) == "deepid2[loss=arcface]"
    assert method_label("deepid2", ["+method=deepid2", "trainer.steps=5"]) == "deepid2"
    cfg = compose(["+method=deepid2", "loss=softmax", *TINY, f"results_root={tmp_path}"])
    record = execute(cfg)
    assert record["method"] == "deepid2[loss=softmax]" and record["preset"] == "deepid2"
    assert "-deepid2[loss=softmax]-" in Path(record["run_dir"]).name
    plugins = record["plugins"]
    assert plugins["loss"]["distribution"] == "facebench" and plugins["loss"]["entry_point"] == "softmax"
    assert plugins["backbone"]["entry_point"] == "deepid2" and plugins["backbone"]["version"]


def test_a_plain_value_error_from_a_plugin_factory_is_a_config_error() -> None:
    @dataclass
    class FussyConfig:
        name: str = "fussy"

    def build(cfg, ctx):  # type: ignore[no-untyped-def]
        raise ValueError("needs an even number of bins")

    registry = Registry()
    with registry.providing("someone:fussy"):
        registry.add("loss", "fussy", build, FussyConfig)
    with pytest.raises(ConfigError, match=r"^loss=fussy: needs an even number of bins \(raised by someone:fussy"):
        registry.build("loss", FussyConfig(), None)


def test_the_old_holdout_key_names_its_new_place() -> None:
    from facebench.config import check_moved_keys

    with pytest.raises(ConfigError, match=r"trainer.verifier_holdout has moved to evaluation.verifier_holdout"):
        check_moved_keys(["trainer.verifier_holdout=0.3"])


def test_built_in_datasets_and_protocols_subclass_the_contracts() -> None:
    registry = get_registry()
    plan = plan_run(compose([]))
    assert isinstance(plan.dataset, Dataset) and isinstance(plan.protocol, Protocol)
    for name in registry.names("protocol"):
        cls = type(registry.build("protocol", compose([f"protocol={name}"]).protocol, None))
        assert issubclass(cls, Protocol), name
