"""Config values checked against the ranges their schemas declare, before anything is decoded.

A value that cannot work (a negative learning rate, a PCA to 0 dimensions, a batch of one
image for a pair loss) must fail in the first second with the key and what it accepts, not
after an hour of decoding and training, and never as a library traceback that names no key.
So each schema field carries its own rule (``ranged``, ``one_of``) beside its default, and one
walk over the composed config (``validate_node``) enforces them for the core's schemas and
every plugin's alike: a third party's loss declares ``margin: float = ranged(0.35, ge=0)`` and
gets the same early, named refusal.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf

from facebench.errors import ConfigError

RULE = "facebench.rule"


@dataclass(frozen=True)
class Rule:
    """What a field accepts: numeric bounds and/or a set of choices; None passes when allowed.

    ``each``: the field is a list and the rule applies to each element.
    """

    ge: Optional[float] = None
    gt: Optional[float] = None
    le: Optional[float] = None
    lt: Optional[float] = None
    choices: Optional[tuple[Any, ...]] = None
    allow_none: bool = False
    each: bool = False

    def accepted(self) -> str:
        if self.choices is not None:
            text = "one of " + ", ".join(str(c) for c in self.choices)
        else:
            bounds = [f"{op} {v:g}" for op, v in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt)) if v is not None]
            text = "a number " + " and ".join(bounds)
        if self.each:
            text = "a list of " + (text.replace("a number", "numbers", 1) if self.choices is None else f"values, each {text}")
        return text + (" (or null)" if self.allow_none else "")

    def violated(self, value: Any) -> bool:
        if value is None:
            return not self.allow_none
        if self.each:
            if not isinstance(value, (list, tuple, ListConfig)):
                return True
            item = Rule(self.ge, self.gt, self.le, self.lt, self.choices)
            return any(item.violated(v) for v in value)
        if self.choices is not None:
            return value not in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return True
        return (
            (self.ge is not None and not value >= self.ge)
            or (self.gt is not None and not value > self.gt)
            or (self.le is not None and not value <= self.le)
            or (self.lt is not None and not value < self.lt)
        )


def ranged(default: Any, *, ge: Optional[float] = None, gt: Optional[float] = None, le: Optional[float] = None,
           lt: Optional[float] = None, each: bool = False) -> Any:
    """A numeric schema field with its accepted range; a None default also accepts None."""
    rule = Rule(ge=ge, gt=gt, le=le, lt=lt, allow_none=default is None, each=each)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={RULE: rule})
    return field(default=default, metadata={RULE: rule})


def one_of(default: Any, *choices: Any) -> Any:
    """A schema field that accepts only ``choices`` (the default among them)."""
    rule = Rule(choices=tuple(choices), allow_none=default is None)
    return field(default=default, metadata={RULE: rule})


def rules_of(schema: type) -> dict[str, Rule]:
    """The declared rule of each field of a dataclass schema (inherited fields included)."""
    if not is_dataclass(schema):
        return {}
    return {f.name: f.metadata[RULE] for f in fields(schema) if RULE in f.metadata}


def validate_node(node: Any, schema: type, key: str) -> None:
    """Refuse the first value of ``node`` (the config at ``key``; "" for the run level) that
    breaks its field's rule."""
    for name, rule in rules_of(schema).items():
        if name not in node:
            continue
        value = node[name]
        if isinstance(value, (DictConfig, ListConfig)):
            value = OmegaConf.to_container(value, resolve=True)
        if rule.violated(value):
            where = f"{key}.{name}" if key else name
            raise ConfigError(f"{where}={_show(value)}: not accepted; use {rule.accepted()}")


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    return "null" if value is None else str(value)

