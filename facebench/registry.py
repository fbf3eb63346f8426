"""The registry of components by kind and name, fed by pluggy plugins found through entry points.

Built-in methods and third-party packages register the same way (an entry point in the
``facebench`` group whose module implements ``facebench_register``), so nothing built in has
a privilege a user's plugin lacks. Every component comes with a config dataclass that is put
into Hydra's ConfigStore, so ``loss=theirs loss.margin=0.3`` is type-checked at composition.
"""
from __future__ import annotations

import difflib
import importlib.metadata
import importlib.resources
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Callable, Iterator, Optional

import pluggy

from facebench import hookspecs
from facebench.errors import ConfigError, FacebenchError

#: kind -> Hydra config group
KINDS: dict[str, str] = {
    "backbone": "backbone",
    "loss": "loss",
    "verifier": "verifier",
    "dataset": "data",
    "protocol": "protocol",
    "tracker": "tracker",
    "analysis": "analysis",
}
#: The kinds a run's config selects one of each; an analysis measures a finished run
#: (``python -m facebench.analyze``), so a run config has none.
RUN_KINDS: dict[str, str] = {kind: group for kind, group in KINDS.items() if kind != "analysis"}
ENTRY_POINT_GROUP = "facebench"


class RegistryError(FacebenchError):
    """A lookup or registration problem; the message says how to fix it."""


class UnknownComponentError(RegistryError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass
class Component:
    kind: str
    name: str
    factory: Callable[..., Any]
    schema: type
    provider: str
    default_protocol: Optional[str] = None
    #: What a study tunes of this component: its config key -> a Hydra sweep expression
    #: (``interval(0.1, 0.6)``, ``tag(log, interval(1e-3, 1))``, ``choice(16, 32, 64)``).
    search_space: dict[str, str] = field(default_factory=dict)


@dataclass
class PluginFailure:
    name: str
    provider: str
    error: str
    detail: str


@dataclass
class PresetPackage:
    """A Python package whose folders are Hydra config groups (``method/deepid2.yaml``, ...)."""

    package: str
    provider: str


@dataclass
class BenchWorkload:
    """A speed workload of ``python -m facebench.bench``: ``module.run(ctx) -> rows``."""

    name: str
    module: str
    summary: str
    provider: str


@dataclass
class Registry:
    components: dict[str, dict[str, Component]] = field(default_factory=lambda: {k: {} for k in KINDS})
    failures: list[PluginFailure] = field(default_factory=list)
    preset_packages: list[PresetPackage] = field(default_factory=list)
    workloads: list[BenchWorkload] = field(default_factory=list)
    _provider: str = "<direct>"

    @contextmanager
    def providing(self, provider: str) -> Iterator[None]:
        """Attribute everything registered inside the block to ``provider``."""
        previous, self._provider = self._provider, provider
        try:
            yield
        finally:
            self._provider = previous

    def add(
        self,
        kind: str,
        name: str,
        factory: Callable[..., Any],
        schema: type,
        default_protocol: Optional[str] = None,
        search_space: Optional[dict[str, str]] = None,
    ) -> None:
        """Register ``factory(cfg, ctx)`` under ``kind``/``name`` with its config dataclass.

        ``default_protocol`` (datasets only): the protocol that ``data=<name>`` selects, for a
        dataset that is itself a benchmark's training side (LFW's training folds).
        ``search_space``: the hyperparameters a study tunes for this component (the learning
        rate is the study's), each a field of ``schema`` with a Hydra sweep expression; checked
        here, so a plugin with a bad space fails when it loads, not hours into a study.
        """
        if kind not in KINDS:
            raise RegistryError(f"unknown component kind {kind!r}; kinds are {sorted(KINDS)}")
        if not is_dataclass(schema) or "name" not in {f.name for f in fields(schema)}:
            raise RegistryError(
                f"{self._provider}: the config schema of {kind} {name!r} must be a dataclass with a 'name' field"
            )
        existing = self.components[kind].get(name)
        if existing is not None:
            raise RegistryError(
                f"two plugins claim {kind} {name!r}: {existing.provider} and {self._provider}. "
                "Uninstall one of them or rename the component in one plugin."
            )
        space = dict(search_space or {})
        _check_search_space(f"{self._provider}: {kind} {name!r}", schema, space)
        self.components[kind][name] = Component(kind, name, factory, schema, self._provider, default_protocol, space)

    def add_presets(self, package: str) -> None:
        """Offer the config groups in ``package`` (e.g. ``method/<name>.yaml`` for ``+method=<name>``)
        to Hydra's search path, beside the core's; ``hydra_plugins.facebench_presets`` adds them.
        Two plugins shipping the same ``group/name.yaml`` is an error, as for components."""
        mine = _preset_files(package)
        for other in self.preset_packages:
            clash = sorted(mine & _preset_files(other.package))
            if clash:
                raise RegistryError(
                    f"two plugins ship the preset {clash[0]}: {other.provider} ({other.package}) and {self._provider} "
                    f"({package}). Uninstall one of them or rename the preset in one plugin."
                )
        self.preset_packages.append(PresetPackage(package, self._provider))

    def add_workload(self, name: str, module: str, summary: str) -> None:
        """A speed workload for ``python -m facebench.bench`` (the module is imported only when
        the workload runs; its ``run(ctx)`` returns the bench's rows)."""
        self.workloads.append(BenchWorkload(name, module, summary, self._provider))

    def get(self, kind: str, name: str) -> Component:
        try:
            return self.components[kind][name]
        except KeyError:
            known = sorted(self.components.get(kind, {}))
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            group = KINDS.get(kind, kind)
            raise UnknownComponentError(
                f"unknown {kind} {name!r} (config key '{group}').{hint} Registered: {', '.join(known) or 'none'}."
                + self._failure_hint()
            ) from None

    def _failure_hint(self) -> str:
        if not self.failures:
            return ""
        return " Plugins that failed to load: " + "; ".join(f"{f.name} ({f.error})" for f in self.failures)

    def build(self, kind: str, cfg: Any, *args: Any, **kwargs: Any) -> Any:
        """Build the component that ``cfg.name`` names, passing it its own config.

        A factory that refuses its settings with a plain ``ValueError`` (a third party's plugin
        need not know facebench's errors) is reported as a config error naming the group."""
        component = self.get(kind, cfg.name)
        try:
            return component.factory(cfg, *args, **kwargs)
        except FacebenchError:
            raise
        except ValueError as exc:
            group = KINDS[kind]
            raise ConfigError(
                f"{group}={cfg.name}: {exc} (raised by {component.provider} while building it; check the "
                f"{group}.* settings)"
            ) from exc

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def store_configs(self) -> None:
        """Put every schema into Hydra's ConfigStore under its kind's group."""
        from hydra.core.config_store import ConfigStore
        from omegaconf import OmegaConf

        cs = ConfigStore.instance()
        for kind, group in KINDS.items():
            for name, comp in self.components[kind].items():
                node = OmegaConf.structured(comp.schema)
                node.name = name
                if kind == "analysis":  # several are selected at once (analysis=[a,b]): each under its name
                    cs.store(group=group, name=name, node=node, package=f"{group}.{name}", provider=comp.provider)
                    continue
                if comp.default_protocol is None:
                    cs.store(group=group, name=name, node=node, provider=comp.provider)
                    continue
                # Selecting this dataset also selects its benchmark's protocol (overridable).
                cs.store(group=group, name=f"_schema_{name}", node=node, provider=comp.provider)
                cs.store(
                    group=group,
                    name=name,
                    package="_global_",
                    provider=comp.provider,
                    node={
                        "defaults": [
                            f"/{group}/_schema_{name}@{group}",
                            {"override /protocol": comp.default_protocol},
                            "_self_",
                        ]
                    },
                )


def _check_search_space(where: str, schema: type, space: dict[str, str]) -> None:
    """Each key a field of the schema, each value a sweep expression Hydra parses."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    known = {f.name for f in fields(schema)}
    parser = OverridesParser.create()
    for key, expression in space.items():
        if key.split(".", 1)[0] not in known:
            raise RegistryError(f"{where}: search_space key {key!r} is not a field of {schema.__name__}")
        try:
            override = parser.parse_override(f"{key}={expression}")
        except Exception as exc:  # Hydra's grammar errors have no common base
            raise RegistryError(f"{where}: search_space[{key!r}] = {expression!r} is not a Hydra sweep ({exc})") from exc
        if not override.is_sweep_override():
            raise RegistryError(f"{where}: search_space[{key!r}] = {expression!r} is one value; give interval(...) "
                                "or choice(...)")


def _preset_files(package: str) -> set[str]:
    """``group/name.yaml`` of every config file in ``package``'s group folders."""
    root = importlib.resources.files(package)
    if not root.is_dir():
        raise RegistryError(f"preset package {package!r} is not a folder of config groups")
    return {f"{group.name}/{f.name}" for group in root.iterdir() if group.is_dir()
            for f in group.iterdir() if f.name.endswith(".yaml")}


def _load_entry_points(pm: pluggy.PluginManager, registry: Registry) -> list[tuple[str, Any]]:
    loaded = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        provider = f"{ep.dist.name if ep.dist else '?'}:{ep.name}"
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must not take the others down
            registry.failures.append(
                PluginFailure(ep.name, provider, f"{type(exc).__name__}: {exc}", traceback.format_exc())
            )
            continue
        if pm.is_registered(plugin):
            continue
        pm.register(plugin, name=provider)
        loaded.append((provider, plugin))
    return loaded


def build_registry(extra_plugins: tuple[Any, ...] = ()) -> Registry:
    """Discover plugins and let each register its components, isolating failures per plugin."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    registry = Registry()
    plugins = _load_entry_points(pm, registry)
    for plugin in extra_plugins:
        name = getattr(plugin, "__name__", repr(plugin))
        pm.register(plugin, name=name)
        plugins.append((name, plugin))
    for provider, plugin in plugins:
        others = [p for _, p in plugins if p is not plugin]
        caller = pm.subset_hook_caller("facebench_register", remove_plugins=others)
        with registry.providing(provider):
            try:
                caller(registry=registry)
            except RegistryError:
                raise
            except Exception as exc:
                registry.failures.append(
                    PluginFailure(provider, provider, f"{type(exc).__name__}: {exc}", traceback.format_exc())
                )
    return registry


_REGISTRY: Optional[Registry] = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use and its schemas stored for Hydra."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = build_registry()
        _REGISTRY.store_configs()
    return _REGISTRY


def plugin_distributions(registry: Registry, cfg: Any) -> dict[str, dict[str, Any]]:
    """For each component a run uses (by its config group), the plugin that provided it: the
    distribution, its version and the entry point, so a record says which code made it."""
    out = {}
    for kind, group in RUN_KINDS.items():
        component = registry.get(kind, cfg[group].name)
        distribution, _, entry_point = component.provider.partition(":")
        try:
            version: Optional[str] = importlib.metadata.version(distribution)
        except (importlib.metadata.PackageNotFoundError, ValueError):
            version = None
        out[group] = {"name": component.name, "distribution": distribution, "version": version, "entry_point": entry_point}
    return out
