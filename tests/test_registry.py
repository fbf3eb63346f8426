from __future__ import annotations

import importlib.metadata
import types
from dataclasses import dataclass

import pytest

from facebench.hookspecs import hookimpl
from facebench.registry import Registry, RegistryError, UnknownComponentError, build_registry


@dataclass
class DummyConfig:
    name: str = "dummy"
    x: float = 1.0


def test_unknown_name_lists_registered_and_closest() -> None:
    reg = build_registry()
    with pytest.raises(UnknownComponentError) as err:
        reg.get("loss", "softmx")
    msg = str(err.value)
    assert "Did you mean 'softmax'?" in msg
    assert "softmax" in msg.split("Registered:")[1]
    assert "config key 'loss'" in msg


def test_builtins_are_found_through_entry_points() -> None:
    reg = build_registry()
    assert {"cosine", "l2"} <= set(reg.names("verifier"))
    assert {"synthetic", "lfw_view2", "lfw_view1"} <= set(reg.names("protocol"))
    assert reg.get("verifier", "cosine").provider.startswith("facebench:")


def test_two_plugins_claiming_one_name_is_an_error_naming_both() -> None:
    def plugin(provider: str) -> types.ModuleType:
        mod = types.ModuleType(provider)

        @hookimpl
        def facebench_register(registry: Registry) -> None:
            registry.add("loss", "clash", lambda c, ctx: None, DummyConfig)

        mod.facebench_register = facebench_register
        return mod

    with pytest.raises(RegistryError) as err:
        build_registry(extra_plugins=(plugin("first_pkg"), plugin("second_pkg")))
    assert "first_pkg" in str(err.value) and "second_pkg" in str(err.value)


def test_plugin_that_fails_to_import_is_named_and_others_still_work(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.metadata.entry_points

    def with_broken(**kw):  # type: ignore[no-untyped-def]
        eps = list(real(**kw))
        if kw.get("group") == "facebench":
            eps.append(importlib.metadata.EntryPoint("broken", "facebench_no_such_module_xyz", "facebench"))
        return eps

    monkeypatch.setattr(importlib.metadata, "entry_points", with_broken)
    reg = build_registry()
    assert [f.name for f in reg.failures] == ["broken"]
    assert "ModuleNotFoundError" in reg.failures[0].error
    assert "cosine" in reg.names("verifier")
    with pytest.raises(UnknownComponentError, match="broken"):
        reg.get("loss", "nope")


def test_schema_without_name_field_is_refused() -> None:
    @dataclass
    class NoName:
        x: int = 1

    reg = Registry()
    with pytest.raises(RegistryError, match="'name' field"):
        reg.add("loss", "bad", lambda c, ctx: None, NoName)
