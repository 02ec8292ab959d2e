"""Typed, validated configs: dataclasses built from plain dicts (YAML) with one-line errors.

Every config in the project is a flat or nested dataclass. `from_dict` checks keys and
types and lets each dataclass's ``__post_init__`` check its own rules with `require`, so
an error always names the dotted key, the rule and the value that broke it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

# Characters str.splitlines() breaks at, escaped so that an error message stays one line.
_LINE_BREAKS = {ord(char): repr(char)[1:-1] for char in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


class ConfigError(ValueError):
    """A config key or value breaks a rule. ``str()`` is one line: ``key: rule, got value``."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__((f"{key}: {message}" if key else message).translate(_LINE_BREAKS))

    def within(self, prefix: str) -> ConfigError:
        """The same error with its key prefixed by ``prefix`` (a dotted path or a file)."""
        key = f"{prefix}.{self.key}" if prefix and self.key else prefix or self.key
        return ConfigError(key, self.message)


def require(condition: bool, key: str, rule: str, value: Any) -> None:
    """Raise `ConfigError` naming ``key`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(key, f"`{rule}` must hold, but got {value!r}")


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, checking keys, types and the class's own rules."""
    if not isinstance(data, Mapping):
        raise ConfigError(where, f"expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(path, f"unknown key; expected one of {', '.join(names)}")
        kwargs[key] = _coerce(hints[key], value, path)
    try:
        return cls(**kwargs)
    except ConfigError as error:
        raise error.within(where) from None


def with_overrides(config: T, overrides: Sequence[str], where: str = "") -> T:
    """``config`` (a dataclass) with each ``dotted.key=value`` override applied (values parsed
    as YAML) and its rules checked again; keys are relative to ``config``, errors name them
    under ``where``."""
    data = to_dict(config)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{where}.{item}" if where else item,
                              "override must look like key.sub=value")
        path = f"{where}.{key}" if where else key
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ConfigError(path, f"unknown section {part!r}")
            node = node[part]
        node[leaf] = parse_yaml(raw, path)
    return from_dict(type(config), data, where)


def to_dict(config: Any) -> dict[str, Any]:
    """Plain, YAML-safe dict of a (nested) config dataclass."""
    return dataclasses.asdict(config)


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file with the safe loader; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise ConfigError(str(path), f"cannot read: {error.strerror or error}") from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, where: str) -> Any:
    """Parse YAML ``text`` with the safe loader; errors are one `ConfigError` naming ``where``."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        problem = " ".join(str(getattr(error, "problem", None) or error).split())
        raise ConfigError(where, f"not valid YAML{line}: {problem}") from None
    except ValueError as error:  # a tagged or implicit scalar that does not convert: !!int x
        raise ConfigError(where, f"not valid YAML: {error}") from None
    except RecursionError:
        raise ConfigError(where, "not valid YAML: nested too deeply") from None


def load_config(cls: type[T], path: str | Path) -> T:
    """Read YAML file ``path`` into dataclass ``cls``; errors read ``FILE: key: rule``."""
    data = load_yaml(path)
    try:
        return from_dict(cls, data if data is not None else {})
    except ConfigError as error:
        key = f"{path}: {error.key}" if error.key else str(path)
        raise ConfigError(key, error.message) from None


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        shaped = [a for a in options if _has_shape(a, value)]
        if len(shaped) == 1:  # Optional[X], or X | list[X]: the option of the value's shape
            return _coerce(shaped[0], value, key)  # gives its own error, with its deeper key
        errors = []
        for option in options:
            try:
                return _coerce(option, value, key)
            except ConfigError as error:
                errors.append(error.message)
        raise ConfigError(key, " or ".join(errors))
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(key, f"expected one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)  # type: ignore[arg-type]
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(key, f"expected a list, got {type(value).__name__} {value!r}")
        item = args[0] if args else Any
        items = [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(key, f"expected a mapping, got {type(value).__name__} {value!r}")
        value_type = args[1] if args else Any
        return {str(k): _coerce(value_type, v, f"{key}.{k}") for k, v in value.items()}
    return _coerce_scalar(hint, value, key)


def _has_shape(hint: Any, value: Any) -> bool:
    """Whether ``value`` has the shape of ``hint``: a mapping for a dataclass or dict, a list
    for a list or tuple, neither for anything else."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) or origin is dict:
        return isinstance(value, Mapping)
    if origin in (list, tuple):
        return isinstance(value, list | tuple)
    return not isinstance(value, Mapping | list | tuple)


def _coerce_scalar(hint: Any, value: Any, key: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"configtools cannot coerce type {hint!r} ({key})")
    raise ConfigError(key, f"expected {hint.__name__}, got {type(value).__name__} {value!r}")
